"""Python values → serialized `tf.Example`s, and ranking candidates for one request.

Clients of TF Serving often have no config at hand, so the feature type comes
from the Python value (int → int64, float → float, str/bytes → bytes, a list
→ a list of its elements' type). Pass `column_types` (e.g. from
`column_types(config)`) to coerce values to the model's raw schema, so that a
price of `3` is sent as a float, as the model parses it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2


class ExampleEncodingError(ValueError):
    """A feature value that cannot be put into a tf.Example; the message names the feature."""


def column_types(config) -> dict[str, str]:
    """Raw column name → type (`string`, `int`, `float`, `string_list`) of a `features.config.Config`."""
    return {column.name: column.type for column in config.columns}


def _feature(name: str, value, column_type: str | None) -> feature_pb2.Feature:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if column_type in ("string", "string_list"):
        values = [v if isinstance(v, (str, bytes)) else str(v) for v in values]
    if column_type == "int" or (column_type is None and values and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)):
        try:
            return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[int(v) for v in values]))
        except (TypeError, ValueError):
            raise ExampleEncodingError(f"feature '{name}': expected integers, got {value!r}") from None
    if column_type == "float" or (column_type is None and values and all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values)):
        try:
            return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[float(v) for v in values]))
        except (TypeError, ValueError):
            raise ExampleEncodingError(f"feature '{name}': expected numbers, got {value!r}") from None
    if all(isinstance(v, (str, bytes)) for v in values):
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(
            value=[v.encode("utf-8") if isinstance(v, str) else v for v in values]))
    raise ExampleEncodingError(f"feature '{name}': expected strings, numbers or a list of one of them, "
                               f"got {value!r}")


def coerce_floats(features: Mapping, column_types: Mapping[str, str] | None) -> dict:
    """Numbers of `float` columns as floats, so JSON sends `3.0` (TF Serving reads `3` as an int64)."""
    types = column_types or {}
    coerced = dict(features)
    for name, value in features.items():
        if types.get(name) == "float" and not isinstance(value, bool):
            try:
                coerced[name] = [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value)
            except (TypeError, ValueError):
                raise ExampleEncodingError(f"feature '{name}': expected a number, got {value!r}") from None
    return coerced


def encode_example(features: Mapping, column_types: Mapping[str, str] | None = None) -> bytes:
    """One serialized tf.Example from `{feature name: value}`."""
    types = column_types or {}
    return example_pb2.Example(features=feature_pb2.Features(
        feature={name: _feature(name, value, types.get(name)) for name, value in features.items()})
    ).SerializeToString()


@dataclass(frozen=True)
class RankedCandidate:
    """A candidate, its position in the request, and every output's score for it."""

    index: int
    candidate: Mapping
    scores: dict[str, float]


def rank(score_examples: Callable[[list[bytes]], dict[str, np.ndarray]], context: Mapping,
         candidates: Sequence[Mapping], sort_by: str, column_types: Mapping[str, str] | None = None
         ) -> list[RankedCandidate]:
    """Scores `candidates` (each merged over `context`, the candidate's features winning), best first."""
    if not candidates:
        return []
    examples = [encode_example({**context, **candidate}, column_types) for candidate in candidates]
    scores = score_examples(examples)
    if sort_by not in scores:
        raise KeyError(f"cannot sort by '{sort_by}': the model outputs {', '.join(sorted(scores))}")
    order = np.argsort(-np.asarray(scores[sort_by]), kind="stable")
    return [RankedCandidate(int(i), candidates[i], {name: float(values[i]) for name, values in scores.items()})
            for i in order]
