"""Training time per epoch and peak memory against rows: does training stream, and does it scale linearly?

    python benchmarks/training_growth.py --rows 100000,1000000,10000000

For each row count: generate the synthetic feed, preprocess it with the
columnar engine (the fast path; its output equals the Beam job's), then train
MMoE (4 experts of [64], towers of [64], batch 512, XLA) for `--epochs`
epochs in a subprocess of its own, reading the gzip TFRecord shards as a
stream (`training.in_memory` off), so its peak resident memory is the
trainer's alone. The first epoch includes tracing and XLA compilation; the
table's per-epoch time is the median of the later ones, training batches only
(validation is timed apart).

Writes benchmarks/results/training_growth.{md,json,png}: seconds per epoch,
examples/second, validation seconds and peak RSS for each size, and a plot of
epoch time and peak memory against training rows.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import typing
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.child_process import peak_rss_mb, run_child  # noqa: E402
from benchmarks.growth_plot import plot_growth  # noqa: E402
from features.config import TrainingConfig  # noqa: E402
RESULTS = ROOT / "benchmarks" / "results"
MODEL = ("shared", "mmoe", "independent", [])


def _config(workdir: Path, epochs: int, training: dict | None = None):
    from benchmarks.multitask_models import _config as benchmark_config

    return benchmark_config(workdir, workdir / "logs.csv", "mmoe", *MODEL, training or {}, epochs, "columnar")


def prepare(rows: int, workdir: Path, seed: int) -> dict:
    """Generates `rows` rows and preprocesses them; returns the seconds each took and the manifest's counts."""
    from pipelines import synthetic
    from pipelines.preprocess import run_preprocess

    started = time.monotonic()
    synthetic.write(synthetic.SyntheticSpec(rows=rows, seed=seed), str(workdir / "logs.csv"))
    generated = time.monotonic()
    config = _config(workdir, 1)
    manifest = run_preprocess(config, config.artifacts)
    (workdir / "logs.csv").unlink()  # the shards are all training reads
    inputs = manifest["model_inputs"]
    tables = {spec["table"]: spec["vocabulary_size"] * spec["embedding_dim"] for spec in inputs if spec["table"]}
    return {"generate_seconds": generated - started, "preprocess_seconds": time.monotonic() - generated,
            "train_rows": manifest["rows"]["train"], "eval_rows": manifest["rows"]["eval"],
            "user_and_item_table_rows": sum(spec["vocabulary_size"] for spec in inputs
                                            if spec["name"] in ("user_id", "item_id")),
            # Weights plus Adam's two moments, float32: the training state that grows with the vocabulary.
            "embedding_state_mb": 3 * 4 * sum(tables.values()) / 2**20}


def child(workdir: Path, epochs: int, training: dict):
    """Trains in this process and prints the summary, with this process's peak RSS, as the last stdout line."""
    from recsys.training import train

    summary = train(_config(workdir, epochs, training), verbose=False)
    summary["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(summary))


def run_training(workdir: Path, epochs: int, training: dict) -> dict:
    started = time.monotonic()
    summary = run_child([__file__, "--child", str(workdir), "--epochs", str(epochs), "--training", json.dumps(training)],
                        f"training in {workdir}")
    summary["process_seconds"] = time.monotonic() - started
    return summary


def measure(rows: int, epochs: int, training: dict, seed: int, keep: bool) -> dict:
    import numpy as np

    workdir = Path(tempfile.mkdtemp(prefix=f"bench-training-{rows}-"))
    try:
        print(f"== {rows:,} rows in {workdir}: generate and preprocess", flush=True)
        result = {"rows": rows, **prepare(rows, workdir, seed)}
        print(f"   {result}", flush=True)
        summary = run_training(workdir, epochs, training)
        warm = float(np.median(summary["epoch_train_seconds"][1:] or summary["epoch_train_seconds"]))
        result.update(epoch_seconds=summary["epoch_train_seconds"], warm_epoch_seconds=warm,
                      warm_examples_per_second=result["train_rows"] / warm,
                      process_seconds=summary["process_seconds"], peak_rss_mb=summary["peak_rss_mb"],
                      final_val_loss=summary["history"]["val_loss"][-1])
        print(f"   {result}", flush=True)
        return result
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _table(results: list[dict]) -> str:
    first = results[0]
    lines = ["| rows | train rows | user + item table rows | s / epoch (warm) | × smallest | rows × smallest | "
             "examples/s | all epochs s | process s | peak RSS MB | tables + Adam moments MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['train_rows']:,} | {r['user_and_item_table_rows']:,} | {r['warm_epoch_seconds']:.1f} | "
            f"{r['warm_epoch_seconds'] / first['warm_epoch_seconds']:.1f} | {r['train_rows'] / first['train_rows']:.1f} | "
            f"{r['warm_examples_per_second']:,.0f} | {sum(r['epoch_seconds']):.1f} | {r['process_seconds']:.0f} | "
            f"{r['peak_rss_mb']:,.0f} | {r.get('embedding_state_mb', float('nan')):,.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated row counts")
    parser.add_argument("--epochs", default="2", help="epochs per size, one number or one per --rows entry; "
                        "with 2 or more the first (tracing, compilation) is left out of the per-epoch time")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=True, help="training.jit_compile")
    parser.add_argument("--optimizer", choices=typing.get_args(TrainingConfig.model_fields["optimizer"].annotation),
                        default="adam",
                        help="training.optimizer; lazy_adam for tables too big to update whole every step")
    parser.add_argument("--dense-update-max-rows", type=int, help="training.dense_update_max_rows (default: the config's)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep each size's data and artifacts")
    parser.add_argument("--out", default=str(RESULTS / "training_growth"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--training", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child), int(args.epochs), json.loads(args.training))
        return
    training = {"jit_compile": args.xla, "optimizer": args.optimizer}
    if args.dense_update_max_rows is not None:
        training["dense_update_max_rows"] = args.dense_update_max_rows
    sizes = [int(rows) for rows in args.rows.split(",")]
    epochs = [int(n) for n in args.epochs.split(",")]
    epochs = epochs * len(sizes) if len(epochs) == 1 else epochs
    if len(epochs) != len(sizes):
        parser.error(f"--epochs has {len(epochs)} entries for {len(sizes)} sizes")
    results = [measure(rows, count, training, args.seed, args.keep)
               for rows, count in zip(sizes, epochs)]
    setup = (f"MMoE (4 experts of [64], towers of [64]), batch 512, {'XLA' if args.xla else 'no XLA'}, "
             f"{args.optimizer}, dense_update_max_rows "
             f"{TrainingConfig(**training).effective_dense_update_max_rows:,}, gzip TFRecords streamed from disk, "
             f"epochs per size {epochs} (per-epoch time: the "
             f"median epoch after the first, training batches only; with one epoch, that epoch, compilation "
             f"included); "
             f"columnar preprocessing; {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"setup": setup, "results": results}, indent=2) + "\n")
    plot = f"\n![time and memory against rows]({out.with_suffix('.png').name})\n" if len(results) > 1 else ""
    out.with_suffix(".md").write_text(f"# Training growth\n\n{setup}\n\n{_table(results)}\n{plot}")
    if len(results) > 1:
        label = f"MMoE, {'XLA' if args.xla else 'no XLA'}, {args.optimizer}, streamed"
        plot_growth({label: [(r["train_rows"], r["warm_epoch_seconds"], r["peak_rss_mb"]) for r in results]},
                    out.with_suffix(".png"), "Training time per epoch and peak memory against rows",
                    rows_label="training rows", seconds_label="seconds per warm epoch",
                    memory_label="peak RSS of the trainer (MB)")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
