"""Streams a source's files as Arrow record batches, keeping lines pyarrow cannot type.

CSV: every column is read as text in the config's dialect (delimiter, quoting,
header or given names), then trimmed and nulled as `row_formats.TextCleaner`
does, so validation sees exactly what the Beam path's parser sees; a line with
the wrong number of fields is not an error for the reader, it is handed back
(with its text) to become a dead letter.

Parquet: `ParquetFile.iter_batches` streams row groups with their own types
(numbers, strings, lists), decoding a batch when asked, where a
`pyarrow.dataset` scan reads batches and fragments ahead of its consumer
(its read-ahead), which holds more when the consumer (scoring, the
transform) is slower than decoding. Only the columns the config declares
(and any the caller adds) are read, never the whole file at once.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from features.config import Config
from pipelines.input_files import open_input

BLOCK_BYTES = 8 << 20  # ~50k rows of a 40-column log per batch: big enough to amortise per-batch costs
PARQUET_BATCH_ROWS = 65_536


@dataclasses.dataclass(frozen=True)
class MalformedLine:
    """A CSV line whose field count does not match the header."""

    text: str
    fields: int
    expected: int


def _cleaned(config: Config, batch: pa.RecordBatch) -> pa.RecordBatch:
    """The dialect's clean-up on every text column: trim blanks, then null texts become ''."""
    source = config.input
    if not source.strip and not source.null_values:
        return batch
    nulls = pa.array(source.null_values, pa.string())
    columns = []
    for column in batch.columns:
        if source.strip:
            column = pc.utf8_trim_whitespace(column)
        if source.null_values:
            column = pc.if_else(pc.is_in(column, value_set=nulls), "", column)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def iter_csv_batches(config: Config, files: tuple[str, ...], header: list[str], malformed: list[MalformedLine],
                     block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(file, record batch of text columns named by `header`) over `files`.

    Lines with the wrong field count are appended to `malformed` as they are met.
    Blank lines are kept as rows of empty fields (so they are rejected, never
    dropped silently); the Beam path rejects them as `wrong_column_count`
    instead, the one place the two engines give a different reason.
    Headers were checked against each other before the job (`input_sources`).
    """
    def keep_malformed(row) -> str:
        malformed.append(MalformedLine(row.text, row.actual_columns, row.expected_columns))
        return "skip"

    source = config.input
    read = pacsv.ReadOptions(block_size=block_bytes, use_threads=True, column_names=header,
                             skip_rows=1 if source.header else 0)
    parse = pacsv.ParseOptions(delimiter=source.delimiter, quote_char=source.quote_char or False,
                               invalid_row_handler=keep_malformed, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    for path in files:
        with open_input(path, arrow=True) as stream:
            for batch in pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert):
                yield path, _cleaned(config, batch)


def iter_parquet_batches(config: Config, files: tuple[str, ...], batch_rows: int = PARQUET_BATCH_ROWS,
                         extra_columns: Sequence[str] = ()) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(file, record batch of the declared and `extra_columns` the file has, typed as stored), in file order."""
    wanted = list(dict.fromkeys([c.name for c in config.columns] + list(extra_columns)))
    for path in files:
        with open_input(path, arrow=True) as stream:
            parquet = pq.ParquetFile(stream)
            present = [name for name in wanted if name in parquet.schema_arrow.names]
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=present, use_threads=True):
                yield path, batch
