"""The in-process engine: one process streams Arrow record batches through validation, the scorer and the writer.

CSV and Parquet are read as the columnar preprocessing engine reads them
(`pipelines.columnar.reader`) and validated column by column
(`ColumnarValidator`, each dead letter worded as the Beam path words it); the
valid typed columns become serialized raw `tf.Example`s in one C++ call
(tfx-bsl's encoder) and go to the scorer a batch at a time. Slot rows and
`tf.Example` TFRecords are parsed record by record, as the Beam engine does.
Memory holds one batch of rows, whatever the input's size.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from features.examples import to_examples
from pipelines.columnar.reader import iter_csv_batches, iter_parquet_batches
from pipelines.columnar.validation import ColumnarValidator, malformed_letter
from pipelines.prediction.input import PredictionJob, scorable_rows
from pipelines.prediction.output import (DEAD_LETTER_FILE, FileShards, Progress, prediction_table, summary,
                                         table_examples)

ScoreExamples = Callable[[list[bytes]], dict[str, np.ndarray]]  # serving_default: raw tf.Examples → scores
ROW_BATCH = 8192  # rows per scorer call for record-by-record formats


def _arrow_batches(job: PredictionJob, path: str) -> Iterator[tuple[list[bytes], pa.Table, list[dict]]]:
    """(serialized examples of the valid rows, their kept columns, dead letters) per record batch."""
    config = job.config
    validate = ColumnarValidator(config, config.feature_columns)
    malformed = []
    if config.input_format == "parquet":
        batches = iter_parquet_batches(config, (path,), extra_columns=job.keep)
    else:
        batches = iter_csv_batches(config, (path,), job.header, malformed)
    for _, batch in batches:
        valid = validate(batch, path)
        letters = [malformed_letter(line, config.input.delimiter, path) for line in malformed] + valid.dead_letters
        malformed.clear()
        kept = pa.Table.from_batches([batch.select(list(job.keep))]).filter(valid.valid)
        yield table_examples(valid.table.select(config.feature_columns)), kept, letters


def _row_batches(job: PredictionJob, path: str) -> Iterator[tuple[list[bytes], pa.Table, list[dict]]]:
    """The same for formats parsed record by record (slot rows, tf.Example TFRecords)."""
    rows, kept, letters = [], [], []
    for features, values, letter in scorable_rows(job, path):
        if letter is not None:
            letters.append(letter)
            continue
        rows.append(features)
        kept.append(values)
        if len(rows) == ROW_BATCH:
            yield to_examples(job.config, rows), _kept_table(job, kept), letters
            rows, kept, letters = [], [], []
    if rows or letters:
        yield to_examples(job.config, rows), _kept_table(job, kept), letters


def _kept_table(job: PredictionJob, kept: list[tuple]) -> pa.Table:
    return pa.table({name: pa.array([values[i] for values in kept]) for i, name in enumerate(job.keep)})


def predict_in_process(job: PredictionJob, score_examples: ScoreExamples, staging: Path) -> dict:
    """Scores every input file into `staging`; returns the summary's counts."""
    started = time.monotonic()
    progress, dead_by_reason = Progress("predict"), Counter()
    batches = _arrow_batches if job.config.input_format in ("csv", "parquet") else _row_batches
    (staging / DEAD_LETTER_FILE).parent.mkdir(parents=True)
    with open(staging / DEAD_LETTER_FILE, "w") as dead_letters:
        for file_index, path in enumerate(job.files):
            shards = FileShards(staging, file_index, job.output_format, job.shard_rows)
            for examples, kept, letters in batches(job, path):
                for letter in letters:
                    dead_letters.write(json.dumps(letter) + "\n")
                    dead_by_reason[letter["reason"]] += 1
                if examples:
                    shards.write(prediction_table(_columns(kept), score_examples(examples), job.outputs))
                progress.add(len(examples), len(letters))
            shards.close()
    return summary(progress.scored, dead_by_reason, time.monotonic() - started, engine="inprocess")


def _columns(table: pa.Table) -> dict[str, pa.Array]:
    return {name: table.column(name).combine_chunks() for name in table.column_names}
