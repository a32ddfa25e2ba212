"""The columnar engine against the Beam + tf.Transform reference on the same CSV with bad rows.

Same vocabulary files, counts, dead letters, model-input contract and transformed
examples. Floats are compared to float32 precision: tf.Transform itself sums
moments batch by batch in float32, so its z-scores vary in the last bits with the
runner's batch sizes.
"""
import copy
import csv
import json

import numpy as np
import pytest
import tensorflow as tf

from features.artifacts import Artifacts
from features.config import parse_config
from pipelines import synthetic
from pipelines.preprocess import run_preprocess
from pipelines.input_files import InputError

ROWS = 400
VOCABULARY_FEATURES = ("user_id", "user_gender", "user_city", "item_id", "item_category", "item_brand",
                       "item_tags", "hour")


@pytest.fixture(scope="module")
def csv_input(tmp_path_factory):
    frame = next(synthetic.iter_chunks(synthetic.SyntheticSpec(rows=ROWS, seed=5))).astype(str)
    frame.loc[0, "item_price"] = "inf"
    frame.loc[1, "user_id"] = " "
    frame.loc[2, ["click", "conversion"]] = ["0", "1"]
    frame.loc[3, "user_age"] = "4.5"
    frame.loc[4, "item_tags"] = "t1||t2"
    frame.loc[5, "hour"] = "1_0"  # Python's float() takes it, so both engines must
    frame.loc[6, "user_city"] = "city, with a comma"
    frame.loc[7, "user_age"] = ""  # optional: the default applies
    frame.loc[8, "click"] = "2"
    path = tmp_path_factory.mktemp("csv") / "logs.csv"
    frame.to_csv(path, index=False)
    with open(path, "a") as out:
        out.write("only,three,fields\n")
    return path


def _run(raw_config, path, artifacts, engine):
    raw_config["input"] = {"path": str(path)}
    raw_config["artifacts_dir"] = str(artifacts)
    raw_config["pipeline"].update(engine=engine, num_shards=1, max_bad_fraction=0.5)
    for feature in raw_config["features"]:
        if feature["name"] == "user_city":
            feature["top_k"] = 3  # ties in count are broken by token, descending
        if feature["name"] == "item_brand":
            feature["min_frequency"] = 3
    config = parse_config(raw_config)
    return config, run_preprocess(config, config.artifacts)


@pytest.fixture(scope="module")
def both_engines(csv_input, tmp_path_factory, _sample_raw):
    root = tmp_path_factory.mktemp("engines")
    return {engine: _run(copy.deepcopy(_sample_raw), csv_input, root / engine, engine)
            for engine in ("beam", "columnar")}


def _examples(config, split):
    records = tf.data.TFRecordDataset(sorted(map(str, (config.artifacts / split).glob("*.tfrecord.gz"))),
                                      compression_type="GZIP")
    examples = []
    for record in records.as_numpy_iterator():
        features = tf.train.Example.FromString(record).features.feature
        examples.append({name: tuple(getattr(f, f.WhichOneof("kind")).value) for name, f in features.items()})
    return sorted(examples, key=lambda e: (e["true_ctr"], e["item_id"], e["user_id"]))


def _letters(config):
    letters = [json.loads(line) for path in Artifacts.of(config).dead_letter_dir.glob("*.jsonl")
               for line in path.read_text().splitlines()]
    for letter in letters:  # the columnar engine rebuilds the line from its fields
        letter["row"] = next(csv.reader([letter["row"]]))
    return sorted(letters, key=lambda letter: letter["row"])


@pytest.mark.slow
def test_engines_write_the_same_vocabularies_counts_and_dead_letters(both_engines):
    (beam_config, beam), (columnar_config, columnar) = both_engines["beam"], both_engines["columnar"]
    assert beam["rows"] == columnar["rows"] and beam["rows"]["dead_letter"] == 7
    for key in ("dead_letters_by_reason", "vocabulary_sizes", "model_inputs", "bad_fraction"):
        assert beam[key] == columnar[key], key
    for name in VOCABULARY_FEATURES:
        reference = (beam_config.artifacts / "transform_fn" / "assets" / name).read_bytes()
        assert (columnar_config.artifacts / "transform_fn" / "assets" / name).read_bytes() == reference, name
    assert _letters(beam_config) == _letters(columnar_config)


@pytest.mark.slow
def test_engines_write_the_same_transformed_examples(both_engines):
    beam_config, columnar_config = both_engines["beam"][0], both_engines["columnar"][0]
    for split in ("train", "eval"):
        reference, ours = _examples(beam_config, split), _examples(columnar_config, split)
        assert len(reference) == len(ours) > 0
        for expected, actual in zip(reference, ours):
            assert expected.keys() == actual.keys()
            for name in expected:
                if isinstance(expected[name][0], float):
                    np.testing.assert_allclose(actual[name], expected[name], rtol=2e-6, atol=2e-6, err_msg=name)
                else:
                    assert actual[name] == expected[name], name


def test_the_saved_transform_reads_its_own_vocabulary_assets_after_the_engine_is_done(both_engines):
    import tensorflow_transform as tft

    from features.examples import to_examples
    from pipelines.validation import RowValidator

    outputs = {}
    for engine, (config, _) in both_engines.items():
        assert not list(config.artifacts.glob("tft-*"))  # the job's temporary files are gone
        validate = RowValidator(config)
        with open(config.input.path) as handle:
            rows = [validate(row) for row in list(csv.DictReader(handle))[10:30]]  # past the broken rows
        transform = tft.TFTransformOutput(str(config.artifacts))
        spec = transform.raw_feature_spec()
        raw = tf.io.parse_example(to_examples(config, rows, list(spec)), spec)
        outputs[engine] = {name: tf.convert_to_tensor(value).numpy()
                           for name, value in transform.transform_raw_features(raw).items()}
    assert outputs["columnar"].keys() == outputs["beam"].keys()
    for name in outputs["beam"]:
        np.testing.assert_allclose(outputs["columnar"][name], outputs["beam"][name], rtol=1e-6, err_msg=name)


def test_the_columnar_engine_turns_tf_example_input_away_with_a_clear_error(raw_config, tmp_path):
    path = tmp_path / "logs.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(tf.train.Example().SerializeToString())
    raw_config["input"] = {"path": str(path)}
    raw_config["pipeline"]["engine"] = "columnar"
    config = parse_config(raw_config)
    with pytest.raises(InputError, match="columnar engine reads csv and parquet.*use pipeline.engine: beam"):
        run_preprocess(config, tmp_path / "artifacts")
