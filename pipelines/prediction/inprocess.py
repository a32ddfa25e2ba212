"""The in-process engine: one process streams Arrow record batches through validation, the scorer and the writer.

CSV and Parquet are read as the columnar preprocessing engine reads them
(`pipelines.columnar.reader`) and validated column by column
(`ColumnarValidator`, each dead letter worded as the Beam path words it). The
valid typed columns go to the version's `predict_features` signature as they
are (lists joined by their separator, as that signature takes them), which
skips building and parsing a `tf.Example` per row; a batch whose list items
hold the separator themselves (possible in a Parquet list column) goes as
serialized raw `tf.Example`s to `serving_default` instead, so no row is ever
split differently. Slot rows and `tf.Example` TFRecords are parsed record by
record, as the Beam engine does.

Reading and validating run one batch ahead of scoring, on a worker thread
(both release the GIL); memory holds those two batches, whatever the input's size.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.config import Config
from features.examples import table_to_examples, to_examples
from pipelines.columnar.reader import iter_csv_batches, iter_parquet_batches
from pipelines.columnar.validation import ColumnarValidator, take_malformed_letters
from pipelines.prediction.input import PredictionJob, scorable_rows
from pipelines.prediction.output import DEAD_LETTER_FILE, FileShards, prediction_table, summary
from pipelines.progress import Progress

ROW_BATCH = 8192  # rows per scorer call for record-by-record formats


class Scorer(Protocol):
    """An exported version, as `serving.scoring.ExportedModel` loads it."""

    def score(self, examples: list[bytes]) -> dict[str, np.ndarray]: ...  # serving_default

    def score_features(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...  # predict_features


@dataclasses.dataclass
class ScoringBatch:
    """One batch's valid rows, as raw feature columns or as serialized examples, with what else it holds."""

    kept: pa.Table  # the kept columns of the valid rows, as read (one row per valid row)
    dead_letters: list[dict]
    columns: dict[str, np.ndarray] | None = None
    examples: list[bytes] | None = None

    @property
    def rows(self) -> int:
        return self.kept.num_rows

    def score(self, scorer: Scorer) -> dict[str, np.ndarray]:
        return scorer.score_features(self.columns) if self.columns is not None else scorer.score(self.examples)


def raw_feature_columns(config: Config, table: pa.Table, read_as_lists: set[str]) -> dict[str, np.ndarray] | None:
    """Typed feature columns as `predict_features` takes them; None when a list item holds its separator.

    Only a column read as an Arrow list (Parquet) can hold such an item: text
    (CSV) was split on the separator, so the scan is skipped for it. The lists
    are joined again rather than sent as read, since validation gave missing
    values their default.
    """
    columns = {}
    for name in config.feature_columns:
        column, separator = table.column(name).combine_chunks(), config.column(name).separator
        if config.column(name).type == "string_list":
            if name in read_as_lists and pc.any(pc.match_substring(pc.list_flatten(column), separator)).as_py():
                return None
            column = pc.binary_join(column, pa.scalar(separator, column.type.value_type))
        columns[name] = column.to_numpy(zero_copy_only=False)
    return columns


def _arrow_batches(job: PredictionJob, path: str) -> Iterator[ScoringBatch]:
    config = job.config
    validate = ColumnarValidator(config, config.feature_columns)
    malformed = []
    if config.input_format == "parquet":
        batches = (batch for _, batch in iter_parquet_batches(config, (path,), extra_columns=job.keep))
    else:
        batches = (batch for _, batch in iter_csv_batches(config, (path,), job.header, malformed))
    for batch in batches:
        valid = validate(batch, path)
        letters = take_malformed_letters(malformed, config.input.delimiter, path) + valid.dead_letters
        kept = pa.Table.from_batches([batch.select(list(job.keep))]).filter(valid.valid)
        lists = {field.name for field in batch.schema
                 if pa.types.is_list(field.type) or pa.types.is_large_list(field.type)}
        columns = raw_feature_columns(config, valid.table, lists)
        yield ScoringBatch(kept, letters, columns,
                           table_to_examples(valid.table.select(config.feature_columns)) if columns is None else None)


def _row_batches(job: PredictionJob, path: str) -> Iterator[ScoringBatch]:
    """The same for formats parsed record by record (slot rows, tf.Example TFRecords)."""
    rows, kept, letters = [], [], []
    for features, values, letter in scorable_rows(job, path):
        if letter is not None:
            letters.append(letter)
            continue
        rows.append(features)
        kept.append(values)
        if len(rows) == ROW_BATCH:
            yield ScoringBatch(_kept_table(job, kept), letters, examples=to_examples(job.config, rows))
            rows, kept, letters = [], [], []
    if rows or letters:
        yield ScoringBatch(_kept_table(job, kept), letters, examples=to_examples(job.config, rows))


def _kept_table(job: PredictionJob, kept: list[tuple]) -> pa.Table:
    """The kept values as a table of len(kept) rows, even with no kept column."""
    table = pa.table({"": pa.nulls(len(kept))}).select([])  # no columns, len(kept) rows
    for i, name in enumerate(job.keep):
        table = table.append_column(name, pa.array([values[i] for values in kept]))
    return table


def _read_ahead(items: Iterator) -> Iterator:
    """`items`, the next one produced by a worker thread while the caller handles this one; its error is raised here.

    Reading and validating release the GIL, so they overlap scoring; memory
    holds two batches at most.
    """
    end = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-reader") as reader:
        upcoming = reader.submit(next, items, end)
        while (item := upcoming.result()) is not end:
            upcoming = reader.submit(next, items, end)
            yield item


def _file_batches(job: PredictionJob) -> Iterator[tuple[int, ScoringBatch]]:
    batches = _arrow_batches if job.config.input_format in ("csv", "parquet") else _row_batches
    for file_index, path in enumerate(job.files):
        for batch in batches(job, path):
            yield file_index, batch


def predict_in_process(job: PredictionJob, scorer: Scorer, staging: Path) -> dict:
    """Scores every input file into `staging`; returns the summary's counts."""
    started = time.monotonic()
    progress, dead_by_reason = Progress("predict (scored)", dead_letters=True), Counter()
    (staging / DEAD_LETTER_FILE).parent.mkdir(parents=True)
    shards = None
    with open(staging / DEAD_LETTER_FILE, "w") as dead_letters:
        for file_index, batch in _read_ahead(_file_batches(job)):
            if shards is None or shards.file_index != file_index:
                if shards is not None:
                    shards.close()
                shards = FileShards(staging, file_index, job.output_format, job.shard_rows)
            for letter in batch.dead_letters:
                dead_letters.write(json.dumps(letter) + "\n")
                dead_by_reason[letter["reason"]] += 1
            if batch.rows:
                shards.write(prediction_table(_columns(batch.kept), batch.score(scorer), job.outputs))
            progress.add(batch.rows, len(batch.dead_letters))
    if shards is not None:
        shards.close()
    return summary(progress.rows, dead_by_reason, time.monotonic() - started, engine="inprocess")


def _columns(table: pa.Table) -> dict[str, pa.Array]:
    return {name: table.column(name).combine_chunks() for name in table.column_names}
