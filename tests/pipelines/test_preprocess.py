"""The Beam job on a small Parquet input: counts, dead letters, and the bad-fraction gate."""
import json

import numpy as np
import pandas as pd
import pytest

from features.artifacts import Artifacts
from features.config import parse_config
from pipelines import synthetic
from pipelines.preprocess import PipelineError, run_preprocess
from pipelines.input_files import InputError

ROWS = 600


@pytest.fixture(scope="module")
def parquet_input(tmp_path_factory):
    frame = next(synthetic.iter_chunks(synthetic.SyntheticSpec(rows=ROWS, seed=3)))
    frame["item_tags"] = frame["item_tags"].map(lambda tags: tags.split("|") if tags else [])
    frame["user_id"] = frame["user_id"].astype(object)
    frame.loc[0, "item_price"] = np.inf  # (a NaN would be stored as a Parquet null: missing)
    frame.loc[1, "user_id"] = None
    frame.loc[2, ["click", "conversion"]] = [0, 1]
    path = tmp_path_factory.mktemp("parquet") / "logs.parquet"
    frame.to_parquet(path)
    return path, frame


def _config(raw_config, path, artifacts, **pipeline):
    raw_config["input"] = {"path": str(path)}
    raw_config["artifacts_dir"] = str(artifacts)
    raw_config["pipeline"].update({"engine": "beam", **pipeline})
    return parse_config(raw_config)


def test_too_many_bad_rows_fail_the_job_after_writing_what_went_wrong(raw_config, parquet_input, tmp_path):
    path, frame = parquet_input
    config = _config(raw_config, path, tmp_path / "artifacts", max_bad_fraction=0.001, num_shards=1)
    with pytest.raises(PipelineError, match=r"3 of 600 rows \(0.50%\) were rejected.*max_bad_fraction"):
        run_preprocess(config, config.artifacts)
    manifest = Artifacts.of(config).manifest()
    assert manifest["rows"]["read"] == ROWS and manifest["rows"]["train"] + manifest["rows"]["eval"] == ROWS - 3
    assert manifest["dead_letters_by_reason"] == {
        "label_outside_sample_space": 1, "missing_required": 1, "not_finite": 1}
    letters = [json.loads(line) for file in Artifacts.of(config).dead_letter_dir.glob("*.jsonl")
               for line in file.read_text().splitlines()]
    rejected = {letter["row"]["impression_id"]: letter["field"] for letter in letters}
    assert rejected == {frame.impression_id[0]: "item_price", frame.impression_id[1]: "user_id",
                        frame.impression_id[2]: "conversion"}
    assert len(list((config.artifacts / "train").glob("*.tfrecord.gz"))) == 1


def test_missing_required_column_and_missing_input_fail_before_the_job(raw_config, parquet_input, tmp_path):
    path, frame = parquet_input
    narrow = tmp_path / "narrow.parquet"
    frame.drop(columns=["item_id"]).to_parquet(narrow)
    with pytest.raises(InputError, match="required column\\(s\\) item_id are missing"):
        run_preprocess(_config(raw_config, narrow, tmp_path / "a"), tmp_path / "a")
    with pytest.raises(InputError, match="no file matches"):
        run_preprocess(_config(raw_config, tmp_path / "none-*.csv", tmp_path / "b"), tmp_path / "b")


def test_an_empty_input_fails_before_the_job_naming_the_file(raw_config, tmp_path):
    header = ",".join(c["name"] for c in raw_config["columns"])
    (tmp_path / "header_only.csv").write_text(header + "\n")
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(InputError, match="1 file\\(s\\) matched .* but none has a data row"):
        run_preprocess(_config(raw_config, tmp_path / "header_only.csv", tmp_path / "a"), tmp_path / "a")
    with pytest.raises(InputError, match="blank.csv' is empty"):
        run_preprocess(_config(raw_config, tmp_path / "blank.csv", tmp_path / "b"), tmp_path / "b")
    frame = next(synthetic.iter_chunks(synthetic.SyntheticSpec(rows=10, seed=3))).head(0)
    frame.to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(InputError, match="none has a data row"):
        run_preprocess(_config(raw_config, tmp_path / "empty.parquet", tmp_path / "c"), tmp_path / "c")
