"""Serializing many rows at once gives exactly the protos serializing them one by one gives."""
import tensorflow as tf

from features.examples import to_example, to_examples


def _rows():
    base = {"user_id": "u1", "user_age": 31, "user_gender": "F", "user_city": "paris", "user_activity": 0.25,
            "item_id": "i9", "item_category": "shoes", "item_brand": "b2", "item_price": 19.5,
            "item_tags": ["sale", "new"], "device": "ios", "hour": 13, "position": 2,
            "hist_click_items": ["i1", "i2"], "hist_cart_items": [], "hist_purchase_items": ["i3"]}
    return [base, dict(base, user_id="ü", item_tags=[], item_price=0.0, position=-1)]


def test_batch_serialization_matches_one_row_at_a_time(config):
    rows = _rows()
    batch = to_examples(config, rows)
    assert len(batch) == 2
    for row, serialized in zip(rows, batch):
        assert tf.train.Example.FromString(serialized) == tf.train.Example.FromString(to_example(config, row))
    assert to_examples(config, []) == []
