"""Behaviour of the synthetic impression-log generator."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines import synthetic
from pipelines.synthetic import COLUMNS, SyntheticSpec, iter_chunks, write

HISTORY_LENGTH = 5
SPEC = SyntheticSpec(rows=24_000, seed=11, history_length=HISTORY_LENGTH, chunk_rows=5000)  # spans blocks


def _items(joined: str) -> list[str]:
    return joined.split("|") if joined else []


def _read_csv(path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.concat(list(iter_chunks(SPEC)), ignore_index=True)


@pytest.fixture(scope="module")
def clicked(frame) -> pd.DataFrame:
    return frame[frame.click == 1]


def test_columns_are_exactly_the_published_order(frame):
    assert COLUMNS == (
        "impression_id", "timestamp", "user_id", "user_age", "user_gender", "user_city",
        "user_activity", "item_id", "item_category", "item_brand", "item_price", "item_tags",
        "device", "hour", "position", "hist_click_items", "hist_cart_items",
        "hist_purchase_items", "click", "conversion", "dwell_time", "true_ctr", "true_cvr",
        "true_ctcvr",
    )
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == SPEC.rows


def test_spec_defaults_scale_with_rows():
    assert (SyntheticSpec(rows=1000).user_count, SyntheticSpec(rows=1000).item_count) == (200, 100)
    assert (SyntheticSpec(rows=150_000).user_count, SyntheticSpec(rows=150_000).item_count) == (10_000, 6000)
    with pytest.raises(ValueError):
        SyntheticSpec(rows=0)


def test_chunks_respect_chunk_rows_and_do_not_change_the_data(frame):
    chunks = list(iter_chunks(dataclasses.replace(SPEC, chunk_rows=7000)))
    assert [len(chunk) for chunk in chunks] == [7000] * 3 + [3000]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), frame)


def test_value_domains(frame):
    assert frame.impression_id.iloc[0] == "imp000000000"
    assert (frame.impression_id == [f"imp{row:09d}" for row in range(len(frame))]).all()
    assert frame.timestamp.iloc[0] >= synthetic.START_TIMESTAMP
    assert (np.diff(frame.timestamp) > 0).all()
    assert frame.user_age.between(18, 70).all()
    assert set(frame.user_gender) <= {"F", "M", "U"}
    assert frame.user_city.str.fullmatch(r"c([0-9]|[1-4][0-9])").all()
    assert (frame.user_activity >= 0).all()
    assert frame.item_category.str.fullmatch(r"cat([0-9]|[12][0-9])").all()
    assert frame.item_brand.str.fullmatch(r"b[0-9]{1,3}").all()
    assert (frame.item_brand.str[1:].astype(int) < 200).all()
    assert (frame.item_price > 0).all()
    assert set(frame.device) == {"ios", "android", "web"}
    assert frame.hour.between(0, 23).all() and frame.hour.nunique() == 24
    assert frame.position.between(1, 20).all() and frame.position.nunique() == 20
    for tags in frame.item_tags.map(_items):
        assert 1 <= len(tags) <= 4 and len(set(tags)) == len(tags)
        assert all(tag[0] == "t" and 0 <= int(tag[1:]) < 100 for tag in tags)


def test_user_and_item_attributes_are_fixed_per_entity(frame):
    per_user = frame.groupby("user_id")[["user_age", "user_gender", "user_city", "user_activity"]].nunique()
    per_item = frame.groupby("item_id")[["item_category", "item_brand", "item_price", "item_tags"]].nunique()
    assert (per_user == 1).all().all()
    assert (per_item == 1).all().all()


def test_labels_are_consistent_with_the_funnel(frame):
    assert set(frame.click) == {0, 1} and set(frame.conversion) == {0, 1}
    assert (frame.conversion <= frame.click).all()
    assert ((frame.dwell_time > 0) == (frame.click == 1)).all()
    assert (frame.dwell_time[frame.click == 0] == 0.0).all()


def test_true_probabilities_are_valid_and_ctcvr_is_their_product(frame):
    for column in ("true_ctr", "true_cvr", "true_ctcvr"):
        assert frame[column].between(0, 1, inclusive="neither").all()
    assert (frame.true_ctcvr == frame.true_ctr * frame.true_cvr).all()


def _within_standard_errors(outcomes: pd.Series, probabilities: pd.Series, errors: float = 4.0) -> bool:
    """Whether observed Bernoulli outcomes match their true probabilities on average."""
    standard_error = math.sqrt((probabilities * (1 - probabilities)).sum()) / len(probabilities)
    return abs(outcomes.mean() - probabilities.mean()) < errors * standard_error


def test_labels_are_drawn_from_the_true_probabilities(frame, clicked):
    assert 0.08 <= frame.click.mean() <= 0.12
    assert 0.10 <= clicked.conversion.mean() <= 0.20
    assert _within_standard_errors(frame.click, frame.true_ctr)
    assert _within_standard_errors(clicked.conversion, clicked.true_cvr)


def test_clicked_population_converts_unlike_all_impressions(frame, clicked):
    """Clicks select matching tastes, which also drive conversion (clickbait pulls the other way):
    a CVR model fit on clicks alone is biased on the whole impression space, which ESMM corrects."""
    standard_error = clicked.true_cvr.std() / math.sqrt(len(clicked))
    assert clicked.true_cvr.mean() > frame.true_cvr.mean() + 4 * standard_error


def test_clicks_fall_with_position_and_follow_revealed_category_taste(frame):
    by_position = frame.groupby("position").true_ctr.mean()
    assert by_position[1] > 1.3 * by_position[20]
    category_of = dict(zip(frame.item_id, frame.item_category))
    known = [item in category_of for items in frame.hist_click_items.map(_items) for item in items]
    assert np.mean(known) > 0.5  # enough history items are also impressed to judge taste
    shows_taste = [
        category in {category_of.get(item) for item in _items(history)}
        for category, history in zip(frame.item_category, frame.hist_click_items)
    ]
    shows_taste = np.array(shows_taste)
    assert frame.click[shows_taste].mean() > 1.3 * frame.click[~shows_taste].mean()


def test_item_popularity_is_heavy_tailed_and_hidden_from_ids(frame):
    counts = frame.item_id.value_counts()
    top_decile = counts.iloc[: SPEC.item_count // 10].sum()
    assert top_decile / len(frame) > 0.4
    id_number = counts.index.str[1:].astype(int).to_numpy()
    rank_correlation = np.corrcoef(np.argsort(np.argsort(id_number)), np.arange(len(counts)))[0, 1]
    assert abs(rank_correlation) < 0.3


def test_tags_follow_category_and_price_depends_on_category(frame):
    items = frame.drop_duplicates("item_id")
    tags = items[["item_category", "item_tags"]].assign(tag=items.item_tags.map(_items)).explode("tag")
    tag_counts = tags.groupby(["item_category", "tag"]).size()
    top_tags = tag_counts.groupby(level=0, group_keys=False).nlargest(synthetic.TAGS_PER_CATEGORY)
    assert top_tags.sum() / tag_counts.sum() > 0.6
    log_price = np.log(items.item_price)
    between = log_price.groupby(items.item_category).transform("mean").var()
    assert between / log_price.var() > 0.3


def test_histories_are_capped_and_start_with_a_prefilled_past(frame):
    lengths = {column: frame[column].map(lambda joined: len(_items(joined))) for column in
               ("hist_click_items", "hist_cart_items", "hist_purchase_items")}
    assert all(length.max() <= HISTORY_LENGTH for length in lengths.values())
    assert lengths["hist_click_items"].max() == HISTORY_LENGTH
    first_rows = frame.drop_duplicates("user_id")
    assert (first_rows.hist_click_items != "").mean() > 0.9
    assert (lengths["hist_click_items"] > 0).mean() > 0.9


def test_histories_record_each_outcome_most_recent_first(frame):
    recorded_carts = clicks_left_out_of_cart = 0
    by_user = list(frame.sort_values("user_id", kind="stable").itertuples(index=False))  # keeps time order
    for before, after in zip(by_user, by_user[1:]):
        if before.user_id != after.user_id:
            continue
        item = [before.item_id]
        expected_clicks = (item * before.click + _items(before.hist_click_items))[:HISTORY_LENGTH]
        expected_purchases = (item * before.conversion + _items(before.hist_purchase_items))[:HISTORY_LENGTH]
        assert _items(after.hist_click_items) == expected_clicks
        assert _items(after.hist_purchase_items) == expected_purchases
        carts_before, carts_after = _items(before.hist_cart_items), _items(after.hist_cart_items)
        if carts_after != carts_before:
            assert before.click == 1 and carts_after == (item + carts_before)[:HISTORY_LENGTH]
            recorded_carts += 1
        else:
            clicks_left_out_of_cart += before.click and carts_after[:1] != item
    assert recorded_carts > 0 and clicks_left_out_of_cart > 0


def test_same_spec_gives_identical_bytes_and_another_seed_differs(tmp_path):
    spec = SyntheticSpec(rows=3000, seed=5, chunk_rows=1000)
    for suffix in ("csv", "csv.gz"):
        first, second, other = (tmp_path / f"{name}.{suffix}" for name in ("first", "second", "other"))
        write(spec, str(first))
        write(spec, str(second))
        write(dataclasses.replace(spec, seed=6), str(other))
        assert first.read_bytes() == second.read_bytes()
        assert first.read_bytes() != other.read_bytes()
    assert first.read_bytes()[4:8] == bytes(4)  # gzip header carries no write time


def test_csv_gz_and_parquet_read_back_to_the_generated_frame(tmp_path):
    spec = SyntheticSpec(rows=2500, seed=3, chunk_rows=1000)
    expected = pd.concat(list(iter_chunks(spec)), ignore_index=True)
    csv_path, parquet_path = tmp_path / "log.csv.gz", tmp_path / "log.parquet"
    assert write(spec, str(csv_path)) == spec.rows
    assert write(spec, str(parquet_path)) == spec.rows
    with open(csv_path, "rb") as raw:
        assert raw.read(2) == b"\x1f\x8b"  # really gzip
    pd.testing.assert_frame_equal(_read_csv(csv_path), expected)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet_path), expected)
    assert pq.ParquetFile(parquet_path).num_row_groups == 3


def test_write_reports_progress_and_creates_parent_directories(tmp_path):
    calls = []
    path = tmp_path / "nested" / "deeper" / "log.csv"
    spec = SyntheticSpec(rows=2500, chunk_rows=1000)
    rows = write(spec, str(path), lambda done, total: calls.append((done, total)))
    assert rows == 2500
    assert calls == [(1000, 2500), (2000, 2500), (2500, 2500)]
    assert len(_read_csv(path)) == 2500
    with pytest.raises(ValueError):
        write(SyntheticSpec(rows=10), str(tmp_path / "log.json"))
