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


_ARROW_TYPES = {"int": "int64", "float": "float32", "string": "binary", "string_list": "binary"}


def to_examples(config: Config, rows: list[dict], columns: list[str] | None = None) -> list[bytes]:
    """Serializes many typed rows at once, byte for byte like `to_example`, about 10x faster.

    Rows become one Arrow record batch whose C++ encoder (tfx-bsl's, the one
    TFX uses) writes the protos; building a proto per row in Python is what
    made scoring a large eval set slow.
    """
    import pyarrow as pa
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    if not rows:
        return []
    names = [name for name in (columns or config.feature_columns) if name in rows[0]]
    arrays = []
    for name in names:
        column_type = config.column(name).type
        values = [row[name] for row in rows]
        if column_type == "string_list":
            nested = [[str(v).encode("utf-8") for v in items] for items in values]
        elif column_type == "string":
            nested = [[str(v).encode("utf-8")] for v in values]
        else:
            nested = [[v] for v in values]
        arrays.append(pa.array(nested, pa.list_(getattr(pa, _ARROW_TYPES[column_type])())))
    return RecordBatchToExamplesEncoder().encode(pa.RecordBatch.from_arrays(arrays, names))
