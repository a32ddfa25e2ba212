"""Property-based tests of the stand-in's REST request parser.

Whatever a client sends, the parser either returns tensors or examples or
refuses with INVALID_ARGUMENT (HTTP 400 and a message); any other exception
would reach the client as a 500 with a traceback. Well-formed requests come
back with exactly the values that were sent, typed as TF Serving's
`util/json_tensor.cc` types them.
"""
import base64
import json

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.standin import json_document, proto_api, rest_json
from serving.standin.errors import ServingError

PROPERTY = settings(max_examples=200, deadline=None)
KEYS = st.sampled_from(["instances", "inputs", "examples", "context", "b64", "examples_x"]) | st.text(max_size=4)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=8) | st.builds(lambda raw: {"b64": base64.b64encode(raw).decode()}, st.binary(max_size=8))
           | st.builds(lambda text: {"b64": text}, st.text(max_size=8)))
JSON_VALUES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(KEYS, children, max_size=4), max_leaves=20)
REQUESTS = st.dictionaries(KEYS, JSON_VALUES, max_size=4)


def _parsed_or_refused(parse):
    try:
        parse()
    except ServingError as err:
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.message


@PROPERTY
@given(body=st.binary(max_size=64) | REQUESTS.map(lambda request: json.dumps(request).encode()))
def test_any_body_is_parsed_or_refused_with_invalid_argument(body):
    _parsed_or_refused(lambda: json_document.parse_body(body))


INFOS = {"single": {"examples": meta_graph_pb2.TensorInfo(dtype=tf.string.as_datatype_enum)},
         "pair": {"a": meta_graph_pb2.TensorInfo(dtype=tf.int64.as_datatype_enum),
                  "b": meta_graph_pb2.TensorInfo(dtype=tf.float32.as_datatype_enum)}}


@PROPERTY
@given(request=REQUESTS)
def test_any_json_request_is_parsed_or_refused_with_invalid_argument(request):
    request = json_document.parse_body(json.dumps(request).encode())
    _parsed_or_refused(lambda: rest_json.predict_tensors(request, INFOS["single"], ""))
    _parsed_or_refused(lambda: rest_json.predict_tensors(request, INFOS["pair"], ""))
    _parsed_or_refused(lambda: rest_json.examples_input(request))


INT64 = st.integers(-2**63, 2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=32)
TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=6)


@PROPERTY
@given(rows=st.integers(1, 5), width=st.integers(1, 3), data=st.data())
def test_columnar_and_row_inputs_come_back_with_the_values_sent(rows, width, data):
    ints = data.draw(st.lists(st.lists(INT64, min_size=width, max_size=width), min_size=rows, max_size=rows))
    words = data.draw(st.lists(TEXT, min_size=rows, max_size=rows))
    blobs = data.draw(st.lists(st.binary(max_size=6), min_size=rows, max_size=rows))
    encoded = [{"b64": base64.b64encode(blob).decode()} for blob in blobs]
    infos = {"ids": meta_graph_pb2.TensorInfo(dtype=tf.int64.as_datatype_enum),
             "word": meta_graph_pb2.TensorInfo(dtype=tf.string.as_datatype_enum),
             "blob": meta_graph_pb2.TensorInfo(dtype=tf.string.as_datatype_enum)}

    columnar, row_form = rest_json.predict_tensors(
        json_document.parse_body(json.dumps({"inputs": {"ids": ints, "word": words, "blob": encoded}}).encode()), infos, "")
    assert not row_form
    instances = [{"ids": i, "word": w, "blob": b} for i, w, b in zip(ints, words, encoded)]
    by_row, row_form = rest_json.predict_tensors(
        json_document.parse_body(json.dumps({"instances": instances}).encode()), infos, "")
    assert row_form
    for parsed in (columnar, by_row):
        np.testing.assert_array_equal(tf.make_ndarray(parsed["ids"]), np.array(ints, dtype=np.int64))
        assert [w.decode() for w in tf.make_ndarray(parsed["word"]).tolist()] == words
        assert list(tf.make_ndarray(parsed["blob"])) == blobs


@PROPERTY
@given(context=st.dictionaries(st.text(min_size=1, max_size=4), st.lists(INT64, min_size=1, max_size=3), max_size=3),
       examples=st.lists(st.dictionaries(st.text(min_size=1, max_size=4),
                                         st.lists(FLOATS, min_size=1, max_size=3) | st.lists(TEXT, min_size=1,
                                                                                            max_size=3),
                                         max_size=3), min_size=1, max_size=4))
def test_examples_merge_over_the_context_and_keep_every_value(context, examples):
    request = json_document.parse_body(json.dumps({"context": context, "examples": examples}).encode())
    serialized = proto_api.examples_of(rest_json.examples_input(request))
    assert len(serialized) == len(examples)
    for raw, features in zip(serialized, examples):
        parsed = tf.train.Example.FromString(raw).features.feature
        assert set(parsed) == set(context) | set(features)
        for name, values in {**context, **features}.items():
            feature = parsed[name]
            if isinstance(values[0], str):
                assert [v.decode() for v in feature.bytes_list.value] == values
            elif name in features and isinstance(values[0], float):
                np.testing.assert_array_equal(feature.float_list.value, np.float32(values))
            else:
                assert list(feature.int64_list.value) == values


NUMBERS = st.integers() | st.floats()
FEATURE_VALUES = NUMBERS | TEXT | st.booleans() | st.lists(NUMBERS | TEXT | st.booleans(), max_size=4)
KIND_OF = {str: "bytes_list", bool: "int64_list", int: "int64_list", float: "float_list"}


def _read_back(value):
    """What RapidJSON makes of a Python value sent as JSON: an integer beyond 64 bits becomes a double."""
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value <= 2**64 - 1:
        return float(value)
    return value


def _accepted_kind(values: list) -> str | None:
    """The feature kind json_tensor.cc's AddValueToFeature gives these values, None where it refuses them:
    the first value fixes the kind, a later value of another kind is refused, and so is a uint64."""
    kinds = {KIND_OF[type(_read_back(v))] for v in values}
    if len(kinds) > 1 or any(isinstance(v, int) and not isinstance(v, bool) and 2**63 <= v < 2**64
                             for v in values):
        return None
    return kinds.pop() if kinds else "empty"


@PROPERTY
@given(features=st.dictionaries(st.text(min_size=1, max_size=3), FEATURE_VALUES, min_size=1, max_size=3))
def test_example_values_are_kept_exactly_or_refused(features):
    """A feature's values arrive as TF Serving types them (floats as float32, infinity past its range, booleans as
    0 and 1), and mixed kinds and uint64 values are refused."""
    request = json_document.parse_body(json.dumps({"examples": [features]}).encode())
    expected = {name: _accepted_kind(value if isinstance(value, list) else [value])
                for name, value in features.items()}
    try:
        (example,) = rest_json.examples_input(request).example_list.examples
    except ServingError as err:
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.message
        assert None in expected.values(), f"refused a valid request: {err.message}"
        return
    assert None not in expected.values(), f"accepted {features}"
    parsed = example.features.feature
    for name, value in features.items():
        values = [_read_back(v) for v in (value if isinstance(value, list) else [value])]
        kind = parsed[name].WhichOneof("kind")
        got = list(getattr(parsed[name], kind).value) if kind else []
        assert (kind or "empty") == expected[name]
        if kind == "bytes_list":
            assert [v.decode() for v in got] == values
        elif kind == "int64_list":
            assert got == [int(v) for v in values]
        elif kind == "float_list":
            with np.errstate(over="ignore"):
                np.testing.assert_array_equal(got, np.float32(values))
