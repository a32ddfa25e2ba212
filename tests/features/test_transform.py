"""Every transform of the preprocessing_fn, analysed on a train set and applied to held-out rows."""
import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata

from features.config import parse_config
from features.examples import to_example
from features.schema import raw_feature_spec
from features.transform import make_preprocessing_fn, model_inputs

CONFIG = {
    "name": "tiny",
    "input": {"path": "unused.csv"},
    "columns": [
        {"name": "item", "type": "string"}, {"name": "device", "type": "string"},
        {"name": "age", "type": "int"}, {"name": "price", "type": "float"},
        {"name": "tags", "type": "string_list"}, {"name": "history", "type": "string_list"},
        {"name": "click", "type": "int"}, {"name": "true_ctr", "type": "float"},
    ],
    "features": [
        {"name": "item", "group": "item", "transform": "vocabulary", "oov_buckets": 1},
        {"name": "device", "group": "context", "transform": "hash", "hash_buckets": 5},
        {"name": "age", "group": "user", "transform": "bucketize", "num_buckets": 4},
        {"name": "price", "group": "item", "transform": "log_zscore"},
        {"name": "price_z", "column": "price", "group": "item", "transform": "zscore"},
        {"name": "tags", "group": "item", "transform": "vocabulary", "max_length": 2},
    ],
    "sequences": [{"name": "hist", "column": "history", "behavior": "click", "item_feature": "item",
                   "max_length": 3}],
    "tasks": [{"name": "ctr", "label": "click"}],
    "split": {"key": "item"},
    "export": {"model_name": "tiny"},
    "evaluation": {"truth": {"ctr": "true_ctr"}},
}

# "a" is the most frequent item, then "b", then "c".
TRAIN = [
    {"item": item, "device": "ios", "age": age, "price": price, "tags": ["x", "y", "z"][: 1 + i % 3],
     "history": ["a", "b", "c", "a"][: i % 5], "click": i % 2, "true_ctr": 0.25}
    for i, (item, age, price) in enumerate(
        [("a", 20, 1.0), ("a", 30, 10.0), ("a", 40, 100.0), ("b", 50, 3.0), ("b", 60, 30.0), ("c", 70, 5.0)])
]
HELD_OUT = [{"item": "unseen", "device": "web", "age": 99, "price": 0.0, "tags": [], "history": ["b", "new"],
             "click": 1, "true_ctr": 0.5}]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """Analyses TRAIN with Beam, then applies the written transform graph to both sets of rows."""
    config = parse_config(CONFIG)
    spec = raw_feature_spec(config)
    output = tmp_path_factory.mktemp("transform")
    metadata = dataset_metadata.DatasetMetadata.from_feature_spec(spec)
    with beam.Pipeline(runner="FnApiRunner") as pipeline, tft_beam.Context(temp_dir=str(output / "tmp")):
        train = pipeline | beam.Create(TRAIN)
        transform_fn = (train, metadata) | tft_beam.AnalyzeDataset(make_preprocessing_fn(config))
        _ = transform_fn | tft_beam.WriteTransformFn(str(output))
    transform_output = tft.TFTransformOutput(str(output))
    results = {}
    for name, rows in (("train", TRAIN), ("held_out", HELD_OUT)):
        examples = [to_example(config, row, list(spec)) for row in rows]
        batch = transform_output.transform_raw_features(tf.io.parse_example(examples, spec))
        results[name] = [{key: value.numpy()[i] for key, value in batch.items()} for i in range(len(rows))]
    return config, results


def _column(rows, name):
    return np.array([row[name] for row in rows])


def test_vocabulary_ids_follow_frequency_with_zero_for_padding_and_oov_after(transformed):
    _, results = transformed
    assert list(_column(results["train"], "item")) == [1, 1, 1, 2, 2, 3]
    assert results["held_out"][0]["item"] == 4  # 3 learned ids + 1 OOV bucket, shifted by padding


def test_hash_and_bucketize_stay_in_range(transformed):
    _, results = transformed
    rows = results["train"] + results["held_out"]
    assert all(1 <= row["device"] <= 5 for row in rows)
    ages = _column(results["train"], "age")
    assert ages.min() >= 1 and ages.max() <= 4 and list(ages) == sorted(ages)
    assert results["held_out"][0]["age"] == ages.max()


def test_zscore_and_log_zscore_use_train_statistics(transformed):
    _, results = transformed
    prices = np.array([row["price"] for row in TRAIN])
    z = _column(results["train"], "price_z")
    np.testing.assert_allclose(z, (prices - prices.mean()) / prices.std(), rtol=1e-4)
    logs = np.log1p(prices)
    np.testing.assert_allclose(_column(results["train"], "price"), (logs - logs.mean()) / logs.std(), rtol=1e-4)
    held_out_log = (np.log1p(0.0) - logs.mean()) / logs.std()
    assert results["held_out"][0]["price"] == pytest.approx(held_out_log, rel=1e-4)


def test_lists_are_truncated_and_zero_padded(transformed):
    _, results = transformed
    assert [list(row["tags"]) for row in results["train"][:3]] == [[1, 0], [1, 2], [1, 2]]
    assert list(results["held_out"][0]["tags"]) == [0, 0]


def test_sequences_share_the_item_vocabulary(transformed):
    _, results = transformed
    assert list(results["train"][4]["hist"]) == [1, 2, 3]  # "a", "b", "c": item's own ids, truncated to 3
    assert list(results["held_out"][0]["hist"]) == [2, 4, 0]  # "b", then OOV "new", then padding


def test_labels_and_truth_pass_through_as_floats(transformed):
    _, results = transformed
    assert list(_column(results["train"], "click")) == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert results["held_out"][0]["true_ctr"] == pytest.approx(0.5)


def test_model_inputs_size_the_tables(transformed):
    config, _ = transformed
    by_name = {spec.name: spec for spec in model_inputs(config, {"item": 3, "tags": 3})}
    assert by_name["item"].vocabulary_size == 1 + 3 + 1
    assert by_name["hist"].table == "item" and by_name["hist"].vocabulary_size == 5
    assert by_name["device"].vocabulary_size == 6 and by_name["age"].vocabulary_size == 5
    assert by_name["tags"].kind == "multi_valued" and by_name["tags"].length == 2
    assert by_name["price"].kind == "numeric"
