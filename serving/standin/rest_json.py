"""TF Serving's REST JSON formats: request bodies → arrays and examples, results → JSON.

Follows https://www.tensorflow.org/tfx/serving/api_rest: `instances` (row) or
`inputs` (columnar) for Predict, answered with `predictions` or `outputs`;
`examples` plus an optional `context` for Classify and Regress, answered with
`results`; binary values as `{"b64": "..."}` both ways.
"""
from __future__ import annotations

import base64
import json
import math

import numpy as np
import tensorflow as tf

from serving.standin.errors import invalid_argument

_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def parse_body(body: bytes) -> dict:
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise invalid_argument(f"JSON Parse error: {err}") from None
    if not isinstance(request, dict):
        raise invalid_argument(f"JSON Parse error: the request body must be a JSON object, got {type(request).__name__}")
    return request


def decode_value(value, where: str):
    """JSON → Python values, `{"b64": ...}` → bytes (recursively through lists)."""
    if isinstance(value, list):
        return [decode_value(item, where) for item in value]
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise invalid_argument(f"{where}: an object value must be {{\"b64\": \"<base64 string>\"}}, got {value}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as err:  # binascii.Error, or non-ASCII text
            raise invalid_argument(f"{where}: invalid base64 in b64 value: {err}") from None
    return value


def _leaves(values):
    if isinstance(values, list):
        for value in values:
            yield from _leaves(value)
    else:
        yield values


def _array(values, where: str) -> np.ndarray:
    # Text and bytes stay Python objects: numpy's fixed-width "U" and "S" arrays drop trailing
    # NUL characters, which would corrupt serialized examples and change strings.
    textual = any(isinstance(leaf, (bytes, str)) for leaf in _leaves(values))
    try:
        array = np.asarray(values, dtype=object if textual else None)
    except ValueError as err:
        raise invalid_argument(f"{where}: values must form a rectangular tensor: {err}") from None
    if array.dtype.kind == "O" and not all(isinstance(v, (bytes, str)) for v in array.ravel()):
        raise invalid_argument(f"{where}: values must form a rectangular tensor of one type")
    return array


def predict_inputs(request: dict, input_names: list[str]) -> tuple[dict[str, np.ndarray], bool]:
    """(input name → array, whether the request was in row form)."""
    if ("instances" in request) == ("inputs" in request):
        raise invalid_argument("Missing 'inputs' or 'instances' key" if "instances" not in request
                               else "Both 'inputs' and 'instances' are set; send one of them")
    if "instances" in request:
        instances = request["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid_argument("'instances' must be a non-empty list")
        return _rows(instances, input_names), True
    columns = request["inputs"]
    if len(input_names) == 1 and not (isinstance(columns, dict) and set(columns) == set(input_names)):
        columns = {input_names[0]: columns}  # a single input may be sent bare
    if not isinstance(columns, dict):
        raise invalid_argument(f"'inputs' must be an object keyed by input name ({', '.join(input_names)})")
    return {name: _array(decode_value(value, f"inputs.{name}"), f"inputs.{name}")
            for name, value in columns.items()}, False


def _rows(instances: list, input_names: list[str]) -> dict[str, np.ndarray]:
    named = all(isinstance(row, dict) and "b64" not in row for row in instances)
    if not named:
        if len(input_names) != 1:
            raise invalid_argument(f"each instance must be an object with the inputs {', '.join(input_names)}")
        return {input_names[0]: _array(decode_value(instances, "instances"), "instances")}
    names = list(dict.fromkeys(name for row in instances for name in row))
    for i, row in enumerate(instances):
        missing = [name for name in names if name not in row]
        if missing:
            raise invalid_argument(f"instances[{i}] is missing {', '.join(missing)}: every instance needs the "
                                   "same named inputs")
    return {name: _array(decode_value([row[name] for row in instances], f"instances.{name}"), f"instances.{name}")
            for name in names}


def _jsonable(array: np.ndarray):
    if array.dtype.kind in "SO":
        return np.vectorize(_text_or_b64, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def _text_or_b64(value: bytes):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def predict_response(outputs: dict[str, np.ndarray], row_form: bool) -> dict:
    if not row_form:
        values = {name: _jsonable(value) for name, value in outputs.items()}
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    columns = {name: _jsonable(value) for name, value in outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    rows = len(next(iter(columns.values())))
    return {"predictions": [{name: column[i] for name, column in columns.items()} for i in range(rows)]}


def _shown(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _fits_float32(value: int | float) -> bool:
    """TF Serving's rule for a float feature: NaN and ±inf pass, a finite value must be within float32."""
    try:
        number = float(value)
    except OverflowError:  # an integer too large for any float
        return False
    return not math.isfinite(number) or abs(number) <= _FLOAT32_MAX


def _feature(name: str, value) -> tf.train.Feature:
    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, bytes) for v in values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if all(isinstance(v, str) for v in values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in values]))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        outside = [v for v in values if not _INT64_MIN <= v <= _INT64_MAX]
        if outside:
            raise invalid_argument(f"feature '{name}': {_shown(outside[0])} is outside the int64 range")
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        outside = [v for v in values if not _fits_float32(v)]
        if outside:
            raise invalid_argument(f"feature '{name}': cannot convert {_shown(outside[0])} to float "
                                   "without loss of precision")
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    raise invalid_argument(f"feature '{name}': values must be all strings, all integers or all numbers, got {value!r}")


def _features(features: dict, where: str) -> dict[str, tf.train.Feature]:
    if not isinstance(features, dict):
        raise invalid_argument(f"{where} must be an object of feature name → value, got {features!r}")
    return {name: _feature(name, decode_value(value, f"{where}.{name}")) for name, value in features.items()}


def examples_of(request: dict) -> list[bytes]:
    """Classify/Regress `examples`, each merged over the optional `context` (the example's features win)."""
    examples = request.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid_argument("'examples' must be a non-empty list of feature objects")
    context = _features(request["context"], "context") if "context" in request else {}
    return [tf.train.Example(features=tf.train.Features(
        feature={**context, **_features(features, f"examples[{i}]")})).SerializeToString()
        for i, features in enumerate(examples)]


def classify_response(classes, scores) -> dict:
    rows = len(classes if classes is not None else scores)
    width = (classes if classes is not None else scores).shape[1]
    return {"results": [[[classes[r, k].decode() if classes is not None else "",
                          float(scores[r, k]) if scores is not None else 0.0] for k in range(width)]
                        for r in range(rows)]}
