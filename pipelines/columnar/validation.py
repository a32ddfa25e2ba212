"""Column-at-a-time row validation: a batch of text columns → typed valid rows + dead letters.

The vectorised checks only decide *which* rows are bad; each bad row is then
re-validated by the reference `RowValidator`, so its dead letter (reason, field,
message) is exactly what the Beam path writes. A row the vector checks reject
but the reference accepts is a bug here and stops the job.

Numbers in the common decimal form are parsed by Arrow; anything else (``1_000``,
``inf``, garbage) goes through Python's `float`, as the reference does, so both
accept and reject the same text.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.config import Column, Config
from pipelines.columnar.reader import MalformedLine
from pipelines.row_formats import wrong_count_message
from pipelines.split_counts import dead_letter_json
from pipelines.validation import WRONG_COLUMN_COUNT, RowError, RowValidator, label_checks, validated_columns

_DECIMAL = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"


def _parse_numbers(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """float64 values and a mask of unparseable text (trimmed input, as the reference strips)."""
    decimal = pc.match_substring_regex(text, _DECIMAL).to_numpy(zero_copy_only=False)
    values = pc.cast(pc.if_else(decimal, text, "0"), pa.float64()).to_numpy(zero_copy_only=False, writable=True)
    unparseable = np.zeros(len(text), bool)
    for index in np.flatnonzero(~decimal):
        try:
            values[index] = float(text[index].as_py())
        except ValueError:
            unparseable[index] = True
    return values, unparseable


def _with_default(column: Column, text: pa.Array, missing: np.ndarray) -> pa.Array:
    default = "" if column.default is None else str(column.default)
    return pc.if_else(pa.array(missing), default, text) if missing.any() else text


def _numeric(column: Column, text: pa.Array, missing: np.ndarray):
    values, bad = _parse_numbers(pc.utf8_trim_whitespace(_with_default(column, text, missing)))
    bad |= ~np.isfinite(values)
    if column.type == "int":
        whole = np.where(bad, 0.0, values)
        bad |= np.floor(whole) != whole
        return pa.array(np.where(bad, 0, whole).astype(np.int64)), bad
    return pa.array(np.where(bad, 0.0, values)), bad  # float64 until the table: split keys hash it


def _string_list(column: Column, text: pa.Array, missing: np.ndarray):
    text = _with_default(column, text, missing)
    empty = pc.equal(text, "").to_numpy(zero_copy_only=False)
    split = pc.split_pattern(text, column.separator)
    items = pc.list_flatten(split)
    parents = pc.list_parent_indices(split).to_numpy()
    keep = ~empty[parents]
    items, parents = items.filter(pa.array(keep)), parents[keep]
    counts = np.bincount(parents, minlength=len(text))
    blank = pc.equal(pc.utf8_trim_whitespace(items), "").to_numpy(zero_copy_only=False)
    bad = (np.bincount(parents[blank], minlength=len(text)) > 0) | (counts > column.max_items)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), items), bad


def _as_text(values: pa.Array) -> pa.Array:
    """A column as the text the reference would read from it; null is missing ('').

    Anything but text (a Parquet number for a string column, say) goes through
    Python's `str`, as the reference's `parse_value` does (Arrow would print 1.0 as '1').
    """
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        text = values.cast(pa.string())  # pandas writes large_string; the transform reads string
    else:
        text = pa.array([None if v is None else str(v) for v in values.to_pylist()], pa.string())
    return pc.fill_null(text, "")


def _typed_list(column: Column, values: pa.Array):
    """(list array, bad-row mask) for a list-typed (Parquet) column: null is an empty list."""
    missing = values.is_null().to_numpy(zero_copy_only=False)
    values = pc.fill_null(values, pa.scalar([], values.type))
    items = pc.cast(pc.list_flatten(values), pa.string())
    parents = pc.list_parent_indices(values).to_numpy()
    counts = np.bincount(parents, minlength=len(values))
    blank = pc.equal(pc.utf8_trim_whitespace(items), "").to_numpy(zero_copy_only=False)
    bad = (np.bincount(parents[blank], minlength=len(values)) > 0) | (counts > column.max_items)
    if column.required:
        bad |= missing
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), items), bad


def _typed_numbers(column: Column, values: pa.Array):
    """(typed array, bad-row mask) for a numeric column stored as numbers (Parquet): no text round trip."""
    missing = values.is_null().to_numpy(zero_copy_only=False)
    if column.type == "int" and pa.types.is_integer(values.type) and not missing.any():
        return values.cast(pa.int64()), np.zeros(len(values), bool)
    numbers = pc.cast(values, pa.float64()).fill_null(float(column.default or 0)).to_numpy(zero_copy_only=False)
    bad = (missing & column.required) | ~np.isfinite(numbers)
    if column.type == "int":
        whole = np.where(bad, 0.0, numbers)
        bad |= np.floor(whole) != whole
        return pa.array(np.where(bad, 0, whole).astype(np.int64)), bad
    return pa.array(np.where(bad, 0.0, numbers)), bad


def _typed_column(column: Column, values: pa.Array):
    """(typed array, bad-row mask) for one column (text, or typed from Parquet), applying its default."""
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        return _typed_list(column, values)
    if column.type in ("int", "float") and (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        return _typed_numbers(column, values)
    text = _as_text(values)
    missing = pc.equal(pc.utf8_trim_whitespace(text), "").to_numpy(zero_copy_only=False)
    bad = missing.copy() if column.required else np.zeros(len(text), bool)
    if column.type in ("int", "float"):
        typed, invalid = _numeric(column, text, missing)
    elif column.type == "string_list":
        typed, invalid = _string_list(column, text, missing)
    else:
        typed, invalid = _with_default(column, text, missing), np.zeros(len(text), bool)
    return typed, bad | invalid


def _as_float32(values: pa.Array) -> pa.Array:
    # tf.Transform reads float columns as float32 (features/schema.py).
    return values.cast(pa.float32()) if pa.types.is_float64(values.type) else values


def _text(batch: pa.RecordBatch, name: str) -> pa.Array:
    """The column's text; an optional column the file lacks reads as empty (its default applies)."""
    if name in batch.schema.names:
        return batch.column(name)
    return pa.array([""] * batch.num_rows, pa.string())


def _csv_line(values: list[str], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(values)
    return out.getvalue()


@dataclasses.dataclass
class ValidBatch:
    """Typed columns of the rows that passed (only the columns the transform reads), and what else happened."""

    table: pa.Table
    keys: list  # the split key of each valid row, as the reference's `row_split_key` gives it ([]: not splitting)
    dead_letters: list[dict]
    dropped: int  # sample-space violations under policy 'drop'
    repaired: int  # sample-space violations cleared under policy 'repair'
    valid: pa.Array  # which of the batch's rows are in `table` (a boolean mask)


class ColumnarValidator:
    """Validates record batches against the config, like `RowValidator` does rows."""

    def __init__(self, config: Config, columns: list[str] | None = None):
        """`columns` narrows validation as `RowValidator`'s does; then no split keys are computed."""
        self._reference = RowValidator(config, columns)
        self._keep = columns or config.transform_input_columns
        self._columns = [config.column(name) for name in (columns or validated_columns(config))]
        self._split_key = config.split.key
        self._splits = columns is None
        self._binary_labels, self._funnel = label_checks(config, [column.name for column in self._columns])
        self._policy = config.pipeline.sample_space_violations
        self._delimiter = config.input.delimiter

    def __call__(self, batch: pa.RecordBatch, path: str) -> ValidBatch:
        """The batch's valid rows, typed, and the dead letters (JSON dicts) of the others."""
        typed, bad = {}, np.zeros(batch.num_rows, bool)
        for column in self._columns:
            typed[column.name], column_bad = _typed_column(column, _text(batch, column.name))
            bad |= column_bad
        for label in self._binary_labels:
            bad |= ~np.isin(typed[label].to_numpy(), (0, 1))
        outside = np.zeros(batch.num_rows, bool)
        for label, space_label in self._funnel:
            outside |= (typed[label].to_numpy() != 0) & (typed[space_label].to_numpy() == 0)
        if self._policy == "reject":
            bad |= outside
        outside &= ~bad
        if self._policy == "repair" and outside.any():
            for label, space_label in self._funnel:
                clear = outside & (typed[space_label].to_numpy() == 0)
                typed[label] = pa.array(np.where(clear, 0, typed[label].to_numpy()))
        letters = [self._dead_letter(batch, index, path) for index in np.flatnonzero(bad)]
        keep = ~bad & ~outside if self._policy == "drop" else ~bad
        good = pa.array(keep)
        table = pa.table({name: _as_float32(typed[name]) for name in self._keep}).filter(good)
        return ValidBatch(table, self._keys(typed, good) if self._splits else [], letters,
                          dropped=int(outside.sum()) if self._policy == "drop" else 0,
                          repaired=int(outside.sum()) if self._policy == "repair" else 0, valid=good)

    def _keys(self, typed: dict, good: pa.Array) -> list:
        if self._split_key:
            return typed[self._split_key].filter(good).to_pylist()
        columns = [typed[column.name].filter(good).to_pylist() for column in self._columns]
        return [json.dumps(list(values), ensure_ascii=False, separators=(",", ":")) for values in zip(*columns)]

    def _dead_letter(self, batch: pa.RecordBatch, index: int, path: str) -> dict:
        fields = {name: batch.column(name)[index].as_py() for name in batch.schema.names}
        try:
            self._reference(fields)
        except RowError as err:
            text = all(pa.types.is_string(t) for t in batch.schema.types)
            row = _csv_line(list(fields.values()), self._delimiter) if text else fields
            return dead_letter_json(err, row, path)
        raise AssertionError(f"columnar validation rejected a row the reference accepts: {fields}")


def malformed_letter(line: MalformedLine, delimiter: str, path: str) -> dict:
    """The dead letter of a line with the wrong number of fields, worded as the Beam path words it."""
    error = RowError(WRONG_COLUMN_COUNT, None, wrong_count_message(line.expected, line.fields, delimiter))
    return dead_letter_json(error, line.text, path)


def take_malformed_letters(malformed: list[MalformedLine], delimiter: str, path: str) -> list[dict]:
    """Dead letters of the malformed lines met so far, removed from `malformed`.

    pyarrow's CSV reader threads append to `malformed` while the job reads it:
    only the lines counted here are converted and deleted, so a line appended
    in between stays for the next call instead of being cleared unseen.
    """
    count = len(malformed)
    letters = [malformed_letter(line, delimiter, path) for line in malformed[:count]]
    del malformed[:count]
    return letters
