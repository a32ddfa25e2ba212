"""The columnar job: two streaming passes over Arrow batches, outputs laid out as the Beam job's.

Pass 1 validates, splits and analyses, and spills the typed valid rows to Arrow
IPC files in the temp dir (cheaper than parsing the CSV again); pass 2 reads
them back, transforms and writes. Memory holds one batch plus the analyzers'
state (one entry per distinct vocabulary token), never the dataset.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from features.artifacts import Artifacts
from features.config import Config
from pipelines.columnar.analysis import TrainAnalyzers
from pipelines.columnar.reader import iter_csv_batches
from pipelines.columnar.transform import BatchTransformer, write_transform_fn
from pipelines.columnar.validation import ColumnarValidator, malformed_letter
from pipelines.sharded_tfrecords import shard_path
from pipelines.split import EVAL, SPLITS, TRAIN, split_of
from pipelines.sources import InputError

DEAD_LETTER = "dead_letter"  # the Beam job's name for it, in counts and paths
_LOG = logging.getLogger(__name__)


class _Progress:
    """Logs rows done and the rate, at most every few seconds."""

    def __init__(self, stage: str, every_seconds: float = 5.0):
        self._stage, self._every = stage, every_seconds
        self._started = self._last = time.monotonic()
        self.rows = 0

    def add(self, rows: int):
        self.rows += rows
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            _LOG.info("%s: %d rows (%.0f rows/s)", self._stage, self.rows, self.rows / (now - self._started))


class ShardedTFRecordWriter:
    """gzip TFRecord shards named as Beam names them; each batch is spread evenly over the shards."""

    def __init__(self, directory: Path, num_shards: int):
        directory.mkdir(parents=True, exist_ok=True)
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        self._writers = [tf.io.TFRecordWriter(shard_path(str(directory / "part"), i, num_shards, ".tfrecord.gz"),
                                              options) for i in range(num_shards)]

    def write(self, records: list[bytes]):
        per_shard = -(-len(records) // len(self._writers))
        for shard, writer in enumerate(self._writers):
            for record in records[shard * per_shard:(shard + 1) * per_shard]:
                writer.write(record)

    def close(self):
        for writer in self._writers:
            writer.close()


def _split_rows(table: pa.Table, keys: list, eval_fraction: float) -> dict[str, pa.Table]:
    is_eval = pa.array([split_of(key, eval_fraction) == EVAL for key in keys], pa.bool_())
    return {TRAIN: table.filter(pc.invert(is_eval)), EVAL: table.filter(is_eval)}


def _analyse_and_spill(config: Config, header: list[str], spill_dir: Path, dead_letter_dir: Path):
    """Pass 1. Returns the analyzers, row counts per split and dead-letter counts per reason."""
    validator, analyzers = ColumnarValidator(config), TrainAnalyzers(config)
    rows, reasons, malformed = Counter(), Counter(), []
    spills, progress = {}, _Progress("validate + analyse")
    dead_letter_dir.mkdir(parents=True, exist_ok=True)
    with open(dead_letter_dir / "part-00000-of-00001.jsonl", "w") as letters_out:
        def write_letters(letters):
            for letter in letters:
                reasons[letter["reason"]] += 1
                letters_out.write(json.dumps(letter, sort_keys=True) + "\n")

        for batch in iter_csv_batches(config, header, malformed):
            valid, letters = validator(batch)
            write_letters(letters)
            write_letters([malformed_letter(line) for line in malformed])
            malformed.clear()
            for split, table in _split_rows(valid.table, valid.keys, config.split.eval_fraction).items():
                rows[split] += table.num_rows
                if split not in spills:
                    spills[split] = pa.ipc.new_file(str(spill_dir / f"{split}.arrow"), table.schema)
                spills[split].write_table(table)
                if split == TRAIN:
                    analyzers.update(table)
            progress.add(batch.num_rows)
        write_letters([malformed_letter(line) for line in malformed])
    for spill in spills.values():
        spill.close()
    if not spills:
        raise InputError(f"input.path: '{config.input.path}' has a header but no rows")
    return analyzers, rows, reasons


def _transform_and_write(config: Config, output_dir: Path, spill_dir: Path):
    """Pass 2: spilled rows → transform_fn → tf.Examples → gzip shards, per split."""
    transformer = BatchTransformer(str(output_dir))
    for split in SPLITS:
        writer = ShardedTFRecordWriter(Artifacts(output_dir).split_dir(split), config.pipeline.num_shards)
        progress = _Progress(f"transform + write {split}")
        path = spill_dir / f"{split}.arrow"
        if path.exists():
            with pa.OSFile(str(path)) as source:  # read, not mapped: mapped pages would count as resident
                reader = pa.ipc.open_file(source)
                for index in range(reader.num_record_batches):
                    table = pa.Table.from_batches([reader.get_batch(index)])
                    writer.write(transformer(table))
                    progress.add(table.num_rows)
        writer.close()


def _write_counts(output_dir: Path, rows: Counter, reasons: Counter):
    """stats/counts.jsonl in the Beam job's format, so the manifest is built the same way."""
    stats = output_dir / "stats"
    stats.mkdir(parents=True, exist_ok=True)
    lines = [[split, rows[split]] for split in SPLITS] + [
        [f"{DEAD_LETTER}/{reason}", n] for reason, n in sorted(reasons.items())]
    (stats / "counts.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def run_columnar(config: Config, header: list[str], output_dir: Path, temp_dir: str) -> dict[str, float]:
    """Runs both passes; returns the seconds each stage took (for the benchmark and the log)."""
    if config.input_format != "csv":
        raise InputError(f"input.format: the columnar engine reads CSV; '{config.input.path}' is "
                         f"{config.input_format}, use pipeline.engine: beam")
    spill_dir = Path(temp_dir) / "spill"
    spill_dir.mkdir(parents=True, exist_ok=True)
    seconds, started = {}, time.monotonic()
    analyzers, rows, reasons = _analyse_and_spill(config, header, spill_dir, Artifacts(output_dir).dead_letter_dir)
    seconds["validate_analyse"] = time.monotonic() - started
    started = time.monotonic()
    results = analyzers.results(Path(temp_dir) / "vocabularies")
    write_transform_fn(config, results, str(output_dir))
    seconds["write_transform_fn"] = time.monotonic() - started
    started = time.monotonic()
    _transform_and_write(config, output_dir, spill_dir)
    seconds["transform_write"] = time.monotonic() - started
    _write_counts(output_dir, rows, reasons)
    _LOG.info("columnar engine: %d train, %d eval, %d dead letters; seconds per stage %s",
              rows[TRAIN], rows[EVAL], sum(reasons.values()), {k: round(v, 2) for k, v in seconds.items()})
    return seconds
