"""Serving requests: raw rows → tf.Examples that parse back to the same values, or an error naming the column."""
import math

import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.examples import ExampleError, to_example
from features.schema import serving_feature_spec

# Anything a JSON request or a CSV reader could hand over for one value.
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.text(max_size=6), max_size=4))
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _parsed(config, example: bytes) -> dict:
    spec = serving_feature_spec(config)
    return tf.io.parse_example(tf.constant([example]), spec)


@PROPERTY
@given(data=st.data())
def test_any_request_row_encodes_faithfully_or_names_the_column_at_fault(config, data):
    row = {name: data.draw(ANY_VALUE, label=name) for name in config.feature_columns}
    try:
        example = to_example(config, row)
    except ExampleError as err:
        assert any(f"column '{name}'" in str(err) for name in row)
        return
    parsed = tf.train.Example.FromString(example).features.feature
    for name, value in row.items():
        if value is None:
            assert name not in parsed
            continue
        column_type = config.column(name).type
        if column_type == "int":
            assert parsed[name].int64_list.value == [int(float(value))]
        elif column_type == "float":
            assert math.isclose(parsed[name].float_list.value[0], float(value), rel_tol=1e-6, abs_tol=1e-30)
        elif column_type == "string":
            assert parsed[name].bytes_list.value == [str(value).encode()]


def test_a_missing_optional_feature_takes_its_default_and_a_missing_required_one_is_named(config):
    row = {"user_id": "u1", "user_city": "c1", "user_activity": 1.0, "item_id": "i1", "item_category": "c",
           "item_brand": "b", "item_price": 3.0, "device": "ios", "hour": 3, "position": 1}
    parsed = _parsed(config, to_example(config, row))  # no user_age, user_gender, tags or histories
    assert int(parsed["user_age"][0]) == 0 and parsed["user_gender"].numpy()[0] == b"U"
    assert parsed["hist_click_items"].values.shape == (0,)
    del row["item_id"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="item_id"):
        _parsed(config, to_example(config, row))


@pytest.mark.parametrize("column, value, problem", [
    ("hour", "noon", "could not convert"), ("hour", 2.5, "whole number"), ("hour", 2**64, "out of range"),
    ("item_price", float("nan"), "not finite"), ("item_price", 1e39, "float32"),
    ("hist_click_items", 7, "expected a list"),
])
def test_values_that_do_not_fit_their_column_are_named(config, column, value, problem):
    with pytest.raises(ExampleError, match=f"column '{column}'.*{problem}"):
        to_example(config, {column: value})


def test_sequences_may_be_given_as_lists_or_separated_strings(config):
    as_list = to_example(config, {"hist_click_items": ["i1", "i2"]})
    assert as_list == to_example(config, {"hist_click_items": "i1|i2"})
    assert to_example(config, {"hist_click_items": []}) == to_example(config, {"hist_click_items": ""})
