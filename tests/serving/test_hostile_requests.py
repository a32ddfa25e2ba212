"""Requests the training data never showed: the served transform maps them to OOV ids and padding, never fails."""
import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from features.examples import to_example
from features.schema import serving_feature_spec

pytestmark = pytest.mark.slow

KNOWN = {"user_id": "u1", "user_age": 30, "user_gender": "F", "user_city": "c1", "user_activity": 2.0,
         "item_id": "i1", "item_category": "cat1", "item_brand": "b1", "item_price": 10.0,
         "item_tags": ["t1"], "device": "ios", "hour": 13, "position": 2,
         "hist_click_items": ["i2"], "hist_cart_items": [], "hist_purchase_items": []}


def _served_transform(config, artifacts, rows: list[dict]) -> dict:
    """The exported model's first half: parse raw tf.Examples, apply the pipeline's transform graph."""
    examples = tf.constant([to_example(config, row) for row in rows])
    raw = tf.io.parse_example(examples, serving_feature_spec(config))
    return tft.TFTransformOutput(str(artifacts)).transform_features_layer()(raw)


def test_unseen_categories_missing_optionals_and_huge_sequences_get_oov_ids_and_padding(config, small_artifacts):
    _, artifacts = small_artifacts
    sizes = json.loads((artifacts / "manifest.json").read_text())["vocabulary_sizes"]
    unseen = dict(KNOWN, user_id="never-seen-user", item_id="never-seen-item", item_brand="no-such-brand",
                  hist_click_items=[f"unseen{i}" for i in range(5000)])
    missing_optionals = {k: v for k, v in KNOWN.items()
                         if k not in ("user_age", "user_gender", "item_tags", "hist_click_items")}
    out = _served_transform(config, artifacts, [unseen, missing_optionals])
    for name in ("user_id", "item_id", "item_brand"):
        oov_id = int(out[name][0])
        assert oov_id > sizes[name], (name, oov_id, sizes[name])  # ids 1..size are the vocabulary
    sequence = out["hist_click"].numpy()
    assert sequence.shape == (2, 20)  # 5000 items truncated to max_length
    assert (sequence[0] > sizes["item_id"]).all() and (sequence[1] == 0).all()  # OOV ids; empty → padding
    assert (out["item_tags"].numpy()[1] == 0).all()
    assert all(np.isfinite(out[name].numpy()).all() for name in ("user_activity", "item_price", "position"))
