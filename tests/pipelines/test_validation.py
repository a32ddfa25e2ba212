import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.config import load_config
from pipelines import validation as v
from pipelines.row_formats import RawRowParser
from pipelines.validation import RowError, RowValidator
from tests.conftest import SAMPLE_CONFIG

_CSV = load_config(SAMPLE_CONFIG)  # its input is a comma-separated CSV with a header


def parse_csv_line(line: str, header: list[str]) -> dict:
    return RawRowParser(_CSV, header)(line)


@pytest.fixture
def good_row():
    return {
        "impression_id": "imp1", "timestamp": "1700000000", "user_id": "u1", "user_age": "30",
        "user_gender": "F", "user_city": "c1", "user_activity": "2.5", "item_id": "i1",
        "item_category": "cat1", "item_brand": "b1", "item_price": "10.5", "item_tags": "t1|t2",
        "device": "ios", "hour": "13", "position": "2", "hist_click_items": "i2|i3",
        "hist_cart_items": "i2", "hist_purchase_items": "", "click": "1", "conversion": "0",
        "dwell_time": "12.5", "true_ctr": "0.1", "true_cvr": "0.2", "true_ctcvr": "0.02",
    }


def _reason(config, row):
    with pytest.raises(RowError) as caught:
        RowValidator(config)(row)
    return caught.value.reason, caught.value.field, caught.value.message


def test_a_good_row_is_typed(config, good_row):
    row = RowValidator(config)(good_row)
    assert row["user_age"] == 30 and row["item_price"] == 10.5
    assert row["item_tags"] == ["t1", "t2"] and row["hist_purchase_items"] == []
    assert row["impression_id"] == "imp1"


def test_optional_columns_take_their_defaults(config, good_row):
    good_row.update(user_age="", user_gender="", item_tags="")
    row = RowValidator(config)(good_row)
    assert (row["user_age"], row["user_gender"], row["item_tags"]) == (0, "U", [])


@pytest.mark.parametrize("column, value, reason", [
    ("user_id", "", v.MISSING_REQUIRED),
    ("hour", "noon", v.INVALID_INT),
    ("position", "2.5", v.INVALID_INT),
    ("item_price", "cheap", v.INVALID_FLOAT),
    ("item_price", "nan", v.NOT_FINITE),
    ("user_activity", "inf", v.NOT_FINITE),
    ("hist_click_items", "i1||i2", v.MALFORMED_LIST),
    ("hist_click_items", "|".join(f"i{i}" for i in range(1001)), v.TOO_MANY_ITEMS),
    ("click", "2", v.INVALID_LABEL),
])
def test_each_bad_value_names_its_reason_and_field(config, good_row, column, value, reason):
    good_row[column] = value
    got_reason, field, message = _reason(config, good_row)
    assert (got_reason, field) == (reason, column)
    assert column in message


def test_conversion_without_click_is_outside_the_sample_space(config, good_row):
    good_row.update(click="0", conversion="1")
    assert _reason(config, good_row)[:2] == (v.OUTSIDE_SAMPLE_SPACE, "conversion")


def test_csv_lines_with_the_wrong_column_count_are_rejected():
    assert parse_csv_line('a,"b,c",d', ["x", "y", "z"]) == {"x": "a", "y": "b,c", "z": "d"}
    with pytest.raises(RowError) as caught:
        parse_csv_line("a,b", ["x", "y", "z"])
    assert caught.value.reason == v.WRONG_COLUMN_COUNT and "expected 3" in caught.value.message


def test_parquet_style_typed_values_are_accepted(config, good_row):
    good_row.update(user_age=30, item_price=10.5, item_tags=["t1"], click=1, conversion=0, user_gender=None)
    row = RowValidator(config)(good_row)
    assert row["item_tags"] == ["t1"] and row["user_gender"] == "U"


def test_dead_letters_serialise_the_raw_row():
    letter = v.DeadLetter(v.NOT_FINITE, "x", "bad", {"x": float("nan"), "y": b"z"})
    assert letter.to_json_dict()["row"] == {"x": "nan", "y": "z"}


@pytest.mark.parametrize("line", ['imp1,"unclosed,1', '"a"b,c,d'])
def test_unbalanced_quotes_are_unparseable_not_guessed(line):
    with pytest.raises(RowError) as caught:
        parse_csv_line(line, ["x", "y", "z"])
    assert caught.value.reason == v.UNPARSEABLE_LINE


def test_an_optional_column_absent_from_the_input_takes_its_default(config, good_row):
    del good_row["user_age"], good_row["hist_cart_items"]
    row = RowValidator(config)(good_row)
    assert row["user_age"] == 0 and row["hist_cart_items"] == []


REASONS = {value for name, value in vars(v).items() if name.isupper() and isinstance(value, str)}
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["0", "1", "2.0", "1e3", " 7 ", "nan", "-inf", "a|b", "a||b", ""]),
    st.lists(st.text(max_size=4), max_size=3), st.binary(max_size=4))
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_TYPES = {"int": int, "float": float, "string": str, "string_list": list}


@PROPERTY
@given(data=st.data())
def test_any_row_validates_into_typed_values_or_yields_a_reason(config, data):
    raw = {c.name: data.draw(ANY_VALUE, label=c.name) for c in config.columns}
    try:
        row = RowValidator(config)(raw)
    except RowError as err:
        assert err.reason in REASONS and (err.field is None or err.field in raw) and err.message
        return
    for name, value in row.items():
        assert isinstance(value, _TYPES[config.column(name).type]), (name, value)
        if isinstance(value, float):
            assert math.isfinite(value)


@PROPERTY
@given(line=st.text(max_size=40))
def test_any_line_parses_into_its_columns_or_yields_a_reason(line):
    try:
        fields = parse_csv_line(line, ["x", "y", "z"])
    except RowError as err:
        assert err.reason in (v.UNPARSEABLE_LINE, v.WRONG_COLUMN_COUNT)
        return
    assert list(fields) == ["x", "y", "z"]


def test_bytes_are_decoded_and_bad_bytes_and_huge_ints_are_named(config, good_row):
    good_row.update(user_id=b"u1", item_tags=[b"t1", "t2"])
    row = RowValidator(config)(good_row)
    assert row["user_id"] == "u1" and row["item_tags"] == ["t1", "t2"]
    assert _reason(config, dict(good_row, user_id=b"\x80"))[:2] == (v.INVALID_TEXT, "user_id")
    assert _reason(config, dict(good_row, hour=2**64))[:2] == (v.INVALID_INT, "hour")
