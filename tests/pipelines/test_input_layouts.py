"""Every input layout users have, through both engines where the engine reads it.

Each layout is a tiny file written as the public datasets write it: Census-Income's
headerless `, `-separated rows with `?` nulls in separate train/test files,
PaddleRec's Ali-CCP slot rows, tf.Example TFRecords (TFX ExampleGen), Parquet
with typed and list columns. Every test checks rows are conserved:
read = train + eval + test + dead letters + dropped.
"""
import bz2
import gzip
import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from features.artifacts import Artifacts
from features.config import ConfigError, parse_config
from pipelines.preprocess import run_preprocess
from pipelines.input_files import InputError
from pipelines.leakage import LeakageError
from pipelines.split_counts import PipelineError, SplitError

COLUMNS = ["user", "item", "age", "price", "tags", "click", "buy"]


def _config(tmp_path, input_section, engine="beam", extra_columns=(), **sections):
    raw = {
        "name": "layouts",
        "artifacts_dir": str(tmp_path / f"artifacts-{engine}"),
        "input": input_section,
        "columns": [
            {"name": "user", "type": "string"},
            {"name": "item", "type": "string"},
            {"name": "age", "type": "int", "required": False, "default": 0},
            {"name": "price", "type": "float"},
            {"name": "tags", "type": "string_list", "required": False, "default": ""},
            {"name": "click", "type": "int"},
            {"name": "buy", "type": "int"},
            *extra_columns,
        ],
        "feature_defaults": {"group": "context", "embedding_dim": 4},
        "features": [
            {"name": "user", "transform": "vocabulary"},
            {"name": "item", "transform": "vocabulary"},
            {"name": "age", "transform": "zscore"},
            {"name": "price", "transform": "log_zscore"},
            {"name": "tags", "transform": "vocabulary", "max_length": 3},
        ],
        "tasks": [{"name": "ctr", "label": "click"}, {"name": "cvr", "label": "buy", "sample_space": "ctr"}],
        "pipeline": {"engine": engine, "num_shards": 1, "max_bad_fraction": 0.3},
        "export": {"model_name": "layouts"},
        **sections,
    }
    return parse_config(raw)


def _rows(count: int, seed: int, prefix: str = "") -> list[dict]:
    """Rows with both label classes on every side, ids prefixed so a split's own tokens are recognisable."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        click = int(i % 3 == 0)
        rows.append({"user": f"{prefix}u{rng.integers(8)}", "item": f"i{rng.integers(6)}", "age": int(rng.integers(18, 70)),
                     "price": round(float(rng.uniform(1, 100)), 2),
                     "tags": "|".join(f"t{t}" for t in range(rng.integers(3))),
                     "click": click, "buy": int(click and i % 2 == 0)})
    return rows


def _census_line(row: dict, null_age: bool) -> str:
    """Census-Income's layout: no header, ', ' between values, '?' for unknown."""
    values = [row["user"], row["item"], "?" if null_age else str(row["age"]), str(row["price"]), row["tags"],
              str(row["click"]), str(row["buy"])]
    return ", ".join(values) + "\n"


def _counts_conserved(manifest: dict, read: int):
    rows = manifest["rows"]
    assert rows["read"] == read
    kept = sum(rows[s] for s in ("train", "eval", "test") if s in rows)
    assert kept + rows["dead_letter"] + rows["dropped"] == read


def _vocabulary(config, name):
    import tensorflow_transform as tft

    return [token.decode() for token in tft.TFTransformOutput(str(config.artifacts)).vocabulary_by_name(name)]


def _examples(config, split) -> list:
    files = sorted(map(str, Artifacts(config.artifacts).split_dir(split).glob("*.tfrecord.gz")))
    return [tf.train.Example.FromString(record)
            for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()]


def _records(config, split):
    return len(_examples(config, split))


@pytest.fixture(scope="module")
def census_files(tmp_path_factory):
    """Pre-split files: train gzip, eval plain, test bz2; train has one line with a wrong field count."""
    root = tmp_path_factory.mktemp("census")
    train, evaluation, test = _rows(60, 1), _rows(30, 2, prefix="eval-"), _rows(30, 3)
    with gzip.open(root / "train.data.gz", "wt") as out:
        out.writelines(_census_line(row, null_age=i % 5 == 0) for i, row in enumerate(train))
        out.write("u1, i1, 30\n")
    (root / "eval.data").write_text("".join(_census_line(row, False) for row in evaluation))
    with bz2.open(root / "test.data.bz2", "wt") as out:
        out.writelines(_census_line(row, False) for row in test)
    return root


@pytest.mark.parametrize("engine", ["beam", "columnar"])
def test_headerless_census_layout_keeps_the_given_splits_and_learns_on_train_only(census_files, tmp_path, engine):
    config = _config(tmp_path, {"train": str(census_files / "train.data.gz"), "eval": str(census_files / "eval.data"),
                                "test": str(census_files / "test.data.bz2"), "header": False, "strip": True,
                                "null_values": ["?"]}, engine)
    manifest = run_preprocess(config, config.artifacts)
    _counts_conserved(manifest, 121)
    assert {s: manifest["rows"][s] for s in ("train", "eval", "test", "dead_letter")} == {
        "train": 60, "eval": 30, "test": 30, "dead_letter": 1}
    assert manifest["dead_letters_by_reason"] == {"wrong_column_count": 1}
    assert manifest["rows_by_file"]["test"] == {str(census_files / "test.data.bz2"): 30}
    assert [_records(config, s) for s in ("train", "eval", "test")] == [60, 30, 30]
    users = _vocabulary(config, "user")
    assert users and all(not u.startswith((" ", "eval-")) for u in users)  # trimmed; eval's users unseen
    letter = json.loads(next(Artifacts(config.artifacts).dead_letter_dir.glob("*.jsonl")).read_text().splitlines()[0])
    assert letter["file"].endswith("train.data.gz") and "expected 7 comma-separated values, got 3" in letter["message"]


@pytest.fixture(scope="module")
def parquet_file(tmp_path_factory):
    rows = _rows(80, 4)
    frame = pd.DataFrame(rows)
    frame["tags"] = [t.split("|") if t else [] for t in frame["tags"]]
    frame.loc[3, "age"] = None  # optional: its default applies
    frame["age"] = frame["age"].astype("Int64")
    frame.loc[5, "price"] = float("inf")  # a dead letter
    path = tmp_path_factory.mktemp("parquet") / "logs.parquet"
    frame.to_parquet(path, row_group_size=16)
    return path


def test_parquet_through_both_engines_hashes_whole_rows_alike(parquet_file, tmp_path):
    manifests, tokens = {}, {}
    for engine in ("beam", "columnar"):
        config = _config(tmp_path, {"path": str(parquet_file)}, engine, split={"eval_fraction": 0.3})
        manifests[engine] = run_preprocess(config, config.artifacts)
        _counts_conserved(manifests[engine], 80)
        tokens[engine] = _vocabulary(config, "tags")
    beam, columnar = manifests["beam"], manifests["columnar"]
    assert beam["rows"] == columnar["rows"] and beam["labels"] == columnar["labels"]
    assert beam["dead_letters_by_reason"] == {"not_finite": 1}
    assert 10 < beam["rows"]["eval"] < 40  # about 30% of 79, hashed on the whole row
    assert tokens["beam"] == tokens["columnar"] and set(tokens["beam"]) == {"t0", "t1"}


def _slot_line(row: dict, sample_id: int, extra: str = "") -> str:
    tags = "".join(f",301:{tag}" for tag in row["tags"].split("|") if tag)
    return (f"{sample_id},{row['click']},{row['buy']},101:{row['user']},205:{row['item']},508:{row['age']},"
            f"509:{row['price']}{tags}{extra}\n")


def test_paddlerec_slot_rows_collect_repeated_fields_and_count_unknown_ones(tmp_path):
    rows = _rows(40, 5)
    lines = [_slot_line(row, i, ",999:7" if i % 4 == 0 else "") for i, row in enumerate(rows)]
    lines.append("40,1,0,101:u1,205:i1,205:i2,508:3,509:2.0\n")  # a single-valued field twice
    lines.append("41,0,0,101:u1,nonsense\n")
    path = tmp_path / "part-0.txt"
    path.write_text("".join(lines))
    slots = {"leading": ["sample", "click", "buy"], "fields": {"101": "user", "205": "item", "508": "age",
                                                               "509": "price", "301": "tags"}}
    config = _config(tmp_path, {"path": str(path), "format": "slots", "slots": slots},
                     extra_columns=[{"name": "sample", "type": "string"}], split={"key": "sample", "eval_fraction": 0.3})
    manifest = run_preprocess(config, config.artifacts)
    _counts_conserved(manifest, 42)
    assert manifest["dead_letters_by_reason"] == {"malformed_record": 1, "repeated_field": 1}
    assert manifest["unknown_slot_fields_ignored"] == 10
    assert set(_vocabulary(config, "tags")) == {"t0", "t1"}


def test_tf_example_tfrecords_validate_like_any_row(tmp_path):
    path = tmp_path / "examples.tfrecord.gz"
    rows = _rows(80, 6)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for row in rows:
            feature = {
                "user": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row["user"].encode()])),
                "item": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row["item"].encode()])),
                "age": tf.train.Feature(int64_list=tf.train.Int64List(value=[row["age"]])),
                "price": tf.train.Feature(float_list=tf.train.FloatList(value=[row["price"]])),
                "tags": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[t.encode() for t in row["tags"].split("|") if t])),
                "click": tf.train.Feature(int64_list=tf.train.Int64List(value=[row["click"]])),
                "buy": tf.train.Feature(int64_list=tf.train.Int64List(value=[row["buy"]])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        writer.write(b"\x01not a proto")
        bad = tf.train.Example(features=tf.train.Features(feature={
            "user": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a", b"b"]))}))
        writer.write(bad.SerializeToString())
    config = _config(tmp_path, {"path": str(path)}, split={"eval_fraction": 0.3})
    assert config.input_format == "tfrecord"
    manifest = run_preprocess(config, config.artifacts)
    _counts_conserved(manifest, 82)
    assert manifest["dead_letters_by_reason"] == {"malformed_record": 1, "repeated_field": 1}


def test_files_that_disagree_on_their_header_are_one_error_naming_the_file(tmp_path):
    frame = pd.DataFrame(_rows(5, 7))
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame[list(reversed(COLUMNS))].to_csv(tmp_path / "b.csv", index=False)
    config = _config(tmp_path, {"path": str(tmp_path / "*.csv")})
    with pytest.raises(InputError, match=r"input.path: '.*b.csv' has columns .* same header, in the same order"):
        run_preprocess(config, config.artifacts)
    headerless = _config(tmp_path, {"path": str(tmp_path / "a.csv"), "header": False})
    with pytest.raises(InputError, match=r"a.csv' starts with a header line .* input.header is false"):
        run_preprocess(headerless, headerless.artifacts)


def test_splits_that_cannot_train_or_evaluate_are_one_error_before_training(tmp_path):
    frame = pd.DataFrame(_rows(30, 8))
    frame.to_csv(tmp_path / "logs.csv", index=False)
    one_key = _config(tmp_path, {"path": str(tmp_path / "logs.csv")}, "columnar",
                      split={"key": "item", "eval_fraction": 0.01})
    frame.assign(item="same").to_csv(tmp_path / "logs.csv", index=False)
    with pytest.raises(SplitError, match="the eval split is empty: split.key 'item' hashed every valid row"):
        run_preprocess(one_key, one_key.artifacts)
    from recsys.cli import main

    assert main(["train", "--config", _write(tmp_path, one_key)]) == 2  # refused, no traceback

    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.assign(click=0, buy=0).to_csv(tmp_path / "eval.csv", index=False)
    one_class = _config(tmp_path, {"train": str(tmp_path / "train.csv"), "eval": str(tmp_path / "eval.csv")},
                        "columnar")
    with pytest.raises(SplitError, match="task 'ctr': label 'click' is 0 on all 30 rows of the eval split"):
        run_preprocess(one_class, one_class.artifacts)

    (tmp_path / "test.csv").write_text(",".join(COLUMNS) + "\n")
    no_test = _config(tmp_path, {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")})
    with pytest.raises(InputError, match="input.test: 1 file.* none has a data row"):
        run_preprocess(no_test, no_test.artifacts)


def _write(tmp_path, config) -> str:
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    return str(path)


@pytest.mark.parametrize("policy, kept, dropped, repaired", [("drop", 28, 2, 0), ("repair", 30, 0, 2)])
def test_purchases_without_clicks_follow_the_configured_policy(tmp_path, policy, kept, dropped, repaired):
    frame = pd.DataFrame(_rows(30, 9))
    frame.loc[[1, 2], ["click", "buy"]] = [0, 1]
    frame.to_csv(tmp_path / "logs.csv", index=False)
    config = _config(tmp_path, {"path": str(tmp_path / "logs.csv")}, "columnar",
                     pipeline={"engine": "columnar", "num_shards": 1, "sample_space_violations": policy})
    manifest = run_preprocess(config, config.artifacts)
    _counts_conserved(manifest, 30)
    assert manifest["rows"]["train"] + manifest["rows"]["eval"] == kept
    assert manifest["sample_space_violations"] == {"policy": policy, "dropped": dropped, "repaired": repaired}
    labels = [(example.features.feature["click"].float_list.value[0], example.features.feature["buy"].float_list.value[0])
              for split in ("train", "eval") for example in _examples(config, split)]
    assert len(labels) == kept and (0, 1) not in labels
    rejecting = _config(tmp_path, {"path": str(tmp_path / "logs.csv")}, "columnar",
                        pipeline={"engine": "columnar", "num_shards": 1, "max_bad_fraction": 0.01})
    with pytest.raises(PipelineError, match="pipeline.sample_space_violations: drop or repair"):
        run_preprocess(rejecting, rejecting.artifacts)


def test_feature_defaults_fill_only_what_a_feature_leaves_out(tmp_path):
    config = _config(tmp_path, {"path": "logs.csv"})
    assert {f.name: f.embedding_dim for f in config.features} == dict.fromkeys(
        ["user", "item", "age", "price", "tags"], 4)
    with pytest.raises(ConfigError, match="feature_defaults: name cannot be defaulted"):
        _config(tmp_path, {"path": "logs.csv"}, feature_defaults={"name": "x"})
    with pytest.raises(ConfigError, match="give either `path`"):
        _config(tmp_path, {"path": "a.csv", "train": "b.csv"})


def test_a_feature_derived_from_a_label_stops_preprocessing_before_the_job(tmp_path):
    frame = pd.DataFrame(_rows(60, 10))
    frame["age"] = frame["click"] * 40 + 20  # an 'age' that is the click label in disguise
    frame.to_csv(tmp_path / "logs.csv", index=False)
    config = _config(tmp_path, {"path": str(tmp_path / "logs.csv")}, "columnar")
    with pytest.raises(LeakageError, match="feature 'age' \\(column 'age'\\) determines label 'click'"):
        run_preprocess(config, config.artifacts)
    assert not config.artifacts.exists()
