"""Evaluation time at scale: in-process against the Beam job, same exported model, same generated rows.

    python benchmarks/evaluation_scale.py --config data_samples/synthetic.yaml \
        --model-dir artifacts/synthetic_funnel/serving/synthetic_funnel/1 --rows 1000000

Generates `--rows` raw rows (`recsys generate`'s generator) and evaluates all of
them (the eval fraction is set to ~1) with the exported model two ways:

- in-process: read + validate raw rows, serialize, score with the SavedModel in
  batches of 4096, then every metric of `recsys evaluate` (AUC, GAUC, log loss,
  NE, calibration, ECE, precision/recall, bootstrap intervals) on NumPy arrays;
- Beam (`recsys evaluate --beam`): the same steps as a pipeline on the
  configured runner (FnApiRunner here), metrics from mergeable histograms.

Writes benchmarks/results/evaluation_scale.{json,md}: seconds per phase, rows
per second, peak memory of this process, and the two AUCs side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from features.config import load_config, parse_config  # noqa: E402
from features.examples import to_examples  # noqa: E402
from pipelines import synthetic  # noqa: E402
from pipelines.eval_rows import read_eval_rows  # noqa: E402
from pipelines.preprocess import ReadSplitRows  # noqa: E402
from recsys.evaluation.beam_evaluation import run_beam_evaluation  # noqa: E402
from recsys.evaluation.compare import label_columns, score_examples  # noqa: E402
from recsys.evaluation.evaluate import evaluated_outputs, output_metrics  # noqa: E402
from serving.scoring import ExportedModel  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _config(base: Path, data: Path, workdir: Path):
    raw = load_config(base).model_dump(exclude_none=True)
    raw["input"]["path"] = str(data)
    raw["split"]["eval_fraction"] = 0.999999  # every generated row is evaluated
    raw["artifacts_dir"] = str(workdir / "artifacts")
    return parse_config(raw)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def in_process(config, model_dir: str) -> dict:
    phases, started, cpu = {}, time.monotonic(), time.process_time()
    rows = read_eval_rows(config)
    phases["read_and_validate"] = time.monotonic() - started
    mark = time.monotonic()
    examples = to_examples(config, rows)
    phases["serialize"] = time.monotonic() - mark
    mark = time.monotonic()
    scores = score_examples({"model": ExportedModel(model_dir).score}, examples)["model"]
    phases["score"] = time.monotonic() - mark
    mark = time.monotonic()
    columns = label_columns(config, rows)
    user = config.feature(config.evaluation.group_by).source if config.evaluation.group_by else None
    groups = np.array([row[user] for row in rows]) if user else None
    tasks = {o["name"]: output_metrics(config, o, groups) for o in evaluated_outputs(config, scores, columns)}
    phases["metrics_with_bootstrap"] = time.monotonic() - mark
    seconds = time.monotonic() - started
    return {"rows": len(rows), "seconds": round(seconds, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
            "rows_per_second": round(len(rows) / seconds),
            "phases_seconds": {k: round(v, 1) for k, v in phases.items()}, "peak_rss_gb": round(_peak_rss_gb(), 2),
            "auc": {name: round(found["auc"], 5) for name, found in tasks.items() if "auc" in found}}


def with_beam(config, model_dir: str, workdir: Path, beam_args: list[str]) -> dict:
    """Wall and CPU seconds; CPU seconds cover the workers only on the in-process FnApiRunner (no extra args)."""
    started, cpu = time.monotonic(), time.process_time()
    report = run_beam_evaluation(config, model_dir, workdir / "beam", ReadSplitRows(config, "eval"), beam_args)
    seconds = time.monotonic() - started
    return {"rows": report["rows"], "seconds": round(seconds, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
            "rows_per_second": round(report["rows"] / seconds),
            "beam_args": beam_args,
            "auc": {name: round(found["auc"], 5) for name, found in report["tasks"].items() if "auc" in found}}


def _markdown(result: dict) -> str:
    lines = [f"# Evaluation at scale: {result['rows_generated']:,} generated rows", "",
             "| path | rows | wall seconds | CPU seconds | rows/s (wall) | notes |", "|---|---|---|---|---|---|"]
    ours = result["in_process"]
    lines.append(f"| in-process | {ours['rows']:,} | {ours['seconds']} | {ours['cpu_seconds']} | "
                 f"{ours['rows_per_second']:,} | "
                 f"phases {ours['phases_seconds']}, peak RSS {ours['peak_rss_gb']} GB |")
    if "beam" in result:
        beam = result["beam"]
        lines.append(f"| Beam ({' '.join(beam['beam_args']) or 'FnApiRunner'}) | {beam['rows']:,} | "
                     f"{beam['seconds']} | {beam['cpu_seconds']} | {beam['rows_per_second']:,} | "
                     f"{beam['seconds'] / ours['seconds']:.2f}× the in-process wall time, "
                     f"{beam['cpu_seconds'] / ours['cpu_seconds']:.2f}× its CPU time |")
        lines += ["", "| output | AUC in-process (exact) | AUC Beam (10k logit bins) |", "|---|---|---|"]
        lines += [f"| {name} | {auc} | {beam['auc'].get(name)} |" for name, auc in ours["auc"].items()]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--model-dir", required=True, help="an exported version of a model for this config")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--skip-beam", action="store_true")
    parser.add_argument("beam_args", nargs="*", help="Beam options, e.g. --direct_num_workers=2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data = workdir / "rows.csv.gz"
        started = time.monotonic()
        synthetic.write(synthetic.SyntheticSpec(rows=args.rows, seed=args.seed), str(data))
        print(f"generated {args.rows} rows in {time.monotonic() - started:.0f}s", flush=True)
        config = _config(Path(args.config), data, workdir)
        result = {"rows_generated": args.rows, "model_dir": args.model_dir, "cpu_count": os.cpu_count(),
                  "in_process": in_process(config, args.model_dir)}
        print(json.dumps(result["in_process"]), flush=True)
        if not args.skip_beam:
            result["beam"] = with_beam(config, args.model_dir, workdir, args.beam_args)
            print(json.dumps(result["beam"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "evaluation_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "evaluation_scale.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
