"""TensorFlow's data types as TF Serving spells and stores them, in one place for the REST and gRPC paths.

The names its messages quote (`DataTypeString`, `TensorShape::DebugString`),
the integer ranges a JSON number must fit (RapidJSON's Int, Int64, Uint64),
and the `TensorProto` field each type's values go in (`Tensor::AsProtoField`,
which TF Serving's Predict answers with and `json_tensor.cc` fills).
"""
from __future__ import annotations

from tensorflow.core.framework import types_pb2

INT32_MIN, INT32_MAX = -2**31, 2**31 - 1
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1

# DataType → the TensorProto repeated field its values go in; types not here use TensorFlow's own encoding.
PROTO_FIELDS = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val", types_pb2.DT_BOOL: "bool_val", types_pb2.DT_STRING: "string_val",
    types_pb2.DT_UINT32: "uint32_val", types_pb2.DT_UINT64: "uint64_val",
}


def dtype_string(dtype: int) -> str:
    """TensorFlow's DataTypeString: DT_FLOAT → "float"."""
    return types_pb2.DataType.Name(dtype)[3:].lower()


def shape_string(dims) -> str:
    """TensorShape::DebugString: [2,3]."""
    return "[" + ",".join(str(d) for d in dims) + "]"
