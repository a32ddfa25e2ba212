"""Item-feature mutual information: the counting, and the Beam step on a tiny hand-made table."""
import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import mutual_info_score

from features.artifacts import Artifacts
from features.errors import RecsysError
from pipelines.mutual_information import (ItemFeatureMutualInformation, feature_tokens, joint_counts,
                                          mutual_information)

# A hand-made transformed item table: brand fully determines category; colour is unrelated noise.
CATEGORY = [1, 1, 2, 2, 3, 3, 1, 2, 3, 1, 2, 3]
BRAND = [10, 10, 20, 20, 30, 30, 10, 20, 30, 10, 20, 30]
COLOUR = [5, 6, 5, 6, 5, 6, 6, 5, 5, 6, 6, 5]
PRICE = [-0.1, 0.2, 1.1, 0.9, 2.6, 2.4, 0.1, 1.0, 2.5, -0.2, 1.2, 2.6]  # z-scores: half-sigma bins follow category


def _mi(a, b):
    tokens = [feature_tokens(np.array(x).reshape(-1, 1), "categorical") for x in (a, b)]
    return mutual_information(joint_counts(*tokens))


def test_single_valued_mi_equals_sklearn():
    assert _mi(CATEGORY, BRAND) == pytest.approx(mutual_info_score(CATEGORY, BRAND), abs=1e-12)
    assert _mi(CATEGORY, COLOUR) == pytest.approx(mutual_info_score(CATEGORY, COLOUR), abs=1e-12)
    assert _mi(CATEGORY, BRAND) == pytest.approx(np.log(3))  # one determines the other: H(category)


def test_multi_valued_rows_weigh_one_and_empty_lists_count_as_padding():
    tags = np.array([[7, 8], [7, 0], [0, 0]])
    tokens, weights = feature_tokens(tags, "multi_valued")
    np.testing.assert_allclose(weights, [[0.5, 0.5], [1, 0], [1, 0]])
    category = feature_tokens(np.array([[1], [1], [2]]), "categorical")
    assert joint_counts(category, (tokens, weights)) == {(1, 7): 1.5, (1, 8): 0.5, (2, 0): 1.0}


def _batches():
    table = pa.RecordBatch.from_arrays(
        [pa.array([[v] for v in CATEGORY], pa.list_(pa.int64())), pa.array(BRAND, pa.int64()),
         pa.array([[v] for v in COLOUR], pa.list_(pa.int64())), pa.array([[v] for v in PRICE], pa.list_(pa.float32()))],
        ["item_category", "item_brand", "colour", "item_price"])
    return [(table.slice(0, 5), {}), (table.slice(5), {})]  # two batches: counts must add up across them


def test_beam_step_writes_the_matrix_sklearn_computes(tmp_path):
    features = [("item_category", "categorical"), ("item_brand", "categorical"), ("colour", "categorical"),
                ("item_price", "numeric")]
    artifacts = Artifacts(tmp_path)
    with beam.Pipeline("FnApiRunner") as pipeline:
        _ = (pipeline | beam.Create(_batches(), reshuffle=False)
             | ItemFeatureMutualInformation(features, str(artifacts.item_feature_mi_path)))
    document = json.loads(artifacts.item_feature_mi_path.read_text())
    price_bins = np.round(np.clip(PRICE, -3, 3) / 0.5).astype(int)
    columns = [CATEGORY, BRAND, COLOUR, price_bins]
    expected = [[mutual_info_score(a, b) for b in columns] for a in columns]
    assert document["features"] == [name for name, _ in features] and document["rows"] == len(CATEGORY)
    np.testing.assert_allclose(document["mutual_information"], expected, atol=1e-6)
    # the training side reads it back in any order it asks for, and names what is missing
    reordered = artifacts.item_feature_mi(["colour", "item_category"])
    np.testing.assert_allclose(reordered, [[expected[2][2], expected[2][0]], [expected[0][2], expected[0][0]]],
                               atol=1e-6)
    with pytest.raises(RecsysError, match="item_tags"):
        artifacts.item_feature_mi(["item_tags"])
