"""Preprocessing at scale: rows/second and peak memory of the Beam job as the input grows.

    python benchmarks/pipeline_scale.py --rows 100000,1000000,10000000
    python benchmarks/pipeline_scale.py --rows 100000 --beam-args="--direct_num_workers=2 --direct_running_mode=multi_processing"
    python benchmarks/pipeline_scale.py --rows 1000000 --users 666666 --items 400000   # 10M rows' cardinality

For each size it generates the logs once (`recsys generate`, cached under
`--workdir`), then runs `recsys preprocess` in a child process and samples the
resident memory of that process and all its descendants (Beam's SDK workers in
multi-processing mode) every `--sample-seconds` with psutil. Peak RSS is the
largest sum over the tree seen at one sample, so it counts workers that exist
at the same time, not a worker's peak added to another's. If memory stays flat
while rows grow tenfold, rows stream rather than sit in memory. Memory can
also grow with the number of distinct values (vocabulary counts while
analysing, lookup tables while transforming); `--users` and `--items` fix
how many there are, so a small input with a large input's cardinality tells
the two apart.

Writes benchmarks/results/pipeline_scale.{json,md,png} (the figure: time and
peak memory against rows, one line per set of Beam options); results of
earlier sizes are kept, so one slow size can be added later without
re-running the others.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.growth_plot import plot_growth  # noqa: E402

SAMPLE_CONFIG = ROOT / "data_samples" / "synthetic.yaml"
RESULTS = ROOT / "benchmarks" / "results"


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")


def _input_name(rows: int, users: int | None, items: int | None) -> str:
    return f"{rows}" + (f"-u{users}" if users else "") + (f"-i{items}" if items else "")


def _generate(rows: int, users: int | None, items: int | None, workdir: Path) -> Path:
    path = workdir / f"logs-{_input_name(rows, users, items)}.csv.gz"
    if not path.exists():
        partial = path.with_name(path.name + ".partial.csv.gz")
        cardinality = [*(["--users", str(users)] if users else []), *(["--items", str(items)] if items else [])]
        subprocess.run([sys.executable, "-m", "recsys.cli", "generate", "--rows", str(rows), "--seed", "7",
                        *cardinality, "--out", str(partial)], check=True, env=_env())
        partial.rename(path)
    return path


def _config(name: str, logs: Path, workdir: Path, shards: int) -> Path:
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    raw["input"] = {"path": str(logs), "format": "csv"}
    raw["artifacts_dir"] = str(workdir / f"artifacts-{name}")
    raw["pipeline"]["num_shards"] = shards
    path = workdir / f"config-{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process] + process.children(recursive=True):
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def _run_measured(command: list[str], sample_seconds: float, log_path: Path) -> tuple[float, int, int]:
    """(seconds, peak tree RSS in bytes, exit status) of a command, its output going to `log_path`."""
    started = time.monotonic()
    with log_path.open("w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
        process, peak = psutil.Process(child.pid), 0
        while child.poll() is None:
            try:
                peak = max(peak, _tree_rss(process))
            except psutil.NoSuchProcess:
                break
            time.sleep(sample_seconds)
    return time.monotonic() - started, peak, child.returncode


def measure(rows: int, users: int | None, items: int | None, workdir: Path, beam_args: list[str], shards: int,
            sample_seconds: float) -> dict:
    name = _input_name(rows, users, items)
    logs = _generate(rows, users, items, workdir)
    config = _config(name, logs, workdir, shards)
    command = [sys.executable, "-m", "recsys.cli", "preprocess", "--config", str(config), "--", *beam_args]
    print(f"preprocessing {rows:,} rows: {shlex.join(command)}", flush=True)
    seconds, peak, status = _run_measured(command, sample_seconds, workdir / f"preprocess-{name}.log")
    if status != 0:
        raise SystemExit(f"preprocess of {name} failed (exit {status}); see {workdir}/preprocess-{name}.log")
    manifest = json.loads((workdir / f"artifacts-{name}" / "manifest.json").read_text())
    result = {
        "rows": rows,
        "users": users,
        "items": items,
        "user_vocabulary": manifest["vocabulary_sizes"]["user_id"],
        "item_vocabulary": manifest["vocabulary_sizes"]["item_id"],
        "beam_args": beam_args,
        "wall_seconds": round(seconds, 1),
        "rows_per_second_wall": round(rows / seconds, 1),
        "rows_per_second_pipeline": manifest["rows_per_second"],
        "peak_rss_mib": round(peak / 2**20, 1),
        "input_mib": round(logs.stat().st_size / 2**20, 1),
        "train_rows": manifest["rows"]["train"],
        "eval_rows": manifest["rows"]["eval"],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result), flush=True)
    return result


def _key(result: dict) -> tuple:
    return result["rows"], result["users"] or 0, result["items"] or 0, " ".join(result["beam_args"])


def _write(results: list[dict]):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline_scale.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| rows | distinct users / items (vocabulary) | beam options | wall s | rows/s (wall) | "
             "rows/s (pipeline) | peak RSS MiB (tree) | input MiB |",
             "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(results, key=_key):
        lines.append(f"| {r['rows']:,} | {r['user_vocabulary']:,} / {r['item_vocabulary']:,} | "
                     f"{' '.join(r['beam_args']) or '(default)'} | {r['wall_seconds']} | "
                     f"{r['rows_per_second_wall']} | {r['rows_per_second_pipeline']} | {r['peak_rss_mib']} | "
                     f"{r['input_mib']} |")
    series = {}
    for r in results:
        label = (" ".join(arg.removeprefix("--direct_") for arg in r["beam_args"]) or "one process") + (
            ", fixed users/items" if r["users"] or r["items"] else "")
        series.setdefault(label, []).append((r["rows"], r["wall_seconds"], r["peak_rss_mib"]))
    plot_growth(series, RESULTS / "pipeline_scale.png", "Beam preprocessing (FnApiRunner): time and peak memory",
                memory_label="peak RSS of the process tree (MiB)")
    lines.append("\n![time and peak memory against rows](pipeline_scale.png)")
    (RESULTS / "pipeline_scale.md").write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,1000000,10000000", help="comma-separated input sizes")
    parser.add_argument("--beam-args", default="", help="Beam options passed to every run, quoted")
    parser.add_argument("--users", type=int, help="distinct users to generate (default: grows with rows)")
    parser.add_argument("--items", type=int, help="distinct items to generate (default: grows with rows)")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workdir", default="/tmp/recsys-pipeline-scale", help="generated logs and artifacts")
    parser.add_argument("--sample-seconds", type=float, default=0.5)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    beam_args = shlex.split(args.beam_args)
    previous = RESULTS / "pipeline_scale.json"
    results = json.loads(previous.read_text()) if previous.exists() else []
    for rows in (int(n) for n in args.rows.split(",")):
        result = measure(rows, args.users, args.items, workdir, beam_args, args.shards, args.sample_seconds)
        results = [r for r in results if _key(r) != _key(result)] + [result]
        _write(results)


if __name__ == "__main__":
    main()
