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
    valid = ColumnarValidator(config)(batch, "logs.csv")
    letters = valid.dead_letters
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
    valid = ColumnarValidator(config)(pa.RecordBatch.from_pylist([good_row, good_row]), "logs.csv")
    assert valid.dead_letters == [] and valid.table.column("user_gender").to_pylist() == ["U", "U"]


def test_a_bad_row_keeps_its_fields_in_the_dead_letter(config, good_row):
    batch = pa.RecordBatch.from_pylist([dict(good_row, user_city="a, b", item_price="x")])
    valid = ColumnarValidator(config)(batch, "logs.csv")
    (letter,) = valid.dead_letters
    assert valid.table.num_rows == 0 and letter["file"] == "logs.csv"
    assert letter["reason"] == "invalid_float" and letter["field"] == "item_price"
    assert next(csv.reader([letter["row"]]))[list(good_row).index("user_city")] == "a, b"


def test_typed_parquet_columns_validate_as_the_row_validator_validates_their_values(config, good_row):
    """Parquet hands over numbers, nulls, large strings and lists; each row must meet the reference's fate."""
    typed = dict(good_row, user_age=30, timestamp=1700000000, item_price=10.5, user_activity=1.0, position=2,
                 hour=13, click=1, conversion=0, dwell_time=1.0, true_ctr=0.1, true_cvr=0.1, true_ctcvr=0.01,
                 item_tags=["t1", "t2"], hist_click_items=["i1"], hist_cart_items=[], hist_purchase_items=None)
    odd = [{}, {"user_age": None}, {"item_price": float("inf")}, {"item_price": None}, {"item_tags": ["a", " "]},
           {"hist_click_items": ["i1"] * 1001}, {"click": 2}, {"user_id": None}, {"user_gender": None},
           {"timestamp": 1.5}, {"conversion": 1, "click": 0}]
    rows = [dict(typed, **change) for change in odd]
    schema = pa.Schema.from_pandas(__import__("pandas").DataFrame([typed])).remove_metadata()
    schema = schema.set(schema.get_field_index("user_id"), pa.field("user_id", pa.large_string()))
    schema = schema.set(schema.get_field_index("timestamp"), pa.field("timestamp", pa.float64()))
    batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    valid = ColumnarValidator(config)(batch, "logs.parquet")
    reference, expected_reasons, expected_rows = RowValidator(config), [], []
    for row in batch.to_pylist():
        try:
            expected_rows.append(reference(row))
        except RowError as err:
            expected_reasons.append((err.reason, err.field))
    assert [(l["reason"], l["field"]) for l in valid.dead_letters] == expected_reasons
    assert len(expected_reasons) == 7
    for ours, theirs in zip(valid.table.to_pylist(), expected_rows):
        for name, value in ours.items():
            assert value == pytest.approx(theirs[name], rel=1e-7) if isinstance(value, float) else value == theirs[name]


def test_a_malformed_line_appended_while_letters_are_taken_is_kept_for_the_next_take():
    """pyarrow's reader threads append to the shared list while the job converts it: nothing may be lost."""
    from pipelines.columnar.reader import MalformedLine
    from pipelines.columnar.validation import take_malformed_letters

    late = MalformedLine("late,line", 2, 3)

    class AppendedWhileRead(list):
        def __getitem__(self, index):
            found = super().__getitem__(index)
            if late not in self:
                self.append(late)  # the reader thread, between the job's read and its delete
            return found

        def __iter__(self):
            found = list(super().__iter__())
            if late not in self:
                self.append(late)
            return iter(found)

    malformed = AppendedWhileRead([MalformedLine("a,b", 2, 3)])
    first = take_malformed_letters(malformed, ",", "f.csv")
    assert [letter["row"] for letter in first] == ["a,b"]
    assert [letter["row"] for letter in take_malformed_letters(malformed, ",", "f.csv")] == ["late,line"]
    assert not malformed
