"""Streams the raw input as Arrow record batches, keeping lines pyarrow cannot type.

Every column is read as text so validation sees exactly what the Beam path's
`parse_csv_line` sees; a line with the wrong number of fields is not an error
for the reader, it is handed back (with its text) to become a dead letter.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
from apache_beam.io.filesystems import FileSystems

from features.config import Config
from pipelines.sources import InputError, _matched_files

BLOCK_BYTES = 8 << 20  # ~50k rows of a 40-column log per batch: big enough to amortise per-batch costs


@dataclasses.dataclass(frozen=True)
class MalformedLine:
    """A CSV line whose field count does not match the header."""

    text: str
    fields: int
    expected: int


def _open(path: str):
    """A local file goes through Arrow's own (C++) decompression; other filesystems through Beam's."""
    if "://" in path and not path.startswith("file://"):
        return FileSystems.open(path)
    return pa.input_stream(path.removeprefix("file://"), compression="detect")


def iter_csv_batches(config: Config, header: list[str], malformed: list[MalformedLine],
                     block_bytes: int = BLOCK_BYTES) -> Iterator[pa.RecordBatch]:
    """Record batches of text columns named by `header`, over every file the input matches.

    Lines with the wrong field count are appended to `malformed` as they are met.
    Blank lines are kept as rows of empty fields (so they are rejected, never
    dropped silently); the Beam path rejects them as `wrong_column_count`
    instead, the one place the two engines give a different reason.
    """
    def keep_malformed(row) -> str:
        malformed.append(MalformedLine(row.text, row.actual_columns, row.expected_columns))
        return "skip"

    read = pacsv.ReadOptions(block_size=block_bytes, use_threads=True)
    parse = pacsv.ParseOptions(invalid_row_handler=keep_malformed, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    for path in _matched_files(config.input.path):
        with _open(path) as stream:
            reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
            if reader.schema.names != header:
                raise InputError(f"input '{path}': header {reader.schema.names} differs from the first "
                                 f"file's {header}; every file of input.path must have the same columns")
            yield from reader
