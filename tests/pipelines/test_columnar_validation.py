"""Column-at-a-time validation accepts, types and rejects exactly what the row validator does."""
import csv

import pyarrow as pa
import pytest

from pipelines.columnar.validation import ColumnarValidator
from pipelines.validation import RowError, RowValidator

# (column, raw text) pairs the reference accepts or rejects in different ways.
ODD_VALUES = [
    ("user_age", "4.5"), ("user_age", " 7 "), ("user_age", "1e1"), ("user_age", "1_0"), ("user_age", ""),
    ("user_age", "nan"), ("user_age", "-inf"), ("user_age", "seven"), ("user_age", "+3."),
    ("item_price", ".5"), ("item_price", "Infinity"), ("item_price", "1e400"), ("item_price", " "),
    ("item_price", "-0.0"), ("item_tags", "a||b"), ("item_tags", "a| |b"), ("item_tags", ""),
    ("item_tags", " a |b"), ("hist_click_items", "|".join(["i1"] * 1001)), ("user_id", "  "),
    ("user_gender", ""), ("click", "2"), ("click", "1.0"), ("conversion", "1"),
]


@pytest.fixture
def good_row(config):
    row = {column.name: "1" for column in config.columns}
    row.update(item_tags="t1|t2", hist_click_items="i1", hist_cart_items="", hist_purchase_items="",
               click="1", conversion="0", user_id="u1", item_id="i1")
    return row


def test_each_odd_value_is_typed_or_rejected_as_the_row_validator_does(config, good_row):
    rows = [dict(good_row, **{column: text}) for column, text in ODD_VALUES]
    batch = pa.RecordBatch.from_pylist(rows)
    valid, letters = ColumnarValidator(config)(batch)
    reference = RowValidator(config)
    expected_rows, expected_letters = [], []
    for row in rows:
        try:
            expected_rows.append(reference(row))
        except RowError as err:
            expected_letters.append((err.reason, err.field, err.message))
    assert [(l["reason"], l["field"], l["message"]) for l in letters] == expected_letters
    assert len(expected_letters) not in (0, len(rows))
    typed = valid.table.to_pylist()
    assert len(typed) == len(expected_rows)
    for ours, theirs in zip(typed, expected_rows):
        for name, value in ours.items():
            assert value == pytest.approx(theirs[name], rel=1e-7) if isinstance(value, float) else value == theirs[name]


def test_an_optional_column_the_file_lacks_takes_its_default(config, good_row):
    del good_row["user_gender"]
    valid, letters = ColumnarValidator(config)(pa.RecordBatch.from_pylist([good_row, good_row]))
    assert letters == [] and valid.table.column("user_gender").to_pylist() == ["U", "U"]


def test_a_bad_row_keeps_its_fields_in_the_dead_letter(config, good_row):
    batch = pa.RecordBatch.from_pylist([dict(good_row, user_city="a, b", item_price="x")])
    valid, (letter,) = ColumnarValidator(config)(batch)
    assert valid.table.num_rows == 0
    assert letter["reason"] == "invalid_float" and letter["field"] == "item_price"
    assert next(csv.reader([letter["row"]]))[list(good_row).index("user_city")] == "a, b"
