"""One raw record of any supported layout → a {column: raw value} row for validation.

The readers hand over what a file holds, untouched: a text line (CSV, slot rows),
a serialized `tf.Example` (TFRecord), or a typed dict (Parquet). `RawRowParser`
turns each into the mapping `RowValidator` types, applying the CSV dialect's
blank trimming and null texts, so both engines and every later reader (eval
rows, previews) see the same values. A record that cannot be parsed is a
`RowError` (a dead letter with its reason), never a crash.
"""
from __future__ import annotations

import csv
from typing import Any, Callable

from features.config import Config, InputConfig
from pipelines.validation import (MALFORMED_RECORD, REPEATED_FIELD, UNKNOWN_FIELD, UNPARSEABLE_LINE,
                                  WRONG_COLUMN_COUNT, RowError)


def wrong_count_message(expected: int, found: int, delimiter: str) -> str:
    """The one wording of a wrong field count, shared by both engines' dead letters."""
    separated = "comma-separated" if delimiter == "," else f"{delimiter!r}-separated"
    return f"expected {expected} {separated} values, got {found}"


def csv_dialect(source: InputConfig) -> dict:
    """Keyword arguments for `csv.reader` that read the config's dialect strictly."""
    if source.quote_char is None:
        return {"delimiter": source.delimiter, "quoting": csv.QUOTE_NONE, "strict": True}
    return {"delimiter": source.delimiter, "quotechar": source.quote_char, "strict": True}


class TextCleaner:
    """The dialect's value clean-up: trim blanks (`strip`), then null texts become missing ('')."""

    def __init__(self, source: InputConfig):
        self._strip, self._nulls = source.strip, frozenset(source.null_values)

    def __call__(self, value: str) -> str:
        if self._strip:
            value = value.strip()
        return "" if value in self._nulls else value

    @property
    def changes_values(self) -> bool:
        return self._strip or bool(self._nulls)


def split_csv_line(line: str, source: InputConfig) -> list[str]:
    try:
        return next(csv.reader([line], **csv_dialect(source)))  # an unbalanced quote is an error, not a guess
    except (csv.Error, StopIteration) as err:
        raise RowError(UNPARSEABLE_LINE, None, f"line is not valid CSV: {err}") from None


class RawRowParser:
    """Parses one raw record of the config's input format; `header` names a CSV file's columns."""

    def __init__(self, config: Config, header: list[str] | None = None):
        self.unknown_fields = 0  # slot fields not in input.slots.fields, ignored in the last record
        self._source, self._format = config.input, config.input_format
        self._header = header or config.raw_column_names
        self._clean = TextCleaner(config.input)
        self._list_columns = {c.name for c in config.columns if c.type == "string_list"}

    def __call__(self, record: Any) -> dict:
        if self._format == "csv":
            return self._csv(record)
        if self._format == "slots":
            return self._slots(record)
        if self._format == "tfrecord":
            return self._example(record)
        return dict(record)  # parquet rows arrive typed

    def _csv(self, line: str) -> dict:
        fields = split_csv_line(line, self._source)
        if len(fields) != len(self._header):
            raise RowError(WRONG_COLUMN_COUNT, None,
                           wrong_count_message(len(self._header), len(fields), self._source.delimiter))
        if self._clean.changes_values:
            fields = [self._clean(value) for value in fields]
        return dict(zip(self._header, fields))

    def _slots(self, line: str) -> dict:
        slots = self._source.slots
        tokens = line.strip().split(slots.token_separator)
        if len(tokens) < len(slots.leading):
            raise RowError(WRONG_COLUMN_COUNT, None,
                           f"expected at least {len(slots.leading)} leading values "
                           f"({', '.join(slots.leading)}), got {len(tokens)}")
        row: dict[str, Any] = {name: self._clean(value) for name, value in zip(slots.leading, tokens)}
        self.unknown_fields = 0
        for token in tokens[len(slots.leading):]:
            field, separator, value = token.strip().partition(slots.field_separator)
            column = slots.fields.get(field)
            if not separator or not field:
                raise RowError(MALFORMED_RECORD, None,
                               f"token {token!r} is not field{slots.field_separator}value")
            if column is None:
                if slots.unknown_fields == "dead_letter":
                    raise RowError(UNKNOWN_FIELD, None, f"field '{field}' is not in input.slots.fields")
                self.unknown_fields += 1
                continue
            if column in self._list_columns:
                row.setdefault(column, []).append(value)
            elif column in row:
                raise RowError(REPEATED_FIELD, column,
                               f"field '{field}' ({column}) appears more than once but '{column}' "
                               "is single-valued (declare it string_list to keep every value)")
            else:
                row[column] = value
        return row

    def _example(self, serialized: bytes) -> dict:
        from tensorflow.core.example import example_pb2  # protobuf only: no TensorFlow runtime needed

        try:
            example = example_pb2.Example.FromString(serialized)
        except Exception as err:  # protobuf raises DecodeError, whose import path varies by version
            raise RowError(MALFORMED_RECORD, None, f"record is not a serialized tf.Example: {err}") from None
        row = {}
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            if name in self._list_columns:
                row[name] = values
            elif len(values) > 1:
                raise RowError(REPEATED_FIELD, name,
                               f"feature '{name}' holds {len(values)} values but the column is single-valued")
            else:
                row[name] = values[0] if values else None
        return row


def readable_record(record: Any):
    """A raw record as a dead letter keeps it: text as is, bytes as text where possible."""
    if isinstance(record, bytes):
        return record.decode("utf-8", "backslashreplace")
    return record


def checked_record(parse: RawRowParser, validate: Callable[[dict], dict],
                   record: Any) -> tuple[Any, dict | None, RowError | None]:
    """(raw row, validated row, None) for a good record; (what its dead letter keeps, None, the error) for a bad one.

    The dead letter keeps the parsed row when the record was typed (Parquet,
    tf.Example) and parsed, and the record as read otherwise (a text line is
    kept whole, never as its split fields). Preprocessing and prediction both
    read records through here, so a bad row's dead letter is worded alike.
    """
    raw = None
    try:
        raw = parse(record)
        return raw, validate(raw), None
    except RowError as err:
        return (raw if raw is not None and not isinstance(record, str) else readable_record(record)), None, err
