"""Latency of ranking 10, 100 and 1000 candidates: in-process, and through the stand-in over REST and gRPC.

    python benchmarks/serving_latency.py --config data_samples/synthetic.yaml

Needs an exported model (`recsys run` or `recsys export` with the config).
The floor is the exported `serving_default` signature called in this process
on serialized examples; REST (`:predict`, columnar, base64 examples) and gRPC
(`Predict`) go through `recsys serve` started as a separate process on
loopback, driven by the project's clients. Every measure is taken in this one
run, so the ratios to the floor are what to read (the machine is shared).
Throughput: C concurrent client threads, each sending a fixed number of
100-candidate requests. Writes benchmarks/results/serving_latency.{md,json,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from features.config import load_config  # noqa: E402
from features.examples import to_example  # noqa: E402
from pipelines.sources import read_sample_rows  # noqa: E402
from pipelines.validation import RowError, RowValidator  # noqa: E402
from serving.clients import GrpcClient, RestClient  # noqa: E402
from serving.scoring import ExportedModel, latest_version  # noqa: E402

SIZES = (10, 100, 1000)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _candidates(config, count: int) -> list[bytes]:
    validate, rows = RowValidator(config), []
    for raw in read_sample_rows(config, count * 2):
        try:
            rows.append(validate(raw))
        except RowError:
            continue
    if len(rows) < count:
        raise SystemExit(f"the input has only {len(rows)} valid rows; {count} candidates are needed")
    return [to_example(config, row) for row in rows[:count]]


def _latency(score, examples: list[bytes], calls: int) -> dict:
    for _ in range(10):  # first calls pay for lazy initialisation and connection set-up
        score(examples)
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        score(examples)
        seconds.append(time.perf_counter() - started)
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "calls": calls}


def _throughput(make_client, examples: list[bytes], clients: int, requests_each: int) -> dict:
    def loop(_):
        with make_client() as client:
            for _ in range(requests_each):
                client.score_examples(examples)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(loop, range(clients)))
    seconds = time.perf_counter() - started
    requests = clients * requests_each
    return {"clients": clients, "requests": requests, "requests_per_s": round(requests / seconds, 1),
            "candidates_per_s": round(requests * len(examples) / seconds)}


def _start_server(config, model_dir: Path, rest_port: int, grpc_port: int, server_log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        [sys.executable, "-m", "recsys.cli", "serve", "--base-path", str(model_dir), "--model-name",
         config.export.model_name, "--rest-port", str(rest_port), "--grpc-port", str(grpc_port),
         "--max-batch-size", str(max(SIZES))],
        env=env, stdout=server_log.open("w"), stderr=subprocess.STDOUT)
    rest = RestClient(f"http://127.0.0.1:{rest_port}", config.export.model_name, retries=0, timeout=5)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"recsys serve exited ({server.returncode}); see {server_log}")
        try:
            if any(v["state"] == "AVAILABLE" for v in rest.status()):
                return server
        except Exception:  # not listening yet
            time.sleep(1)
    server.terminate()
    raise SystemExit(f"recsys serve did not load the model in 300s; see {server_log}")


def _table(latency: list[dict], throughput: list[dict]) -> str:
    lines = ["| path | candidates | p50 ms | p99 ms | p50 vs in-process |", "|---|---|---|---|---|"]
    floor = {row["candidates"]: row["p50_ms"] for row in latency if row["path"] == "in-process"}
    for row in latency:
        ratio = row["p50_ms"] / floor[row["candidates"]]
        lines.append(f"| {row['path']} | {row['candidates']} | {row['p50_ms']} | {row['p99_ms']} | {ratio:.2f}x |")
    lines += ["", "| path | concurrent clients | requests | requests/s | candidates/s |", "|---|---|---|---|---|"]
    lines += [f"| {row['path']} | {row['clients']} | {row['requests']} | {row['requests_per_s']} | "
              f"{row['candidates_per_s']} |" for row in throughput]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "data_samples" / "synthetic.yaml"))
    parser.add_argument("--calls", type=int, default=100, help="timed calls per path and size (1000: a fifth)")
    parser.add_argument("--clients", default="1,4,8", help="concurrent client counts for throughput")
    parser.add_argument("--requests-per-client", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serving_latency"))
    args = parser.parse_args()
    load_at_start = [round(x, 1) for x in os.getloadavg()]
    config = load_config(args.config)
    version_dir = latest_version(config.served_model_dir)
    candidates = _candidates(config, max(SIZES))
    rest_port, grpc_port = _free_port(), _free_port()
    print(f"serving {version_dir} on 127.0.0.1 (REST {rest_port}, gRPC {grpc_port})", flush=True)
    server = _start_server(config, version_dir.parent, rest_port, grpc_port,
                           Path(tempfile.gettempdir()) / "serving_latency_server.log")
    try:
        model = ExportedModel(version_dir)
        name = config.export.model_name
        paths = {"in-process": lambda: _Local(model),
                 "REST": lambda: RestClient(f"http://127.0.0.1:{rest_port}", name, timeout=60),
                 "gRPC": lambda: GrpcClient(f"127.0.0.1:{grpc_port}", name, timeout=60)}
        latency = []
        for path, make_client in paths.items():
            with make_client() as client:
                for size in SIZES:
                    calls = args.calls if size < 1000 else max(5, args.calls // 5)
                    row = {"path": path, "candidates": size, **_latency(client.score_examples, candidates[:size], calls)}
                    print(row, flush=True)
                    latency.append(row)
        throughput = []
        for path in ("in-process", "REST", "gRPC"):
            for clients in (int(c) for c in args.clients.split(",")):
                row = {"path": path, **_throughput(paths[path], candidates[:100], clients, args.requests_per_client)}
                print(row, flush=True)
                throughput.append(row)
    finally:
        server.terminate()
        server.wait()
    load = [round(x, 1) for x in os.getloadavg()]
    result = {"model": str(version_dir), "config": args.config, "cpu_count": os.cpu_count(),
              "load_average_at_start": load_at_start, "load_average_at_end": load,
              "latency": latency, "throughput": throughput}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    header = (f"# Serving latency\n\n`{' '.join(sys.argv)}` on {os.cpu_count()} CPU cores (1-minute load average "
              f"{load_at_start[0]} at the start, {load[0]} at the end); model {version_dir}.\n"
              "Client and server on one machine (loopback); in-process is the SavedModel signature called directly.\n\n")
    plot(result, Path(args.out + ".png"))
    Path(args.out + ".md").write_text(header + _table(latency, throughput)
                                      + f"\n![latency]({Path(args.out).name}.png)\n")
    print(_table(latency, throughput))


def plot(result: dict, path: Path):
    """p50 (bars) and p99 (ticks) per path and candidate count, on a log scale: the floor and the overheads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = list(dict.fromkeys(row["path"] for row in result["latency"]))
    figure, axis = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(paths)
    for i, name in enumerate(paths):
        rows = [row for row in result["latency"] if row["path"] == name]
        x = np.arange(len(rows)) + (i - (len(paths) - 1) / 2) * width
        axis.bar(x, [row["p50_ms"] for row in rows], width, label=f"{name} p50")
        axis.scatter(x, [row["p99_ms"] for row in rows], marker="_", s=200, color="black",
                     label="p99" if i == 0 else None)
    axis.set_xticks(np.arange(len(SIZES)), [f"{size} candidates" for size in SIZES])
    axis.set_yscale("log")
    axis.set_ylabel("latency per request (ms)")
    axis.set_title("Scoring one request: in-process floor vs. the stand-in over REST and gRPC")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


class _Local:
    """The in-process floor behind the clients' `score_examples` interface."""

    def __init__(self, model: ExportedModel):
        self._model = model

    def score_examples(self, examples):
        return self._model.score(examples)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


if __name__ == "__main__":
    main()
