"""TF Serving's REST JSON formats, read from `tensorflow_serving/util/json_tensor.cc`.

Request bodies become the same protos the gRPC API takes (`PredictRequest`
inputs as `TensorProto`s typed by the signature, `Input` examples for
Classify and Regress), so both APIs share one code path, as in TF Serving;
responses are written back from those protos. Every refusal carries the
wording of `json_tensor.cc`, whose tests (`json_tensor_test.cc`) check it.
Bodies are read by `json_document` with RapidJSON's rules.
"""
from __future__ import annotations

import base64
import binascii

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from serving.standin.dtypes import (INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, PROTO_FIELDS, UINT32_MAX,
                                    UINT64_MAX, dtype_string, shape_string)
from serving.standin.errors import ServingError, invalid_argument
from serving.standin.json_document import debug_string, format_error, json_type, utf8_bytes

_BYTES_SUFFIX = "_bytes"  # json_tensor.cc: kBytesTensorNameSuffix, outputs written as {"b64": ...}


# --- Predict: "instances" (row format) or "inputs" (columnar format) → TensorProtos typed by the signature.

def _is_base64_object(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _decode_base64(value) -> bytes:
    if not _is_base64_object(value):
        raise format_error(value, "not formatted correctly for base64 data")
    text = value["b64"]
    try:
        padded = text if "=" in text else text + "=" * (-len(text) % 4)
        return base64.b64decode(padded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise invalid_argument("Unable to base64 decode") from None


def _type_error(value, dtype: int) -> ServingError:
    return invalid_argument(f"JSON Value: {debug_string(value)} Type: {json_type(value)} "
                            f"is not of expected type: {dtype_string(dtype)}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer_in(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_int32(value) -> bool:
    return _is_integer_in(value, INT32_MIN, INT32_MAX)  # RapidJSON's IsInt, for every type stored in int_val


_ACCEPTS = {  # json_tensor.cc AddValueToTensor: dtype → whether it takes the JSON value (DT_UINT16: unimplemented)
    types_pb2.DT_FLOAT: _is_number,
    types_pb2.DT_DOUBLE: _is_number,
    types_pb2.DT_INT32: _is_int32,
    types_pb2.DT_INT16: _is_int32,
    types_pb2.DT_INT8: _is_int32,
    types_pb2.DT_UINT8: _is_int32,
    types_pb2.DT_STRING: lambda v: isinstance(v, str),
    types_pb2.DT_INT64: lambda v: _is_integer_in(v, INT64_MIN, INT64_MAX),
    types_pb2.DT_BOOL: lambda v: isinstance(v, bool),
    types_pb2.DT_UINT32: lambda v: _is_integer_in(v, 0, UINT32_MAX),
    types_pb2.DT_UINT64: lambda v: _is_integer_in(v, 0, UINT64_MAX),
}


def _leaf(value, dtype: int):
    """json_tensor.cc: AddValueToTensor (and base64 objects for strings)."""
    if isinstance(value, dict):
        if dtype == types_pb2.DT_STRING:
            return _decode_base64(value)
        raise _type_error(value, dtype)
    if dtype not in _ACCEPTS:
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Conversion of JSON Value: {debug_string(value)} "
                                           f"to type: {dtype_string(dtype)}")
    if not _ACCEPTS[dtype](value):
        raise _type_error(value, dtype)
    if dtype == types_pb2.DT_STRING:
        return utf8_bytes(value)
    if dtype == types_pb2.DT_FLOAT:
        with np.errstate(over="ignore"):  # RapidJSON's GetFloat casts; beyond float32 is infinity
            return float(np.float32(value))
    return float(value) if dtype == types_pb2.DT_DOUBLE else value


def _dense_shape(value) -> list[int]:
    """json_tensor.cc: GetDenseTensorShape, following the first element at each level."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value, dtype: int, shape: list[int]) -> list:
    """json_tensor.cc: FillTensorProto, depth first in document order, without recursion."""
    rank = len(shape)
    values, stack = [], [(value, 0)]
    while stack:
        item, level = stack.pop()
        if not isinstance(item, list):
            if level != rank:
                raise invalid_argument(f"JSON Value: {debug_string(item)} found at incorrect level: {level + 1} "
                                       f"in the JSON DOM. Expected at level: {rank}")
            values.append(_leaf(item, dtype))
            continue
        if level >= rank:
            raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(item) != shape[level]:
            raise invalid_argument(f"Encountered list at unexpected size: {len(item)} at level: {level} "
                                   f"expected size: {shape[level]}")
        stack.extend((child, level + 1) for child in reversed(item))
    return values


def _tensor(dtype: int, shape: list[int], values: list) -> tensor_pb2.TensorProto:
    tensor = tensor_pb2.TensorProto(dtype=dtype)
    tensor.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape)
    if dtype in _ACCEPTS:
        getattr(tensor, PROTO_FIELDS[dtype]).extend(values)
    return tensor


class _Column:
    """One named input gathered from the rows of "instances" (json_tensor.cc: AddInstanceItem)."""

    def __init__(self, dtype: int):
        self.dtype = dtype
        self.values: list = []
        self.item_shape: list[int] | None = None
        self.item_size = 0

    def add(self, item):
        shape = _dense_shape(item)
        values = _fill(item, self.dtype, shape)
        if self.item_shape is None:
            self.item_shape, self.item_size = shape, len(values)
        elif self.item_size != len(values):
            raise invalid_argument(f"Expecting tensor size: {self.item_size} but got: {len(values)}")
        elif self.item_shape != shape:
            raise invalid_argument(f"Expecting shape {shape_string(self.item_shape)} but got: {shape_string(shape)}")
        self.values.extend(values)


def _status_text(err: ServingError) -> str:
    """absl::Status::ToString, which TF Serving nests inside per-element messages."""
    return f"{err.code.name}: {err.message}"


def _instances(instances: list, infos: dict[str, meta_graph_pb2.TensorInfo]) -> dict[str, tensor_pb2.TensorProto]:
    """json_tensor.cc: FillTensorMapFromInstancesList."""
    if not isinstance(instances[0], dict) and len(infos) > 1:
        raise invalid_argument("instances is a plain list, but expecting list of objects as multiple input tensors "
                               "required as per tensorinfo_map")

    def is_named(value) -> bool:
        return isinstance(value, dict) and not _is_base64_object(value)

    named = is_named(instances[0])
    columns: dict[str, _Column] = {}
    for index, element in enumerate(instances):
        if named:
            if not is_named(element):
                raise invalid_argument(f"Expecting object but got list at item {index} of input list")
            for name, item in element.items():
                try:
                    if name not in infos:
                        raise invalid_argument(f"JSON object: does not have named input: {name}")
                    columns.setdefault(name, _Column(infos[name].dtype)).add(item)
                except ServingError as err:
                    raise invalid_argument(f"Failed to process element: {index} key: {name} of 'instances' list. "
                                           f"Error: {_status_text(err)}") from None
            if set(element) != set(infos):
                raise invalid_argument(f"Failed to process element: {index} of 'instances' list. JSON object: "
                                       f"{debug_string(element)} keys must be equal to: {','.join(sorted(infos))}")
        else:
            if is_named(element):
                raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
            name = next(iter(infos))
            try:
                columns.setdefault(name, _Column(infos[name].dtype)).add(element)
            except ServingError as err:
                raise invalid_argument(f"Failed to process element: {index} of 'instances' list. "
                                       f"Error: {_status_text(err)}") from None
    return {name: _tensor(column.dtype, [len(instances), *column.item_shape], column.values)
            for name, column in columns.items()}


def _columnar_tensor(value, dtype: int) -> tensor_pb2.TensorProto:
    shape = _dense_shape(value)
    return _tensor(dtype, shape, _fill(value, dtype, shape))


def _inputs(inputs, infos: dict[str, meta_graph_pb2.TensorInfo]) -> dict[str, tensor_pb2.TensorProto]:
    """json_tensor.cc: FillTensorMapFromInputsMap (extra keys of an "inputs" object are ignored there too)."""
    if not isinstance(inputs, dict) or _is_base64_object(inputs):
        if len(infos) > 1:
            raise invalid_argument("inputs is a plain value/list, but expecting an object as multiple input tensors "
                                   "required as per tensorinfo_map")
        name, info = next(iter(infos.items()))
        return {name: _columnar_tensor(inputs, info.dtype)}
    tensors = {}
    for name, info in infos.items():
        if name not in inputs:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _columnar_tensor(inputs[name], info.dtype)
    return tensors


def signature_name(document: dict) -> str:
    """json_tensor.cc: FillSignature."""
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise format_error(document, "not formatted correctly. 'signature_name' key must be a string value.")
    return name


def predict_tensors(document: dict, infos: dict[str, meta_graph_pb2.TensorInfo],
                    signature: str) -> tuple[dict[str, tensor_pb2.TensorProto], bool]:
    """(input alias → TensorProto, whether the request used the row format); json_tensor.cc:
    FillPredictRequestFromJson after the signature's inputs were looked up."""
    if not infos:
        raise invalid_argument(f"Failed to get input map for signature: {signature or 'DEFAULT'}")
    if "instances" in document:
        if "inputs" in document:
            raise format_error(document, "Not formatted correctly expecting only one of 'inputs' or "
                                          "'instances' keys to exist ")
        instances = document["instances"]
        if not isinstance(instances, list):
            raise format_error(document, "Expecting 'instances' to be an list/array")
        if not instances:
            raise format_error(document, "No values in 'instances' array")
        return _instances(instances, infos), True
    if "inputs" in document:
        return _inputs(document["inputs"], infos), False
    raise invalid_argument("Missing 'inputs' or 'instances' key")


# --- Classify and Regress: "examples" with an optional "context" → tf.Examples.

def _feature_kind_error(name: str, feature: feature_pb2.Feature) -> ServingError:
    kind = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(feature.WhichOneof("kind"),
                                                                                    "UNKNOWN")
    return invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _add_to_feature(value, name: str, feature: feature_pb2.Feature):
    """json_tensor.cc: AddValueToFeature; a feature's first value fixes its kind."""
    def ensure_kind(kind: str):
        current = feature.WhichOneof("kind")
        if current is not None and current != kind:
            raise _feature_kind_error(name, feature)

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_base64_object(value)):
        raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")
    if isinstance(value, bool):
        ensure_kind("int64_list")
        feature.int64_list.value.append(int(value))
    elif isinstance(value, dict):
        ensure_kind("bytes_list")
        feature.bytes_list.value.append(_decode_base64(value))
    elif isinstance(value, str):
        ensure_kind("bytes_list")
        feature.bytes_list.value.append(utf8_bytes(value))
    elif isinstance(value, float):
        ensure_kind("float_list")
        with np.errstate(over="ignore"):
            feature.float_list.value.append(float(np.float32(value)))
    else:
        ensure_kind("int64_list")
        if value > INT64_MAX:
            raise invalid_argument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(value)


def _example(value, example: example_pb2.Example):
    """json_tensor.cc: MakeExampleFromJsonObject."""
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {json_type(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in (content if isinstance(content, list) else [content]):
            _add_to_feature(item, name, feature)
        example.features.feature[name].CopyFrom(feature)


def examples_input(document: dict) -> input_pb2.Input:
    """json_tensor.cc: FillClassifyRegressRequestFromJson (after the signature name)."""
    model_input = input_pb2.Input()
    has_context = "context" in document
    if has_context:
        _example(document["context"], model_input.example_list_with_context.context)
    if "examples" not in document:
        # TF Serving names "classify" here for Regress requests too.
        raise format_error(document, "When method is classify, key 'examples' is expected and was not found")
    examples = document["examples"]
    if not isinstance(examples, list):
        raise format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise format_error(document, "'examples' value is an empty array")
    target = model_input.example_list_with_context if has_context else model_input.example_list
    for value in examples:
        _example(value, target.examples.add())
    return model_input


# --- Responses: json_tensor.cc MakeJsonFromTensors, MakeJsonFromClassificationResult, ...RegressionResult.

def _decimals(array: np.ndarray, digits: int) -> np.ndarray:
    """json_tensor.cc: WriteDecimal writes six significant digits, or `digits` (max_digits10) where six do not
    give the value back. Each text is returned as the Python float it spells, whose JSON spelling parses to the
    same number; NaN and infinities stay as they are (written as NaN, Infinity, -Infinity)."""
    flat = array.ravel()
    values = flat.astype(np.float64).tolist()
    spelled = [float(f"{value:g}") for value in values]
    with np.errstate(over="ignore"):
        lost = np.flatnonzero((np.array(spelled).astype(array.dtype) != flat) & np.isfinite(flat))
    for index in lost.tolist():
        spelled[index] = float(f"{values[index]:.{digits}g}")
    result = np.empty(len(spelled), dtype=object)
    result[:] = spelled
    return result.reshape(array.shape)


def _written_floats(values, dtype=np.float32) -> list:
    """Float32 or float64 values (nested lists keep their shape) as WriteDecimal writes them, in one vectorised
    pass: a value at a time costs ten times as much (1000 regression results: 8.9 ms against 1.8 ms)."""
    array = np.asarray(values, dtype)
    return _decimals(array, 9 if array.dtype == np.float32 else 17).tolist()  # max_digits10


def _writer(tensor: tensor_pb2.TensorProto, name: str):
    """The writer of one value of a tensor that is not float or double (those are written whole by `_values`)."""
    dtype = tensor.dtype
    if dtype == types_pb2.DT_STRING:
        if name.endswith(_BYTES_SUFFIX):
            return lambda raw: {"b64": base64.b64encode(raw).decode("ascii")}
        return _text
    if dtype == types_pb2.DT_BOOL:
        return bool
    if dtype in (types_pb2.DT_INT8, types_pb2.DT_INT16, types_pb2.DT_INT32, types_pb2.DT_UINT8,
                 types_pb2.DT_INT64, types_pb2.DT_UINT32, types_pb2.DT_UINT64):
        return int
    raise invalid_argument(f"Failed to write JSON value for tensor type: {dtype_string(dtype)}")


def _text(raw: bytes):
    """A string output as text; bytes that are not UTF-8 go as {"b64": ...}, since Python's JSON writer
    cannot emit raw bytes the way RapidJSON does (a deliberate, documented divergence)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(raw).decode("ascii")}


def _values(tensor: tensor_pb2.TensorProto, name: str):
    array = tf.make_ndarray(tensor)
    if tensor.dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):  # whole arrays at once: outputs can be long
        return _written_floats(array, array.dtype)
    write = _writer(tensor, name)
    if array.ndim == 0:
        return write(array.item())
    return np.vectorize(write, otypes=[object])(array).tolist() if array.size else array.tolist()


def predict_json(outputs: dict[str, tensor_pb2.TensorProto], row_format: bool) -> dict:
    """The Predict response body: "predictions" for row requests, "outputs" for columnar ones."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if row_format:
        batch = None
        for name in names:
            if not outputs[name].tensor_shape.dim:
                raise invalid_argument(f"Tensor name: {name} has no shape information ")
            size = outputs[name].tensor_shape.dim[0].size
            if batch is not None and size != batch:
                raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: {size} "
                                       f"expecting: {batch}")
            batch = size
        columns = {name: _values(outputs[name], name) for name in names}
        if len(names) == 1:
            return {"predictions": columns[names[0]]}
        return {"predictions": [{name: columns[name][row] for name in names} for row in range(batch)]}
    columns = {name: _values(outputs[name], name) for name in names}
    return {"outputs": columns[names[0]] if len(names) == 1 else columns}


def classification_json(result: classification_pb2.ClassificationResult) -> dict:
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    scores = iter(_written_floats([entry.score for classifications in result.classifications
                                   for entry in classifications.classes]))
    return {"results": [[[entry.label, next(scores)] for entry in classifications.classes]
                        for classifications in result.classifications]}


def regression_json(result: regression_pb2.RegressionResult) -> dict:
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    return {"results": _written_floats([regression.value for regression in result.regressions])}
