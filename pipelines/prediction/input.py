"""What `recsys predict` reads: `--input` in the config's input layout, validated as the model needs it.

Prediction validates the columns the model reads (`config.feature_columns`)
with the pipeline's own rules (types, required values, defaults, list items),
so a row the pipeline would reject for its features is a dead letter here too,
with the same reason. Labels are never required: candidate files have none;
a label column the user keeps is written as it was read.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterator

from features.config import Config
from pipelines.row_formats import RawRowParser, checked_record
from pipelines.input_files import InputError, input_sources, parquet_columns
from pipelines.sources import iter_records
from pipelines.split_counts import dead_letter_json
from pipelines.validation import RowValidator

FORMATS = ("parquet", "csv", "tfrecord")
# Default valid rows per output shard, by engine. The in-process engine streams a shard batch by batch; the
# Beam engine groups a shard's rows and sorts them in one worker's memory (as Python tuples), on every runner,
# so its shard size is what bounds a worker's memory.
SHARD_ROWS = {"inprocess": 1_000_000, "beam": 100_000}


@dataclasses.dataclass(frozen=True)
class PredictionJob:
    """Everything both engines need to know, checked before either starts."""

    config: Config  # its input section is `--input`'s
    files: tuple[str, ...]
    header: list[str] | None  # a CSV file's columns
    keep: tuple[str, ...]  # input columns written next to the scores, as read
    outputs: tuple[str, ...]  # the model's score names
    output_format: str
    shard_rows: int  # rows per output shard (a file's valid rows in order, cut every shard_rows)


def with_input(config: Config, pattern: str) -> Config:
    """The config reading `pattern` (one file or glob, nothing split) in its own dialect.

    The format stays the config's unless `pattern`'s extension says Parquet or
    TFRecord. Columns the model does not read become optional, so files without
    labels (tomorrow's candidates) pass the header checks.
    """
    if "://" not in pattern:
        pattern = os.path.abspath(pattern)
    source = config.input.model_copy(update={"path": pattern, "train": None, "eval": None, "test": None})
    inferred = config.model_copy(update={"input": source.model_copy(update={"format": None})}).input_format
    if inferred != "csv":
        source = source.model_copy(update={"format": inferred})
    features = set(config.feature_columns)
    columns = [c if c.name in features else c.model_copy(update={"required": False}) for c in config.columns]
    return config.model_copy(update={"input": source, "columns": columns})


def prediction_job(config: Config, pattern: str, keep: list[str], output_format: str, shard_rows: int) -> PredictionJob:
    """Checks the input (files, headers, required columns) and the kept columns; errors name the culprit."""
    if output_format not in FORMATS:
        raise InputError(f"--format {output_format}: expected one of {', '.join(FORMATS)}")
    if shard_rows < 1:
        raise InputError(f"--shard-rows {shard_rows}: must be at least 1")
    config = with_input(config, pattern)
    sources, header = input_sources(config)
    files = sources[0].files
    outputs = tuple(config.output_names)
    clash = [name for name in keep if name in outputs]
    if clash:
        raise InputError(f"--keep {clash[0]}: the model has an output of that name; the written columns would clash")
    _check_kept_columns(config, files, header, keep)
    return PredictionJob(config, files, header, tuple(keep), outputs, output_format, shard_rows)


def _check_kept_columns(config: Config, files: tuple[str, ...], header: list[str] | None, keep: list[str]):
    """Every kept column is in every input file (CSV, Parquet) or among the config's columns (record formats).

    A kept column a file lacks would be nulls from one engine and a crash in
    the other; a record format has no header to check, so a misspelt name
    there would silently be nulls: both are refused before the job starts.
    """
    if config.input_format == "csv":
        found = {files[0]: header}  # `input_sources` checked that every file has the first file's header
    elif config.input_format == "parquet":
        found = {path: parquet_columns(path) for path in files}
    else:
        declared = [column.name for column in config.columns]
        unknown = [name for name in keep if name not in declared]
        if unknown:
            raise InputError(f"--keep {', '.join(unknown)}: {config.input_format} records are read by the config's "
                             f"columns and it declares no such column (declared: {', '.join(declared)})")
        return
    for path, names in found.items():
        missing = [name for name in keep if name not in names]
        if missing:
            raise InputError(f"--keep {', '.join(missing)}: no such column in '{path}' (found: {', '.join(names)})")


def scorable_rows(job: PredictionJob, path: str) -> Iterator[tuple[dict | None, tuple, dict | None]]:
    """One file's records in order, each as (features, kept values, None), or (None, (), dead letter) if bad."""
    config = job.config
    parse = RawRowParser(config, job.header)
    validate = RowValidator(config, config.feature_columns)
    for record in iter_records(config, path):
        raw, features, error = checked_record(parse, validate, record)
        if error is not None:
            yield None, (), dead_letter_json(error, raw, path)
            continue
        yield features, tuple(_kept_value(raw.get(name)) for name in job.keep), None


def _kept_value(value):
    """A kept value as read, with tf.Example bytes as text (ids and labels are written as text, not blobs)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, list):
        return [_kept_value(item) for item in value]
    return value
