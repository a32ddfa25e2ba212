"""Preprocessing speed against the floor: the Beam + tf.Transform job and the columnar engine, in one run.

    python benchmarks/preprocessing.py --rows 100000
    python benchmarks/preprocessing.py --rows 100000,1000000 --engines floor,columnar   # growth
    python benchmarks/preprocessing.py --rows 100000 --formats csv,parquet --engines floor,columnar

The dataset is the synthetic feed (24 columns) widened to 41 columns with 10
extra categorical and 7 extra numeric columns, all of them features, and 0.1%
of rows broken so validation has dead letters to write. Each contender runs in
its own subprocess (so peak memory is its own and imports are not timed):

- floor: pyarrow streams the CSV (or the Parquet file, row group by row group),
  tfx_bsl's C++ encoder turns every raw row into a tf.Example, the same gzip
  TFRecord writer as the columnar engine writes them. No validation, split,
  analysis or transform: the fastest this machine can turn these rows into TFRecords.

With `--formats csv,parquet` the same rows are also written as Parquet with
typed columns (the bad rows as an infinite price, an empty user id and a click
of 2), and every contender runs on each format against that format's floor.
- beam: `pipeline.engine: beam` (FnApiRunner, tf.Transform analyzers).
- columnar: `pipeline.engine: columnar`.

Writes benchmarks/results/preprocessing.{md,json} (preprocessing_growth.{md,json}
and a plot of time and peak memory against rows, .png, with more than one row
count): rows/s, the ratio to the floor measured in the same run, wall seconds
and peak resident memory.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.child_process import peak_rss_mb, run_child  # noqa: E402
from benchmarks.growth_plot import plot_growth  # noqa: E402
RESULTS = ROOT / "benchmarks" / "results"
EXTRA_CATEGORICAL = 10  # cardinalities 10, 100, ... cycling up to 100k
EXTRA_NUMERIC = 7
BAD_ROW_EVERY = 1000


def _extra_columns(rows: int, rng) -> dict:
    import numpy as np

    columns = {}
    for index in range(EXTRA_CATEGORICAL):
        cardinality = 10 ** (1 + index % 5)
        ids = np.minimum(rng.zipf(1.3, rows), cardinality)
        columns[f"extra_cat_{index}"] = np.char.add(f"c{index}_", ids.astype(str))
    for index in range(EXTRA_NUMERIC):
        columns[f"extra_num_{index}"] = np.round(rng.lognormal(1.0, 1.0, rows), 4)
    return columns


def build_dataset(rows: int, path: Path, parquet_path: Path | None = None):
    """The synthetic feed plus the extra columns, written chunk by chunk with some bad rows.

    With `parquet_path`, the same rows also as Parquet with typed columns (one row group per chunk).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from pipelines import synthetic

    rng = np.random.default_rng(11)
    written, parquet = 0, None
    with open(path, "wb") as out:
        for chunk_index, frame in enumerate(synthetic.iter_chunks(synthetic.SyntheticSpec(rows=rows, seed=5))):
            for name, values in _extra_columns(len(frame), rng).items():
                frame[name] = values
            bad = np.arange(len(frame))[(np.arange(len(frame)) + written) % BAD_ROW_EVERY == 7]
            if parquet_path is not None:
                typed = frame.copy()
                typed.loc[bad[0::3], "click"] = 2
                typed.loc[bad[1::3], "item_price"] = np.inf
                typed.loc[bad[2::3], "user_id"] = ""
                table = pa.Table.from_pandas(typed, preserve_index=False)
                parquet = parquet or pq.ParquetWriter(str(parquet_path), table.schema)
                parquet.write_table(table)
            frame = frame.astype({name: str for name in frame.columns})
            frame.loc[bad[0::3], "click"] = "yes"
            frame.loc[bad[1::3], "item_price"] = "inf"
            frame.loc[bad[2::3], "user_id"] = ""
            table = pa.Table.from_pandas(frame, preserve_index=False)
            pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=chunk_index == 0))
            written += len(frame)
    if parquet is not None:
        parquet.close()


def benchmark_config(csv_path: Path, artifacts: Path, engine: str) -> dict:
    import yaml

    raw = yaml.safe_load((ROOT / "data_samples" / "synthetic.yaml").read_text())
    raw.update(name="preprocessing_benchmark", artifacts_dir=str(artifacts), input={"path": str(csv_path)})
    for index in range(EXTRA_CATEGORICAL):
        raw["columns"].append({"name": f"extra_cat_{index}", "type": "string"})
        raw["features"].append({"name": f"extra_cat_{index}", "group": "context", "transform": "vocabulary",
                                "top_k": 10_000 if index % 5 == 4 else None})
    for index in range(EXTRA_NUMERIC):
        raw["columns"].append({"name": f"extra_num_{index}", "type": "float"})
        raw["features"].append({"name": f"extra_num_{index}", "group": "context",
                                "transform": "log_zscore" if index % 2 else "zscore"})
    raw["pipeline"] = {"engine": engine, "num_shards": 4, "max_bad_fraction": 0.01}
    return raw


def _encodable(column):
    """The types tfx_bsl's encoder takes: bytes, float32, int64."""
    import pyarrow as pa

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.cast(pa.binary())
    if pa.types.is_floating(column.type):
        return column.cast(pa.float32())
    return column.cast(pa.int64()) if pa.types.is_boolean(column.type) else column


def run_floor(input_path: Path, out_dir: Path) -> dict:
    """pyarrow CSV or Parquet stream → C++ tf.Example encoder → gzip TFRecords, every column as read."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.dataset as pads
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    from pipelines.columnar.job import ShardedTFRecordWriter
    from pipelines.columnar.reader import BLOCK_BYTES, PARQUET_BATCH_ROWS

    started = time.monotonic()
    encoder, writer, rows = RecordBatchToExamplesEncoder(), ShardedTFRecordWriter(out_dir, 4), 0
    if input_path.suffix == ".parquet":
        reader = pads.dataset(str(input_path), format="parquet").to_batches(batch_size=PARQUET_BATCH_ROWS)
    else:
        reader = pacsv.open_csv(pa.input_stream(str(input_path)),
                                read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES))
    for batch in reader:
        offsets = pa.array(range(0, batch.num_rows + 1), pa.int32())
        lists = [pa.ListArray.from_arrays(offsets, _encodable(column)) for column in batch.columns]
        writer.write(encoder.encode(pa.RecordBatch.from_arrays(lists, batch.schema.names)))
        rows += batch.num_rows
    writer.close()
    return {"rows": rows, "seconds": time.monotonic() - started}


def run_engine(csv_path: Path, artifacts: Path, engine: str) -> dict:
    from features.config import parse_config
    from pipelines.preprocess import run_preprocess

    config = parse_config(benchmark_config(csv_path, artifacts, engine))
    started = time.monotonic()
    manifest = run_preprocess(config, config.artifacts)
    return {"rows": manifest["rows"]["read"], "seconds": time.monotonic() - started,
            "train": manifest["rows"]["train"], "dead_letters": manifest["rows"]["dead_letter"]}


def child(args):
    """One contender in this process; prints its result as the last line of stdout."""
    csv_path, work = Path(args.csv), Path(args.work)
    if args.child == "floor":
        result = run_floor(csv_path, work / f"floor-{csv_path.suffix}")
    else:
        result = run_engine(csv_path, work / args.child, args.child)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def _run_child(name: str, csv_path: Path, work: Path, profile: Path | None) -> dict:
    profiler = ["-m", "cProfile", "-o", str(profile / f"{name}.prof")] if profile else []
    return run_child([*profiler, __file__, "--child", name, "--csv", str(csv_path), "--work", str(work)], name)


def _ratio(result: dict) -> str:
    return "-" if result["ratio_to_floor"] is None else f"{result['ratio_to_floor']:.2f}"


def _table(results: list[dict]) -> str:
    lines = ["| rows | format | contender | seconds | rows/s | ratio to floor | peak RSS (MB) |",
             "|---:|---|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['input_rows']:,} | {r['format']} | {r['contender']} | {r['seconds']:.1f} "
                     f"| {r['rows_per_second']:,.0f} "
                     f"| {_ratio(r)} | {r['peak_rss_mb']:,.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000", help="comma-separated row counts (default 100000)")
    parser.add_argument("--engines", default="floor,beam,columnar")
    parser.add_argument("--formats", default="csv", help="csv, parquet or both (csv,parquet)")
    parser.add_argument("--profile", type=Path,
                        help="write a cProfile of each contender to this folder (results files are left alone)")
    parser.add_argument("--data-dir", type=Path,
                        help="keep the generated CSVs here (rows<N>.csv) and reuse them on later runs; "
                             "building 10M rows takes about 7 minutes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    results = []
    for rows in [int(n) for n in args.rows.split(",")]:
        with tempfile.TemporaryDirectory(prefix="preprocessing-bench-") as work:
            work = Path(work)
            csv_path = (args.data_dir / f"rows{rows}.csv") if args.data_dir else work / "logs.csv"
            parquet_path = csv_path.with_suffix(".parquet")
            formats = args.formats.split(",")
            if not csv_path.exists() or ("parquet" in formats and not parquet_path.exists()):
                print(f"building {rows:,} rows ...", flush=True)
                csv_path.parent.mkdir(parents=True, exist_ok=True)
                build_dataset(rows, csv_path.with_suffix(".partial"),
                              parquet_path.with_suffix(".partial-parquet") if "parquet" in formats else None)
                csv_path.with_suffix(".partial").rename(csv_path)
                if "parquet" in formats:
                    parquet_path.with_suffix(".partial-parquet").rename(parquet_path)
            for input_format in formats:
                input_path = parquet_path if input_format == "parquet" else csv_path
                floor = None
                for name in args.engines.split(","):
                    print(f"  {input_format} {name} ...", flush=True)
                    if args.profile:
                        args.profile.mkdir(parents=True, exist_ok=True)
                    result = _run_child(name, input_path, work, args.profile)
                    floor = result if name == "floor" else floor
                    result.update(contender=name, format=input_format, input_rows=rows,
                                  rows_per_second=result["rows"] / result["seconds"])
                    result["ratio_to_floor"] = (result["rows_per_second"] / floor["rows_per_second"]) if floor else None
                    print(f"    {result['rows_per_second']:,.0f} rows/s, ratio {_ratio(result)}, "
                          f"peak {result['peak_rss_mb']:,.0f} MB", flush=True)
                    results.append(result)
    table = _table(results)
    print(table)
    if args.profile:  # profiled timings are not results
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    growth = len({r["input_rows"] for r in results}) > 1
    stem = RESULTS / ("preprocessing_growth" if growth else "preprocessing")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    stem.with_suffix(".md").write_text(
        "# Preprocessing against the floor\n\n`python benchmarks/preprocessing.py "
        f"--rows {args.rows} --engines {args.engines} --formats {args.formats}`, one run, 41 columns, "
        f"0.1% bad rows.\n\n{table}\n")
    if growth:
        series = {}
        for r in results:
            series.setdefault(f"{r['contender']} ({r['format']})", []).append((r["input_rows"], r["seconds"], r["peak_rss_mb"]))
        plot_growth(series, stem.with_suffix(".png"), "Preprocessing time and peak memory against rows")


if __name__ == "__main__":
    main()
