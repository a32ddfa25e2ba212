"""Raw rows as serialized `tf.Example`s, the request format of the served model.

A value that cannot be encoded as its column's type (a word in an int column,
a NaN, an integer beyond int64) is an ExampleError naming the column, never a
silently wrong feature: a float truncated to an int or a string split into
characters would be scored without complaint and skew every prediction.
A missing value (absent or None) is left out, so serving applies the column's
default, or reports the required feature as missing.
"""
from __future__ import annotations

import math

import tensorflow as tf

from features.config import Column, Config
from features.errors import RecsysError


class ExampleError(RecsysError, ValueError):
    """A request value that does not fit its column; the message names the column and the value."""


def _as_int(value) -> int:
    if isinstance(value, (bool, int)):
        return int(value)
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number) or number != int(number):
        raise ValueError("not a whole number")
    return int(number)


FLOAT32_MAX = 3.4028234663852886e38  # tf.Example floats are float32; beyond this they become inf


def _as_float(value) -> float:
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError("not finite")
    if abs(number) > FLOAT32_MAX:
        raise ValueError("beyond the float32 range")
    return number


def _items(column: Column, value) -> list:
    if isinstance(value, str):
        return value.split(column.separator) if value else []
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return list(value.tolist() if hasattr(value, "tolist") else value)
    raise ValueError(f"expected a list or a '{column.separator}'-separated string")


def _feature(column: Column, value) -> tf.train.Feature:
    if column.type == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[_as_int(value)]))
    if column.type == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=[_as_float(value)]))
    items = _items(column, value) if column.type == "string_list" else [value]
    encoded = [item if isinstance(item, bytes) else str(item).encode("utf-8") for item in items]
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=encoded))


def to_example(config: Config, row: dict, columns: list[str] | None = None) -> bytes:
    """Serializes a row's `columns`; by default its feature columns only, as at serving time."""
    features = {}
    for name in columns or config.feature_columns:
        if row.get(name) is None:
            continue
        column = config.column(name)
        try:
            features[name] = _feature(column, row[name])
        except (TypeError, ValueError, OverflowError) as err:
            raise ExampleError(f"column '{name}' ({column.type}): cannot encode {row[name]!r}: {err}") from None
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _example_column(values):
    """A column as tfx-bsl's tf.Example encoder takes it: a list of int64, float32 or bytes per row (null: none)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        lengths = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
        offsets = pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32))
        return pa.ListArray.from_arrays(offsets, _example_column(pc.list_flatten(values)).flatten())
    if pa.types.is_integer(values.type) or pa.types.is_boolean(values.type):
        scalar = values.cast(pa.int64())
    elif pa.types.is_floating(values.type):
        scalar = values.cast(pa.float32())
    else:
        scalar = values.cast(pa.string()).cast(pa.binary())
    offsets = np.where(scalar.is_null().to_numpy(zero_copy_only=False), 0, 1).cumsum()  # a null is no value
    return pa.ListArray.from_arrays(pa.array(np.r_[0, offsets].astype(np.int32)), scalar.drop_null())


def table_to_examples(table) -> list[bytes]:
    """An Arrow table's rows as serialized `tf.Example`s, one feature per column, typed by the column's type.

    Integers and booleans become int64, floats float32, anything else bytes
    (its text); list columns hold their items. The C++ encoder is tfx-bsl's
    (the one TFX uses): building a proto per row in Python is what made
    scoring a large eval set slow.
    """
    import pyarrow as pa
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    batch = pa.RecordBatch.from_arrays([_example_column(column.combine_chunks()) for column in table.columns],
                                       table.column_names)
    return RecordBatchToExamplesEncoder().encode(batch)


_ARROW_TYPES = {"int": "int64", "float": "float32", "string": "string", "string_list": "string"}


def to_examples(config: Config, rows: list[dict], columns: list[str] | None = None) -> list[bytes]:
    """Serializes many typed rows at once into the same protos as `to_example`, about 10x faster.

    The rows become one Arrow table, typed by the config, for `table_to_examples`.
    """
    import pyarrow as pa

    if not rows:
        return []
    names = [name for name in (columns or config.feature_columns) if name in rows[0]]
    arrays = []
    for name in names:
        column_type = config.column(name).type
        values = [row[name] for row in rows]
        if column_type == "string_list":
            values = [[str(v) for v in items] for items in values]
        elif column_type == "string":
            values = [str(v) for v in values]
        arrow_type = getattr(pa, _ARROW_TYPES[column_type])()
        arrays.append(pa.array(values, pa.list_(arrow_type) if column_type == "string_list" else arrow_type))
    return table_to_examples(pa.table(arrays, names=names))
