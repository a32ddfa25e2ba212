"""Raw schemas derived from the config: what the pipeline reads and what serving parses."""
from __future__ import annotations

import tensorflow as tf

from features.config import Column, Config

_DTYPES = {"string": tf.string, "int": tf.int64, "float": tf.float32, "string_list": tf.string}


def _spec(column: Column, with_defaults: bool):
    dtype = _DTYPES[column.type]
    if column.type == "string_list":
        return tf.io.VarLenFeature(dtype)
    default = column.default if (with_defaults and not column.required) else None
    if default is not None:
        default = tf.constant(default, dtype).numpy()
    return tf.io.FixedLenFeature([], dtype, default_value=default)


def raw_feature_spec(config: Config) -> dict:
    """Spec of validated rows as tf.Transform sees them (validation has filled every default)."""
    return {name: _spec(config.column(name), with_defaults=False) for name in config.transform_input_columns}


def serving_feature_spec(config: Config) -> dict:
    """Spec for parsing raw `tf.Example`s at serving time: features only, optional ones defaulted."""
    return {name: _spec(config.column(name), with_defaults=True) for name in config.feature_columns}
