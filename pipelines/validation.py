"""Row validation: every raw row becomes a typed row or a dead letter with its reason.

Nothing is dropped silently. A bad row keeps its original values, the field at
fault and a reason code, so it can be counted, inspected and replayed.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

from features.config import Column, Config

# Reason codes, stable strings that dashboards and tests can rely on.
WRONG_COLUMN_COUNT = "wrong_column_count"
UNPARSEABLE_LINE = "unparseable_line"
MISSING_REQUIRED = "missing_required"
INVALID_INT = "invalid_int"
INVALID_FLOAT = "invalid_float"
INVALID_TEXT = "invalid_text"
NOT_FINITE = "not_finite"
MALFORMED_LIST = "malformed_list"
TOO_MANY_ITEMS = "too_many_items"
INVALID_LABEL = "invalid_label"
OUTSIDE_SAMPLE_SPACE = "label_outside_sample_space"
MALFORMED_RECORD = "malformed_record"
UNKNOWN_FIELD = "unknown_field"
REPEATED_FIELD = "repeated_field"


class RowError(ValueError):
    """Why one row cannot be used; `field` is the column at fault (None for the whole line)."""

    def __init__(self, reason: str, field: str | None, message: str):
        super().__init__(message)
        self.reason, self.field, self.message = reason, field, message


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A rejected row with its reason, written as one JSON line."""

    reason: str
    field: str | None
    message: str
    row: Any  # the raw line (str) or the raw row (dict), untouched

    def to_json_dict(self) -> dict:
        row = self.row if isinstance(self.row, str) else {k: _jsonable(v) for k, v in self.row.items()}
        return {"reason": self.reason, "field": self.field, "message": self.message, "row": row}


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


INT64_RANGE = (-(2**63), 2**63 - 1)


def _in_int64_range(column: Column, number: int) -> int:
    if not INT64_RANGE[0] <= number <= INT64_RANGE[1]:
        raise RowError(INVALID_INT, column.name, f"column '{column.name}': {number} is outside the int64 range")
    return number


def _parse_int(column: Column, value) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return _in_int64_range(column, value)
    try:
        number = float(value) if not isinstance(value, str) else float(value.strip())
    except (TypeError, ValueError):
        raise RowError(INVALID_INT, column.name,
                       f"column '{column.name}': expected an integer, got {value!r}") from None
    if not math.isfinite(number):
        raise RowError(NOT_FINITE, column.name, f"column '{column.name}': value {value!r} is not finite")
    if number != int(number):
        raise RowError(INVALID_INT, column.name,
                       f"column '{column.name}': expected an integer, got {value!r}")
    return _in_int64_range(column, int(number))


def _parse_float(column: Column, value) -> float:
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise RowError(INVALID_FLOAT, column.name,
                       f"column '{column.name}': expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise RowError(NOT_FINITE, column.name, f"column '{column.name}': value {value!r} is not finite")
    return number


def _parse_list(column: Column, value) -> list[str]:
    if isinstance(value, str):
        items = value.split(column.separator) if value != "" else []
    elif isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = [_parse_text(column, item) for item in (value.tolist() if hasattr(value, "tolist") else value)]
    else:
        raise RowError(MALFORMED_LIST, column.name,
                       f"column '{column.name}': expected '{column.separator}'-separated values, got {value!r}")
    if any(item.strip() == "" for item in items):
        raise RowError(MALFORMED_LIST, column.name,
                       f"column '{column.name}': empty item in {value!r}")
    if len(items) > column.max_items:
        raise RowError(TOO_MANY_ITEMS, column.name,
                       f"column '{column.name}': {len(items)} items, more than max_items={column.max_items}")
    return items


def parse_value(column: Column, value):
    """Converts one raw value to the column's type, applying the default when it is optional."""
    if _is_missing(value):
        if column.required:
            raise RowError(MISSING_REQUIRED, column.name, f"column '{column.name}' is required but empty")
        if column.type == "string_list" and column.default in (None, ""):
            return []
        value = "" if column.default is None else column.default
    if column.type == "int":
        return _parse_int(column, value)
    if column.type == "float":
        return _parse_float(column, value)
    if column.type == "string_list":
        return _parse_list(column, value)
    return _parse_text(column, value)


def _parse_text(column: Column, value) -> str:
    if not isinstance(value, bytes):
        return str(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RowError(INVALID_TEXT, column.name, f"column '{column.name}': not UTF-8 text ({err})") from None


def validated_columns(config: Config) -> list[str]:
    """Columns every row is typed and checked on: the transform's inputs and the split key."""
    names = config.transform_input_columns
    return names + ([config.split.key] if config.split.key and config.split.key not in names else [])


def row_split_key(config: Config):
    """The split key of a validated row: `split.key`'s value, or without one the whole typed row.

    The whole row is every validated column in config order as compact JSON;
    Python floats print their shortest round-trip form, so both engines
    (which parse the same text to the same float64) hash the same string.
    """
    if config.split.key:
        return lambda row: row[config.split.key]
    names = validated_columns(config)
    return lambda row: json.dumps([row[name] for name in names], ensure_ascii=False, separators=(",", ":"))


class SampleSpaceViolation(RowError):
    """A downstream label set outside its sample space; under policy 'drop' the row is counted, not kept."""


def label_checks(config: Config, columns: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(binary labels among `columns`, (label, its sample space's label) pairs with both among `columns`)."""
    binary = [t for t in config.tasks if t.type == "binary" and t.label in columns]
    funnel = [(t.label, config.task(t.sample_space).label) for t in binary
              if t.sample_space and config.task(t.sample_space).label in columns]
    return [t.label for t in binary], funnel


class RowValidator:
    """Types a raw row against the config and checks the labels' funnel consistency.

    `columns` narrows what is validated (default: `validated_columns`); labels
    are checked only when they are among them, so `recsys predict` validates
    the features a model reads and never requires labels.

    `pipeline.sample_space_violations` decides a row whose downstream label is
    set outside its sample space (a purchase without a click): `reject` raises
    (a dead letter), `drop` raises `SampleSpaceViolation` (counted, not kept),
    `repair` clears the downstream label and sets `repaired` on the validator
    for the caller to count.
    """

    def __init__(self, config: Config, columns: list[str] | None = None):
        self._columns = [config.column(name) for name in (columns or validated_columns(config))]
        self._binary_labels, self._funnel = label_checks(config, [column.name for column in self._columns])
        self._policy = config.pipeline.sample_space_violations
        self.repaired = False

    def __call__(self, raw: Mapping[str, Any]) -> dict:
        self.repaired = False
        row = {column.name: parse_value(column, raw.get(column.name)) for column in self._columns}
        for label in self._binary_labels:
            if row[label] not in (0, 1):
                raise RowError(INVALID_LABEL, label, f"label '{label}' must be 0 or 1, got {row[label]!r}")
        for label, space_label in self._funnel:
            if row[label] != 0 and row[space_label] == 0:
                if self._policy == "repair":
                    row[label], self.repaired = 0, True
                    continue
                error = SampleSpaceViolation if self._policy == "drop" else RowError
                raise error(OUTSIDE_SAMPLE_SPACE, label,
                            f"label '{label}' is {row[label]} but '{space_label}' is 0 "
                            f"('{label}' lives on '{space_label}' positives; "
                            "see pipeline.sample_space_violations: reject, drop or repair)")
        return row
