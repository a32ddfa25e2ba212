"""Raw rows as serialized `tf.Example`s, the request format of the served model."""
from __future__ import annotations

import tensorflow as tf

from features.config import Config


def _feature(column_type: str, value) -> tf.train.Feature:
    if column_type == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    if column_type == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    items = value if column_type == "string_list" else [value]
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode("utf-8") for v in items]))


def to_example(config: Config, row: dict, columns: list[str] | None = None) -> bytes:
    """Serializes a typed row's `columns`; by default its feature columns only, as at serving time."""
    features = {name: _feature(config.column(name).type, row[name])
                for name in (columns or config.feature_columns) if name in row}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
