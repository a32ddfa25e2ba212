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

import numpy as np
import pyarrow as pa
import tensorflow as tf

from features.artifacts import Artifacts
from features.config import Config
from pipelines.columnar.analysis import TrainAnalyzers
from pipelines.columnar.reader import MalformedLine, iter_csv_batches, iter_parquet_batches
from pipelines.columnar.transform import BatchTransformer, write_transform_fn
from pipelines.columnar.validation import ColumnarValidator, take_malformed_letters
from pipelines.sharded_tfrecords import shard_path
from pipelines.input_files import InputError, InputSource
from pipelines.progress import Progress
from pipelines.split import TRAIN, split_of
from pipelines.split_counts import DEAD_LETTER, DROPPED, REPAIRED, LabelCounter
from pipelines.validation import OUTSIDE_SAMPLE_SPACE

COLUMNAR_FORMATS = ("csv", "parquet")  # slot rows and tf.Examples are parsed per record: the Beam engine's job
_LOG = logging.getLogger(__name__)


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


def _split_rows(table: pa.Table, keys: list, config: Config) -> dict[str, pa.Table]:
    assigned = np.array([split_of(key, config.split.eval_fraction, config.split.test_fraction) for key in keys])
    return {split: table.filter(pa.array(assigned == split)) for split in config.split_names}


def _batches(config: Config, source: InputSource, header: list[str] | None, malformed: list[MalformedLine]):
    if config.input_format == "parquet":
        return iter_parquet_batches(config, source.files)
    return iter_csv_batches(config, source.files, header, malformed)


def _analyse_and_spill(config: Config, sources: list[InputSource], header: list[str] | None, spill_dir: Path,
                       dead_letter_dir: Path):
    """Pass 1. Returns the analyzers and the counts (the Beam job's keys: rows per split and file, reasons...)."""
    validator, analyzers, labels = ColumnarValidator(config), TrainAnalyzers(config), LabelCounter(config)
    counts, malformed = Counter(), []
    spills, progress = {}, Progress("validate + analyse")
    dead_letter_dir.mkdir(parents=True, exist_ok=True)
    with open(dead_letter_dir / "part-00000-of-00001.jsonl", "w") as letters_out:
        def write_letters(letters):
            for letter in letters:
                counts[f"{DEAD_LETTER}/{letter['reason']}"] += 1
                letters_out.write(json.dumps(letter, sort_keys=True) + "\n")

        for source in sources:
            for path, batch in _batches(config, source, header, malformed):
                valid = validator(batch, path)
                write_letters(valid.dead_letters)
                write_letters(take_malformed_letters(malformed, config.input.delimiter, path))
                counts[f"{DROPPED}/{OUTSIDE_SAMPLE_SPACE}"] += valid.dropped
                counts[REPAIRED] += valid.repaired
                tables = ({source.split: valid.table} if source.split
                          else _split_rows(valid.table, valid.keys, config))
                for split, table in tables.items():
                    counts[split] += table.num_rows
                    counts[f"files/{split}/{path}"] += table.num_rows
                    labels.add_columns(counts, split, {name: table.column(name).to_numpy()
                                                       for name in config.label_columns})
                    if split not in spills:
                        spills[split] = pa.ipc.new_file(str(spill_dir / f"{split}.arrow"), table.schema)
                    spills[split].write_table(table)
                    if split == TRAIN:
                        analyzers.update(table)
                progress.add(batch.num_rows)
    for spill in spills.values():
        spill.close()
    return analyzers, counts


def _transform_and_write(config: Config, output_dir: Path, spill_dir: Path):
    """Pass 2: spilled rows → transform_fn → tf.Examples → gzip shards, per split."""
    transformer = BatchTransformer(str(output_dir))
    for split in config.split_names:
        writer = ShardedTFRecordWriter(Artifacts(output_dir).split_dir(split), config.pipeline.num_shards)
        progress = Progress(f"transform + write {split}")
        path = spill_dir / f"{split}.arrow"
        if path.exists():
            with pa.OSFile(str(path)) as source:  # read, not mapped: mapped pages would count as resident
                reader = pa.ipc.open_file(source)
                for index in range(reader.num_record_batches):
                    table = pa.Table.from_batches([reader.get_batch(index)])
                    writer.write(transformer(table))
                    progress.add(table.num_rows)
        writer.close()


def _write_counts(output_dir: Path, counts: Counter):
    """stats/counts.jsonl in the Beam job's format, so the manifest is built the same way."""
    stats = output_dir / "stats"
    stats.mkdir(parents=True, exist_ok=True)
    (stats / "counts.jsonl").write_text("".join(json.dumps([key, n]) + "\n" for key, n in sorted(counts.items()) if n))


def run_columnar(config: Config, sources: list[InputSource], header: list[str] | None, output_dir: Path,
                 temp_dir: str) -> dict[str, float]:
    """Runs both passes; returns the seconds each stage took (for the benchmark and the log)."""
    if config.input_format not in COLUMNAR_FORMATS:
        raise InputError(f"input.format: the columnar engine reads {' and '.join(COLUMNAR_FORMATS)}; "
                         f"'{config.input.first_pattern}' is {config.input_format}, use pipeline.engine: beam")
    spill_dir = Path(temp_dir) / "spill"
    spill_dir.mkdir(parents=True, exist_ok=True)
    seconds, started = {}, time.monotonic()
    analyzers, counts = _analyse_and_spill(config, sources, header, spill_dir, Artifacts(output_dir).dead_letter_dir)
    seconds["validate_analyse"] = time.monotonic() - started
    started = time.monotonic()
    results = analyzers.results(Path(temp_dir) / "vocabularies")
    write_transform_fn(config, results, str(output_dir))
    seconds["write_transform_fn"] = time.monotonic() - started
    started = time.monotonic()
    _transform_and_write(config, output_dir, spill_dir)
    seconds["transform_write"] = time.monotonic() - started
    _write_counts(output_dir, counts)
    _LOG.info("columnar engine: %s; seconds per stage %s",
              {split: counts[split] for split in config.split_names}, {k: round(v, 2) for k, v in seconds.items()})
    return seconds
