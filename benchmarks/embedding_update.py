"""What one embedding table's optimiser step costs as the table grows: Adam, Adam on a densified gradient, lazy Adam.

    python benchmarks/embedding_update.py --rows 10000,100000,1000000

One table of `--width` columns; each step looks up a batch's worth of ids
(512 examples × 62 ids, the sample schema's user, item and three 20-item
histories, drawn Zipf-like as real traffic is), takes the gradient of a loss
on them and applies it, in a tf.function with and without XLA, as the ranker's
train step does. The three updates are the ones the trainer can make:

- `adam, sparse`: tf-keras Adam on the IndexedSlices gradient. Its sparse path
  decays the moments of, and moves, every row of the table.
- `adam, dense`: the gradient densified first (what the ranker does for tables
  up to `training.dense_update_max_rows`), then Adam's dense path.
- `lazy_adam, sparse`: `recsys.optimizers.LazyAdam`, which touches only the
  looked-up rows (`training.optimizer: lazy_adam`).

Writes benchmarks/results/embedding_update.{md,json}: milliseconds per step,
median of `--steps` timed steps after two warm-up steps.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from recsys.optimizers import LazyAdam  # noqa: E402

IDS_PER_STEP = 512 * 62
VARIANTS = (("adam", "sparse"), ("adam", "dense"), ("lazy_adam", "sparse"))


def step_milliseconds(rows: int, width: int, optimizer: str, gradient: str, xla: bool, steps: int) -> float:
    rng = np.random.default_rng(0)
    table = tf.Variable(rng.normal(size=(rows, width)).astype(np.float32))
    update = LazyAdam(1e-3) if optimizer == "lazy_adam" else tf.keras.optimizers.Adam(1e-3)
    update.build([table])
    ids = tf.constant(np.minimum(rng.zipf(1.2, IDS_PER_STEP) - 1, rows - 1), tf.int64)

    @tf.function(jit_compile=xla)
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(table, ids)))
        grad = tape.gradient(loss, table)
        update.apply_gradients([(tf.convert_to_tensor(grad) if gradient == "dense" else grad, table)])

    step()
    step()
    timings = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        update.iterations.numpy()  # waits for the step
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.median(timings))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000,1000000", help="comma-separated table sizes")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "embedding_update"))
    args = parser.parse_args()
    results = []
    for rows in [int(n) for n in args.rows.split(",")]:
        for xla in (False, True):
            for optimizer, gradient in VARIANTS:
                millis = step_milliseconds(rows, args.width, optimizer, gradient, xla, args.steps)
                results.append({"rows": rows, "xla": xla, "optimizer": optimizer, "gradient": gradient,
                                "ms_per_step": millis})
                print(f"{rows:>9,} rows {'XLA' if xla else 'graph'}: {optimizer}, {gradient}: {millis:.1f} ms",
                      flush=True)
    header = "| table rows | " + " | ".join(f"{'XLA' if xla else 'graph'}: {o}, {g}" for xla in (False, True)
                                            for o, g in VARIANTS)
    lines = [header + " |", "|---:|" + "---:|" * 2 * len(VARIANTS)]
    for rows in sorted({r["rows"] for r in results}):
        cells = [f"{r['ms_per_step']:.1f}" for r in results if r["rows"] == rows]
        lines.append(f"| {rows:,} | " + " | ".join(cells) + " |")
    setup = (f"one table of width {args.width}, {IDS_PER_STEP:,} Zipf-drawn ids per step, milliseconds per step "
             f"(median of {args.steps}); {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"setup": setup, "results": results}, indent=2) + "\n")
    out.with_suffix(".md").write_text(f"# Embedding table update against table size\n\n{setup}\n\n"
                                      + "\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
