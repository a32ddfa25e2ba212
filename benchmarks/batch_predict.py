"""Batch predictions from raw files: both `recsys predict` engines against DeepCTR's `predict`, in one run.

    python benchmarks/batch_predict.py --rows 100000
    python benchmarks/batch_predict.py --rows 100000,1000000,10000000 --contenders inprocess,deepctr   # growth
    python benchmarks/batch_predict.py --workdir W ...   # keeps the trained models in W; a rerun with W reuses them

Our MMoE and DeepCTR's MMoE (4 experts of [64], towers of [64], the same
embedding sizes) are trained one epoch on `--train-rows` generated rows that
the columnar engine preprocessed; ours is exported as a SavedModel version,
DeepCTR's keeps its weights. Each `--rows` size is generated once (another
seed) and written as CSV and as Parquet. Every contender then goes from the
raw file to written predictions (impression id and every score, Parquet),
each in a subprocess of its own (imports untimed, its own peak memory), with
its model loaded before the clock starts:

* inprocess: `recsys predict`'s default engine: Arrow batches → validation
  (dead letters) → the typed columns to the version's `predict_features`
  signature (no tf.Examples; a batch whose list items hold their separator
  would go as tf.Examples to `serving_default`) → Parquet shards, published
  atomically;
* beam: `recsys predict --engine beam` on the local FnApiRunner (RunInference,
  the model loaded inside the job, so its load is timed here);
* deepctr: what a DeepCTR user runs: pandas reads the file in chunks of
  65,536 rows, the pipeline's own tf.Transform graph (`transform_features_layer`,
  so both models see identical features) encodes each chunk, DeepCTR's
  `model.predict(batch_size=8192)` scores it, pandas writes Parquet. No row
  validation: a bad value becomes NaN or a wrong type silently.

Writes benchmarks/results/batch_predict.{md,json}.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.child_process import peak_rss_mb, run_child  # noqa: E402

CONTENDERS = ("inprocess", "beam", "deepctr")
FORMATS = ("csv", "parquet")
CHUNK_ROWS = 65_536
KEEP = "impression_id"


def _config(workdir: Path):
    from benchmarks.multitask_models import _config as model_config

    return model_config(workdir, workdir / "train.csv", "mmoe", "shared", "mmoe", "independent", [], {}, 1,
                        engine="columnar")


def load_deepctr_mmoe(config, workdir: Path):
    """The DeepCTR MMoE `prepare` trained, every variable restored from its weights (never a half-random model)."""
    from benchmarks.deepctr_mmoe import deepctr_mmoe
    from features.artifacts import Artifacts

    model = deepctr_mmoe(Artifacts.of(config).manifest()["model_inputs"], config.seed)
    status = model.load_weights(str(workdir / "deepctr" / "weights"))
    status.assert_existing_objects_matched()  # raises if a layer of the model found no saved value
    status.expect_partial()  # the optimizer's slots were saved too; prediction does not restore them
    return model


def prepare(workdir: Path, train_rows: int, seed: int) -> Path:
    """Generates, preprocesses and trains both models; returns our exported version."""
    from benchmarks.serving_vs_deepctr import train_deepctr_mmoe
    from pipelines import synthetic
    from pipelines.preprocess import run_preprocess
    from recsys.training import load_trained_ranker, train
    from serving.export import export_model

    synthetic.write(synthetic.SyntheticSpec(rows=train_rows, seed=seed), str(workdir / "train.csv"))
    config = _config(workdir)
    run_preprocess(config, config.artifacts)
    train(config, verbose=False)
    version = export_model(load_trained_ranker(config), config, config.artifacts)
    deepctr, _, _ = train_deepctr_mmoe(config)
    deepctr.save_weights(str(workdir / "deepctr" / "weights"))
    return version


# ---- contenders (each runs in its own process: `--child`) ----

def run_ours(config, version: str, path: Path, out: Path, engine: str) -> dict:
    from pipelines.prediction.input import prediction_job
    from pipelines.prediction.job import run_prediction

    from pipelines.prediction.beam_job import predict_with_beam
    from pipelines.prediction.inprocess import predict_in_process
    from serving.batch_inference import SavedModelHandler
    from serving.scoring import ExportedModel

    model = ExportedModel(version) if engine == "inprocess" else None
    started = time.perf_counter()
    job = prediction_job(config, str(path), [KEEP], "parquet", 1_000_000)
    if engine == "beam":
        run = functools.partial(predict_with_beam, job, SavedModelHandler(job.config, version),
                                beam_args=["--runner=FnApiRunner"])
    else:
        run = functools.partial(predict_in_process, job, model)
    found = run_prediction(out, run)
    return {"seconds": time.perf_counter() - started, "rows": found["scored"], "dead_letters": found["dead_letters"]}


def _raw_tensors(config, frame) -> dict:
    """A pandas chunk as the raw tensors `tf.io.parse_example` would give the transform layer."""
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    raw = {}
    for name in config.feature_columns:
        column = config.column(name)
        default = column.default if column.default is not None else ""
        values = frame[name]
        if column.type == "string_list":
            items = tf.strings.split(values.fillna("").astype(str).to_numpy(), sep=column.separator)
            raw[name] = tf.ragged.boolean_mask(items, tf.strings.length(items) > 0).to_sparse()
        elif column.type in ("int", "float"):
            numbers = pd.to_numeric(values.replace("", np.nan)).fillna(default or 0)
            raw[name] = tf.constant(numbers.to_numpy().astype(np.int64 if column.type == "int" else np.float32))
        else:
            raw[name] = tf.constant(values.fillna(default).astype(str).to_numpy())
    return raw


def run_deepctr(config, workdir: Path, path: Path, out: Path) -> dict:
    import pandas as pd
    import pyarrow.parquet as pq
    import tensorflow as tf
    import tensorflow_transform as tft

    from features.artifacts import Artifacts

    model = load_deepctr_mmoe(config, workdir)
    transform = tft.TFTransformOutput(str(config.artifacts)).transform_features_layer()
    names = [spec["name"] for spec in Artifacts.of(config).manifest()["model_inputs"]]
    started = time.perf_counter()
    out.mkdir(parents=True)
    if path.suffix == ".parquet":
        chunks = (batch.to_pandas() for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS))
    else:
        chunks = pd.read_csv(path, chunksize=CHUNK_ROWS, dtype=str, keep_default_na=False)
    rows = 0
    for index, frame in enumerate(chunks):
        transformed = transform(_raw_tensors(config, frame))
        inputs = {name: tf.reshape(transformed[name], [-1, 1]) if transformed[name].shape.rank == 1
                  else transformed[name] for name in names}
        ctr, ctcvr = model.predict(inputs, batch_size=8192, verbose=0)
        pd.DataFrame({KEEP: frame[KEEP].to_numpy(), "ctr": ctr.reshape(-1), "ctcvr": ctcvr.reshape(-1)}).to_parquet(
            out / f"part-{index:05d}.parquet", index=False)
        rows += len(frame)
    return {"seconds": time.perf_counter() - started, "rows": rows, "dead_letters": None}


def child(args):
    workdir = Path(args.workdir)
    config = _config(workdir)
    path, out = Path(args.input), Path(args.output)
    if args.child == "deepctr":
        result = run_deepctr(config, workdir, path, out)
    else:
        result = run_ours(config, args.version, path, out, args.child)
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))


# ---- the run ----

def write_inputs(workdir: Path, rows: int, seed: int) -> dict[str, Path]:
    from pipelines import synthetic

    paths = {fmt: workdir / f"predict_{rows}.{fmt}" for fmt in FORMATS}
    for fmt, path in paths.items():
        synthetic.write(synthetic.SyntheticSpec(rows=rows, seed=seed), str(path))
    return paths


def _markdown(setup: str, results: list[dict]) -> str:
    lines = [f"# Batch predictions: raw file → written predictions\n\n{setup}\n",
             "| rows | input | contender | seconds | rows/s | × DeepCTR | peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    for found in results:
        deepctr = next((r for r in results if r["rows_in"] == found["rows_in"] and r["format"] == found["format"]
                        and r["contender"] == "deepctr"), None)
        ratio = f"{found['rows_per_second'] / deepctr['rows_per_second']:.2f}×" if deepctr else ""
        lines.append(f"| {found['rows_in']:,} | {found['format']} | {found['contender']} | {found['seconds']:.1f} | "
                     f"{found['rows_per_second']:,.0f} | {ratio} | {found['peak_rss_mb']:,.0f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000", help="comma-separated input sizes")
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs per contender; the fastest counts")
    parser.add_argument("--workdir", help="keep the trained models here; a later run with it reuses them")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "batch_predict"))
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    for hidden in ("--input", "--output", "--version"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-predict-"))
    versions = sorted((workdir / "serving" / "mmoe").glob("[0-9]*"))
    if versions and (workdir / "deepctr").is_dir():
        version = versions[-1]
        print(f"reusing the models in {workdir}", flush=True)
    else:
        print(f"training both models on {args.train_rows} rows in {workdir}", flush=True)
        version = prepare(workdir, args.train_rows, args.seed)
    results = []
    for rows in [int(r) for r in args.rows.split(",")]:
        inputs = write_inputs(workdir, rows, args.seed + 1)
        for fmt in args.formats.split(","):
            runs = {contender: [] for contender in args.contenders.split(",")}
            for _ in range(args.rounds):  # interleaved, so the shared machine's load hits every contender alike
                for contender, found in runs.items():
                    output = workdir / f"out_{rows}_{fmt}_{contender}"
                    found.append(run_child([__file__, "--child", contender, "--workdir", str(workdir), "--input",
                                            str(inputs[fmt]), "--output", str(output), "--version", str(version)],
                                           contender))
                    shutil.rmtree(output, ignore_errors=True)
            for contender, found in runs.items():
                best = min(found, key=lambda run: run["seconds"])
                best.update(contender=contender, format=fmt, rows_in=rows, rows_per_second=rows / best["seconds"],
                            all_seconds=[run["seconds"] for run in found],
                            peak_rss_mb=max(run["peak_rss_mb"] for run in found))
                print(f"  {rows:,} {fmt} {contender}: {best['seconds']:.1f}s, {best['rows_per_second']:,.0f} rows/s, "
                      f"peak {best['peak_rss_mb']:,.0f} MB", flush=True)
                results.append(best)
        for path in inputs.values():
            path.unlink()
    setup = (f"Both MMoEs trained one epoch on {args.train_rows:,} generated rows; inputs generated with seed "
             f"{args.seed + 1}; output Parquet (impression id + every score); models loaded before the clock "
             f"(except beam, which loads inside its job); each contender in its own process, {args.rounds} "
             f"interleaved rounds, the fastest counts (peak memory: the highest); {os.cpu_count()} CPU cores "
             f"shared with other work, load average {os.getloadavg()[0]:.1f} at the end")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"setup": setup, "results": results}, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(setup, results))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
