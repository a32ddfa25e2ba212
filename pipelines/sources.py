"""Reading raw impression logs (CSV or Parquet) as rows for validation.

The input's columns are checked before the job starts: a missing required
column or an empty input is a clear error now, not a million dead letters later.
"""
from __future__ import annotations

import csv
import io

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from features.config import Config
from features.errors import RecsysError


class InputError(RecsysError, ValueError):
    """The input as a whole cannot be read (no files, no header, missing required columns)."""


def _matched_files(pattern: str) -> list[str]:
    matches = FileSystems.match([pattern])[0].metadata_list
    if not matches:
        raise InputError(f"input.path: no file matches '{pattern}'")
    return sorted(m.path for m in matches)


def _csv_header(path: str) -> list[str]:
    first_line = _first_lines(path, 1)
    if not first_line.strip():
        raise InputError(f"input.path: '{path}' is empty (expected a CSV header line)")
    return next(csv.reader([first_line]))


def _first_lines(path: str, count: int) -> str:
    with FileSystems.open(path) as handle:  # decompresses .gz by extension
        return "".join(handle.readline().decode("utf-8") for _ in range(count))


def _parquet_columns(path: str) -> list[str]:
    with FileSystems.open(path) as handle:
        return pq.ParquetFile(handle).schema_arrow.names


def _has_rows(path: str, input_format: str) -> bool:
    if input_format == "parquet":
        with FileSystems.open(path) as handle:
            return pq.ParquetFile(handle).metadata.num_rows > 0
    header_and_first_row = _first_lines(path, 2).split("\n", 1)
    return len(header_and_first_row) == 2 and bool(header_and_first_row[1].strip())


def _check_not_empty(files: list[str], input_format: str):
    """An input with a header but no rows would fail deep inside tf.Transform's analyzers; say so now."""
    if not any(_has_rows(path, input_format) for path in files):  # stops at the first file with data
        raise InputError(f"input.path: {len(files)} file(s) matched but none has a data row "
                         f"(first: '{files[0]}')")


def input_columns(config: Config) -> list[str]:
    """The columns of the input's first file, checked against the config."""
    files = _matched_files(config.input.path)
    first = files[0]
    columns = _parquet_columns(first) if config.input_format == "parquet" else _csv_header(first)
    needed = [c.name for c in config.columns if c.required]
    missing = [name for name in needed if name not in columns]
    if missing:
        raise InputError(f"input '{first}': required column(s) {', '.join(missing)} are missing "
                         f"(found: {', '.join(columns)})")
    _check_not_empty(files, config.input_format)
    return columns


class ReadRawRows(beam.PTransform):
    """Reads the input as CSV lines (str) or Parquet rows (dict); validation parses both."""

    def __init__(self, config: Config):
        super().__init__()
        self._config = config

    def expand(self, pbegin):
        if self._config.input_format == "parquet":
            return pbegin | "ReadParquet" >> beam.io.ReadFromParquet(self._config.input.path)
        return pbegin | "ReadCsv" >> beam.io.ReadFromText(self._config.input.path, skip_header_lines=1)


def read_sample_rows(config: Config, count: int) -> list[dict]:
    """The first `count` raw rows of the input, as text (CSV) or typed values (Parquet), for previews."""
    import pandas as pd

    first = _matched_files(config.input.path)[0]
    if config.input_format == "parquet":
        with FileSystems.open(first) as handle:
            frame = pq.ParquetFile(handle).read_row_group(0).to_pandas().head(count)
    else:
        frame = pd.read_csv(io.StringIO(_first_lines(first, count + 1)), dtype=str, keep_default_na=False)
    return frame.to_dict(orient="records")
