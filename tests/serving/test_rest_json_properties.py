"""Property-based tests of the stand-in's REST request parser.

Whatever a client sends, the parser either returns arrays or examples or
refuses with INVALID_ARGUMENT (HTTP 400 and a message); any other exception
would reach the client as a 500 with a traceback. Well-formed requests come
back with exactly the values that were sent.
"""
import base64
import json

import grpc
import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.standin import rest_json
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
    _parsed_or_refused(lambda: rest_json.parse_body(body))


@PROPERTY
@given(request=REQUESTS)
def test_any_json_request_is_parsed_or_refused_with_invalid_argument(request):
    request = rest_json.parse_body(json.dumps(request).encode())
    _parsed_or_refused(lambda: rest_json.predict_inputs(request, ["examples"]))
    _parsed_or_refused(lambda: rest_json.predict_inputs(request, ["a", "b"]))
    _parsed_or_refused(lambda: rest_json.examples_of(request))


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

    columnar, row_form = rest_json.predict_inputs(
        rest_json.parse_body(json.dumps({"inputs": {"ids": ints, "word": words, "blob": encoded}}).encode()),
        ["ids", "word", "blob"])
    assert not row_form
    instances = [{"ids": i, "word": w, "blob": b} for i, w, b in zip(ints, words, encoded)]
    by_row, row_form = rest_json.predict_inputs(
        rest_json.parse_body(json.dumps({"instances": instances}).encode()), ["ids", "word", "blob"])
    assert row_form
    for parsed in (columnar, by_row):
        np.testing.assert_array_equal(parsed["ids"], np.array(ints, dtype=np.int64))
        assert parsed["word"].tolist() == words
        assert list(parsed["blob"]) == blobs


@PROPERTY
@given(context=st.dictionaries(st.text(min_size=1, max_size=4), st.lists(INT64, min_size=1, max_size=3), max_size=3),
       examples=st.lists(st.dictionaries(st.text(min_size=1, max_size=4),
                                         st.lists(FLOATS, min_size=1, max_size=3) | st.lists(TEXT, min_size=1,
                                                                                            max_size=3),
                                         max_size=3), min_size=1, max_size=4))
def test_examples_merge_over_the_context_and_keep_every_value(context, examples):
    request = rest_json.parse_body(json.dumps({"context": context, "examples": examples}).encode())
    serialized = rest_json.examples_of(request)
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
FEATURE_VALUES = NUMBERS | TEXT | st.lists(NUMBERS | TEXT | st.booleans(), max_size=4)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _fits_float32(value) -> bool:
    try:
        return not np.isfinite(float(value)) or abs(float(value)) <= FLOAT32_MAX
    except OverflowError:
        return False


def _accepted_kind(values: list) -> str | None:
    """The feature kind TF Serving's JSON rules give these values, None where they must be refused."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if all(isinstance(v, str) for v in values):
        return "bytes_list"
    if numbers and all(isinstance(v, int) for v in values):
        return "int64_list" if all(-2**63 <= v < 2**63 for v in values) else None
    if numbers:
        return "float_list" if all(_fits_float32(v) for v in values) else None
    return None


@PROPERTY
@given(features=st.dictionaries(st.text(min_size=1, max_size=3), FEATURE_VALUES, min_size=1, max_size=3))
def test_example_values_are_kept_exactly_or_refused(features):
    """Integers beyond int64 and finite numbers beyond float32 are refused, never wrapped or rounded away;
    NaN and infinity pass as floats, as TF Serving passes them; anything else valid arrives unchanged."""
    request = rest_json.parse_body(json.dumps({"examples": [features]}).encode())
    expected = {name: _accepted_kind(value if isinstance(value, list) else [value])
                for name, value in features.items()}
    try:
        (serialized,) = rest_json.examples_of(request)
    except ServingError as err:
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.message
        assert None in expected.values(), f"refused a valid request: {err.message}"
        return
    assert None not in expected.values(), f"accepted {features}"
    parsed = tf.train.Example.FromString(serialized).features.feature
    for name, value in features.items():
        values = value if isinstance(value, list) else [value]
        kind = parsed[name].WhichOneof("kind")
        got = list(getattr(parsed[name], kind).value) if kind else []
        if not values:
            assert got == []
        elif kind == "bytes_list":
            assert expected[name] == kind and [v.decode() for v in got] == values
        else:
            assert kind == expected[name]
            if kind == "int64_list":
                assert got == values
            else:
                np.testing.assert_array_equal(got, np.float32(values))
