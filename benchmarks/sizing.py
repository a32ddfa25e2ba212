"""Full-scale sizing on paper: Ali-CCP and a large platform's day of logs, from rates measured on this project.

    python benchmarks/sizing.py                            # the arithmetic → benchmarks/results/sizing.md
    python benchmarks/sizing.py --measure-vocabulary 2000000   # re-measures the per-entry vocabulary costs (~20 s)

Nothing here runs the pipeline or trains: every figure is either a rate
measured on this 2-vCPU machine (`MEASURED`, each with its source), a guess
(`GUESSES`, each with its reason), or arithmetic on those two (the table's
"basis" column shows the formula). Change a guess and rerun to see what moves.
The doc section "On paper, at full scale" in docs/scale_and_reliability.md
reads its numbers from the output.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
GB = 1e9

# name: (value, source). "this session" = measured 2026-12-04 on this machine (AMD EPYC, 2 vCPU), see sizing.md.
MEASURED = {
    "beam_cpu_s_per_row": (0.217e-3, "this session: `recsys preprocess` (Beam, FnApiRunner), CPU s (user+sys) "
                                     "51.0 at 200k rows, 116.1 at 500k: (116.1-51.0)/300k"),
    "beam_rows_per_s_10m": (8432.5, "pipeline_scale.json, 10M rows, one process (CPU/wall 0.96 this session)"),
    "csv_gz_bytes_per_row": (754.4 * 2**20 / 10e6, "pipeline_scale.json: input_mib 754.4 at 10M rows"),
    "csv_bytes_per_row": (40_285_028 / 200_000, "this session: `recsys generate --rows 200000`, uncompressed"),
    "tfrecord_bytes_per_row": (90.3, "this session: train+eval gzip shards, 200k rows (90.1 with 124k users)"),
    "example_bytes": (532.6, "this session: serialized tf.Example, 20k rows, uncompressed"),
    "parsed_bytes_per_row": (620.0, "this session: parsed batch of 4,096 rows, sum of tensor bytes / rows"),
    "lookup_bytes_per_entry": (70.0, "this session, `--measure-vocabulary 2000000`: RSS of a tf "
                                     "StaticVocabularyTable from a 2M-line file (9.9 B a line)"),
    "tft_order_bytes_per_entry": (153.0, "this session, `--measure-vocabulary 2000000`: RSS of 2M (count, token) "
                                         "tuples as tft's _OrderElementsFn holds them (its final sort: 0.11 s)"),
    "train_ex_per_s_2vcpu": (24_003.0, "training_growth.json: MMoE, 10M rows, lazy_adam, streamed, no XLA"),
    "lazy_adam_ms_10m_rows": (7.9, "this session: embedding_update.step_milliseconds, 10M-row table "
                                   "(7.0 at 1M, 6.4 at 5M)"),
    "adam_ms_1m_rows": (280.8, "embedding_update.json: tf-keras Adam, sparse gradient, 1M-row table"),
    "checkpoint_over_savedmodel": (1_334_635 / 478_770, "this session: epoch checkpoint / SavedModel variables, "
                                                        "20k-row export"),
    "savedmodel_graph_bytes": (1_155_406, "this session: saved_model.pb of the sample config's export"),
    "eval_rows_per_s": (4_276.0, "evaluation_scale.md: in-process, 1M rows"),
    "eval_bytes_per_row": (4.59e9 / 1e6, "evaluation_scale.md: peak RSS 4.59 GB at 1M rows (upper bound)"),
    "beam_eval_rows_per_s": (1_343.0, "evaluation_scale.md: `recsys evaluate --beam`, one process"),
    "columnar_rows_per_s": (15_218.0, "preprocessing_growth.json: columnar engine, 10M rows, one process"),
    "split_us_per_row": (0.94, "this session: pipelines.split.split_of over 500k keys"),
    "lookups_per_example": (62, "embedding_update.py: user, item and three 20-item histories, width 16"),
}

# name: (value, why it is a guess).
GUESSES = {
    "dataflow_vcpu_speed": (1.0, "a Dataflow vCPU does what one vCPU here does (both are SMT threads of "
                                 "server cores; not measured)"),
    "ali_width_factor": (2.3, "Ali-CCP rows carry ~177 id slots (23 fields, 8 multi-valued at max_length 20) "
                              "against 77 here; cost and bytes per row scale with slots"),
    "ali_table_rows": (10e6, "all Ali-CCP fields' vocabularies together: its global feature ids reach at least "
                             "9.36M in sample rows"),
    "platform_other_rows": (1e6, "categories, brands, shops and other small fields beside 100M users, 10M items"),
    "embedding_width": (16, "the sample config's id width"),
    "batch_size": (512, "the training benchmarks' batch"),
    "token_bytes": (11, "a 100M-user id as text plus its newline"),
    "sdk_base_gb": (1.5, "one Beam SDK process without tables (peaks here: 1.14 GiB at 100k rows, 2.85 at 10M)"),
    "copy_gbs": (0.2, "bytes per second one Beam worker copies between object-store files"),
    "startup_h": (0.1, "Dataflow worker start-up and graph tracing"),
    "vcpu_efficiency_16": (0.5, "a 16-vCPU trainer does half of 8x this machine's per-vCPU rate"),
    "ps_efficiency": (0.7, "share of a worker's rate left under ParameterServerStrategy's RPCs"),
    "ps_usable_gb": (16.0, "RAM for variables on one parameter server (a 32 GB machine)"),
    "ps_bandwidth_gbs": (1.25, "one parameter server's NIC, 10 Gbit/s"),
    "train_window_h": (6.0, "time allowed to train on one day of the platform's logs"),
}


def measured(name):
    return MEASURED[name][0]


def guessed(name):
    return GUESSES[name][0]


@dataclasses.dataclass
class Dataset:
    name: str
    rows: float
    train_rows: float
    eval_rows: float
    table_rows: float  # embedding rows of width `embedding_width`, all fields
    largest_vocabulary: float
    width_factor: float
    raw_bytes: float
    raw_basis: str
    beam_workers: int
    beam_vcpus_per_worker: int
    beam_gb_per_worker: float


def _fmt(value: float, unit: str = "") -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:,.1f}{suffix}{unit}"
    return f"{value:,.1f}{unit}" if value % 1 else f"{value:,.0f}{unit}"


def _gb(value: float) -> str:
    return f"{value / GB:,.2f} GB" if value < 10 * GB else f"{value / GB:,.0f} GB"


def _hours(seconds: float) -> str:
    return f"{seconds / 60:,.0f} min" if seconds < 3600 else f"{seconds / 3600:,.1f} h"


Row = tuple[str, str, str]  # (quantity, value, basis)


def _weights_bytes(d: Dataset) -> float:
    return d.table_rows * guessed("embedding_width") * 4  # float32


def _data_rows(d: Dataset) -> list[Row]:
    shards = d.rows * measured("tfrecord_bytes_per_row") * d.width_factor
    return [("rows (train / eval)", f"{_fmt(d.rows)} ({_fmt(d.train_rows)} / {_fmt(d.eval_rows)})", "given"),
            ("raw input", _gb(d.raw_bytes), d.raw_basis),
            ("transformed gzip TFRecords", _gb(shards),
             f"rows × {measured('tfrecord_bytes_per_row')} B × {d.width_factor}")]


def _beam_rows(d: Dataset) -> list[Row]:
    """Dataflow time and the memory each worker needs for tf.Transform's vocabularies."""
    w, base = d.width_factor, guessed("sdk_base_gb") * GB
    cpu_s = d.rows * measured("beam_cpu_s_per_row") * w / guessed("dataflow_vcpu_speed")
    vcpus = d.beam_workers * d.beam_vcpus_per_worker
    per_vcpu_gb = d.beam_gb_per_worker / d.beam_vcpus_per_worker
    tables = d.table_rows * measured("lookup_bytes_per_entry") + base
    hashed = (d.table_rows - d.largest_vocabulary) * measured("lookup_bytes_per_entry") + base
    order = d.largest_vocabulary * measured("tft_order_bytes_per_entry") + base
    train_shards = d.train_rows * measured("tfrecord_bytes_per_row") * w
    entry, ordered = f"{measured('lookup_bytes_per_entry'):.0f} B", f"{measured('tft_order_bytes_per_entry'):.0f} B"
    return [
        ("Beam vCPU-hours", f"{cpu_s / 3600:,.0f}", f"rows × {measured('beam_cpu_s_per_row') * 1e3:.3f} ms × {w}"),
        (f"Beam wall, {d.beam_workers} workers × {d.beam_vcpus_per_worker} vCPU",
         _hours(cpu_s / vcpus + guessed("startup_h") * 3600), f"vCPU-h / {vcpus} + {guessed('startup_h')} h start-up"),
        ("Beam memory per SDK process (vocabulary lookup tables)",
         f"{_gb(tables)} ({'fits' if tables <= per_vcpu_gb * GB else 'does NOT fit'} {per_vcpu_gb:.2f} GB per vCPU)",
         f"vocabulary entries × {entry} + {guessed('sdk_base_gb')} GB"),
        ("the same with the largest vocabulary hashed instead", _gb(hashed),
         f"(entries - {_fmt(d.largest_vocabulary)}) × {entry} + {guessed('sdk_base_gb')} GB"),
        ("tft vocabulary ordering, on one worker",
         f"{_gb(order)} ({'fits' if order <= d.beam_gb_per_worker * GB else 'does NOT fit'} "
         f"{d.beam_gb_per_worker:.0f} GB)",
         f"largest vocabulary {_fmt(d.largest_vocabulary)} × {ordered} + {guessed('sdk_base_gb')} GB"),
        ("shard assembly: one worker copies the train split", _hours(train_shards / (guessed("copy_gbs") * GB)),
         f"train rows × {measured('tfrecord_bytes_per_row')} B × {w} / {guessed('copy_gbs')} GB/s"),
        ("columnar engine instead (one process)", _hours(d.rows / measured("columnar_rows_per_s")),
         f"rows / {measured('columnar_rows_per_s'):,.0f} rows/s"),
    ]


def _strategy_row(d: Dataset, rate_16: float) -> Row:
    """One machine if it trains a pass in the window; else workers and parameter servers for the rate."""
    window = guessed("train_window_h")
    target = d.train_rows / (window * 3600)
    if target <= rate_16:
        return (f"training strategy for a pass within {window:.0f} h", "one machine, no distribution",
                f"needs {_fmt(target)} ex/s ≤ {_fmt(rate_16)}")
    workers = math.ceil(target / (rate_16 * guessed("ps_efficiency")))
    traffic = target * measured("lookups_per_example") * guessed("embedding_width") * 4 * 2  # rows pulled, gradients pushed
    ps = max(math.ceil(3 * _weights_bytes(d) / (guessed("ps_usable_gb") * GB)),
             math.ceil(traffic / (guessed("ps_bandwidth_gbs") * GB)))
    return (f"training strategy for a pass within {window:.0f} h",
            f"parameter servers: {workers} workers × 16 vCPU, {ps} PS ({_fmt(target)} ex/s, "
            f"{traffic / GB:.1f} GB/s to and from the PS)",
            f"workers: ex/s / ({_fmt(rate_16)} × {guessed('ps_efficiency')}); PS: max(state / {guessed('ps_usable_gb'):.0f} GB, "
            f"ex/s × {measured('lookups_per_example')} rows × 64 B × 2 / {guessed('ps_bandwidth_gbs')} GB/s)")


def _training_rows(d: Dataset) -> list[Row]:
    w, weights = d.width_factor, _weights_bytes(d)
    rate_2 = measured("train_ex_per_s_2vcpu") / w
    rate_16 = rate_2 / 2 * 16 * guessed("vcpu_efficiency_16")
    adam_s = measured("adam_ms_1m_rows") / 1e3 * d.table_rows / 1e6  # linear in table rows
    steps = d.train_rows / guessed("batch_size")
    return [
        ("embedding rows × width", f"{_fmt(d.table_rows)} × {guessed('embedding_width')}", "given / guess"),
        ("embedding weights / with Adam's two moments", f"{_gb(weights)} / {_gb(3 * weights)}",
         "rows × width × 4 B (× 3)"),
        ("examples/s: this 2-vCPU machine / one 16-vCPU trainer", f"{_fmt(rate_2)} / {_fmt(rate_16)}",
         f"{measured('train_ex_per_s_2vcpu'):,.0f} / {w}; × 8 × {guessed('vcpu_efficiency_16')}"),
        ("one epoch: one 16-vCPU trainer / this machine",
         f"{_hours(d.train_rows / rate_16)} / {_hours(d.train_rows / rate_2)}", "train rows / rate"),
        ("default `optimizer: adam` instead: per step, per epoch", f"{adam_s:,.1f} s, {_hours(adam_s * steps)}",
         f"{measured('adam_ms_1m_rows')} ms per 1M table rows (lazy Adam: {measured('lazy_adam_ms_10m_rows')} ms, flat); "
         f"× train rows / {guessed('batch_size')}"),
        _strategy_row(d, rate_16),
        ("training.in_memory columns", _gb(d.train_rows * measured("parsed_bytes_per_row") * w),
         f"train rows × {measured('parsed_bytes_per_row'):.0f} B × {w} (twice that while concatenating)"),
    ]


def _artifact_rows(d: Dataset) -> list[Row]:
    weights, entry = _weights_bytes(d), measured("lookup_bytes_per_entry")
    savedmodel = weights + d.table_rows * guessed("token_bytes") + measured("savedmodel_graph_bytes")
    return [
        ("SavedModel (variables + vocabulary files)", _gb(savedmodel),
         f"weights + entries × {guessed('token_bytes')} B + {measured('savedmodel_graph_bytes') / 1e6:.1f} MB graph"),
        ("checkpoint per epoch (every epoch kept)", _gb(weights * measured("checkpoint_over_savedmodel")),
         f"weights × {measured('checkpoint_over_savedmodel'):.2f}"),
        ("serving RAM per replica", _gb(weights + d.table_rows * entry), f"weights + entries × {entry:.0f} B"),
        ("`recsys compare` / `validate` on the eval rows",
         f"{_gb(d.eval_rows * measured('eval_bytes_per_row'))}, {_hours(d.eval_rows / measured('eval_rows_per_s'))}",
         f"eval rows × {measured('eval_bytes_per_row') / 1e3:.1f} kB; / {measured('eval_rows_per_s'):,.0f} rows/s"),
        ("`recsys evaluate --beam` instead", f"{d.eval_rows / measured('beam_eval_rows_per_s') / 3600:,.0f} vCPU-h",
         f"eval rows / {measured('beam_eval_rows_per_s'):,.0f} rows/s"),
    ]


def size(d: Dataset) -> list[Row]:
    """Every (quantity, value, basis) row for one dataset."""
    return _data_rows(d) + _beam_rows(d) + _training_rows(d) + _artifact_rows(d)


DATASETS = [
    Dataset("Ali-CCP (full)", 85.3e6, 42.3e6, 43.0e6, guessed("ali_table_rows"), 4.3e6, guessed("ali_width_factor"),
            38e9, "measured by DeepCVR: four CSVs of 10, 8, 10, 10 GB", 10, 4, 15.0),
    Dataset("Platform, one day", 10e9, 8e9, 2e9, 100e6 + 10e6 + guessed("platform_other_rows"), 100e6, 1.0,
            10e9 * measured("csv_gz_bytes_per_row"), f"rows × {measured('csv_gz_bytes_per_row'):.1f} B (gzip CSV)", 150, 4, 15.0),
]


def measure_vocabulary(entries: int) -> dict:
    """Resident bytes per entry of a vocabulary held as tft orders it and as a TF lookup table, and sort time."""
    import gc
    import tempfile

    def rss() -> int:
        return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024

    tokens = [f"u{i * 7919 % 100_000_000}" for i in range(entries)]
    path = Path(tempfile.mkdtemp()) / "vocabulary.txt"
    path.write_text("".join(t + "\n" for t in tokens))
    import tensorflow as tf  # noqa: F401, imported before measuring so its own memory is not counted

    gc.collect()
    before = rss()
    batch = 150_000  # tft's _PRESORT_BATCH_SIZE: batches pre-sorted in parallel, merged by one sort
    counts = []
    for start in range(0, entries, batch):
        counts.extend(sorted(((entries - i, tokens[i].encode()) for i in range(start, min(start + batch, entries))),
                             reverse=True))
    listed = rss()
    started = time.perf_counter()
    counts.sort(reverse=True)
    sort_seconds = time.perf_counter() - started
    del counts
    gc.collect()
    before_table = rss()
    init = tf.lookup.TextFileInitializer(str(path), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
                                         tf.lookup.TextFileIndex.LINE_NUMBER)
    table = tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)
    assert int(table.size()) == entries + 1
    return {"entries": entries, "tft_order_bytes_per_entry": (listed - before) / entries,
            "final_sort_seconds": sort_seconds, "lookup_bytes_per_entry": (rss() - before_table) / entries}


# How the "this session" figures were measured (2026-12-04, load average 0.3 to 3 from other jobs).
SESSION_COMMANDS = """\
recsys generate --rows 20000 --seed 7 --out logs.csv          # and 200000 (+ --users 400000 --items 2000000), 500000
recsys preprocess --config C   # C = data_samples/synthetic.yaml with engine columnar: 20k rows 3.1 s, 200k rows 6.2 s
recsys preprocess --config C -- --runner=FnApiRunner   # engine beam, under /usr/bin/time: 200k rows 53.2 s wall,
                                                       # 51.0 CPU s; 500k rows 156.1 s wall, 116.1 CPU s
recsys train --config C && recsys export --config C    # 20k rows, 1 epoch: variables 478,770 B, checkpoint 1,334,635 B
python benchmarks/sizing.py --measure-vocabulary 2000000
python -c 'from benchmarks.embedding_update import step_milliseconds; ...(rows, 16, "lazy_adam", "sparse", False, 30)'
python -c 'from pipelines.split import split_of; ...'  # 500k keys\
"""


def render() -> str:
    lines = ["# Sizing at full scale (on paper)", "",
             "`python benchmarks/sizing.py`: arithmetic on the rates below; nothing was run at these sizes.", ""]
    for d in DATASETS:
        lines += [f"## {d.name}", "", "| quantity | value | basis |", "|---|---|---|"]
        lines += [f"| {q} | {v} | {b} |" for q, v, b in size(d)]
        lines.append("")
    lines += ["## Commands behind \"this session\"", "", "```", SESSION_COMMANDS, "```", ""]
    lines += ["## Measured (2 vCPU, this project)", "", "| name | value | source |", "|---|---:|---|"]
    lines += [f"| {k} | {v:,.6g} | {s} |" for k, (v, s) in MEASURED.items()]
    lines += ["", "## Guessed", "", "| name | value | why |", "|---|---:|---|"]
    lines += [f"| {k} | {v:,.6g} | {s} |" for k, (v, s) in GUESSES.items()]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure-vocabulary", type=int, metavar="ENTRIES",
                        help="measure per-entry vocabulary memory and sort time instead of sizing")
    parser.add_argument("--out", default=str(RESULTS / "sizing.md"))
    args = parser.parse_args()
    if args.measure_vocabulary:
        print(measure_vocabulary(args.measure_vocabulary))
        return
    text = render()
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
