"""The whole pipeline on a small generated dataset, through the `recsys` command line.

One preprocessing run is shared by every test here; the models are small but
the data has known structure, so each assertion is about behaviour: counts add
up, bad rows land in the dead letters with their reasons, the ranker beats a
popularity baseline, ESMM corrects the selection bias of a clicked-only CVR
model, and the exported SavedModel scores raw examples exactly like the
in-memory model scores the pipeline's transformed rows.
"""
import copy
import csv
import json

import numpy as np
import pytest
import yaml

from features.artifacts import Artifacts
from features.config import load_config
from recsys.cli import main
from tests.conftest import SAMPLE_CONFIG

pytestmark = pytest.mark.slow

ROWS = 40_000
# (impression_id, column to break, value, expected reason)
BAD_ROWS = [
    ("bad_nan_price", "item_price", "nan", "not_finite"),
    ("bad_missing_user", "user_id", "", "missing_required"),
    ("bad_hour", "hour", "noon", "invalid_int"),
    ("bad_history", "hist_click_items", "i1||i2", "malformed_list"),
    ("bad_funnel", "conversion", "1", "label_outside_sample_space"),  # with click = 0
]
SHORT_LINE = "bad_short_line,1700000000,u1"
TEST_FRACTION = 0.1  # a held-out test split hashed out too, reported once at the end


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def raw_csv(workdir):
    from pipelines import synthetic

    path = workdir / "logs.csv"
    synthetic.write(synthetic.SyntheticSpec(rows=ROWS, seed=11), str(path))
    with path.open() as handle:
        reader = csv.DictReader(handle)
        template = next(reader)
        header = reader.fieldnames
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, header)
        for impression_id, column, value, _ in BAD_ROWS:
            row = dict(template, impression_id=impression_id, click="0", conversion="0", dwell_time="0.0")
            row[column] = value
            writer.writerow(row)
        handle.write(SHORT_LINE + "\n")
    return path


def _write_config(workdir, raw_csv, name: str, edit=lambda raw: None):
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    raw["input"]["path"] = str(raw_csv)
    raw["artifacts_dir"] = str(workdir / "artifacts")
    raw["training"].update(model_dir=str(workdir / "models" / name), epochs=6)
    raw["split"]["test_fraction"] = TEST_FRACTION
    raw["export"]["base_path"] = str(workdir / "serving")
    edit(raw)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def esmm_config_path(workdir, raw_csv):
    return _write_config(workdir, raw_csv, "esmm")


@pytest.fixture(scope="module")
def manifest(esmm_config_path):
    assert main(["preprocess", "--config", str(esmm_config_path)]) == 0
    return Artifacts.of(load_config(esmm_config_path)).manifest()


@pytest.fixture(scope="module")
def esmm_report(esmm_config_path, manifest):
    assert main(["train", "--config", str(esmm_config_path), "--quiet"]) == 0
    assert main(["evaluate", "--config", str(esmm_config_path)]) == 0
    return json.loads((Artifacts.of(load_config(esmm_config_path)).evaluation_dir / "evaluation.json").read_text())


def test_manifest_counts_add_up(manifest):
    rows = manifest["rows"]
    assert rows["read"] == ROWS + len(BAD_ROWS) + 1
    assert rows["train"] + rows["eval"] + rows["test"] == ROWS
    assert rows["dead_letter"] == sum(manifest["dead_letters_by_reason"].values()) == len(BAD_ROWS) + 1
    assert 0.17 < rows["eval"] / ROWS < 0.23 and 0.08 < rows["test"] / ROWS < 0.12
    assert manifest["vocabulary_sizes"]["item_id"] > 50


def test_bad_rows_are_dead_letters_with_their_reasons_and_nowhere_else(esmm_config_path, manifest):
    artifacts = Artifacts.of(load_config(esmm_config_path))
    letters = [json.loads(line) for path in sorted(artifacts.dead_letter_dir.glob("*.jsonl"))
               for line in path.read_text().splitlines()]
    by_id = {}
    for letter in letters:
        row = letter["row"]
        by_id[row.split(",")[0] if isinstance(row, str) else row["impression_id"]] = letter
    for impression_id, column, _, reason in BAD_ROWS:
        assert by_id[impression_id]["reason"] == reason
        assert by_id[impression_id]["field"] == column and column in by_id[impression_id]["message"]
    assert by_id["bad_short_line"]["reason"] == "wrong_column_count"
    assert manifest["dead_letters_by_reason"] == {
        "invalid_int": 1, "label_outside_sample_space": 1, "malformed_list": 1, "missing_required": 1,
        "not_finite": 1, "wrong_column_count": 1}


def test_the_ranker_beats_the_popularity_baseline(esmm_report):
    ctr = esmm_report["tasks"]["ctr"]["auc"]
    baseline = esmm_report["baselines"]["item_popularity"]["ctr_auc"]
    assert ctr > baseline + 0.03, (ctr, baseline)
    assert esmm_report["tasks"]["ctr"]["gauc"]["groups"] > 100


def test_the_held_out_test_split_is_reported_apart_from_eval(esmm_config_path, manifest, esmm_report):
    assert main(["evaluate", "--config", str(esmm_config_path), "--split", "test"]) == 0
    directory = Artifacts.of(load_config(esmm_config_path)).evaluation_dir
    test = json.loads((directory / "test" / "evaluation.json").read_text())
    assert test["split"] == "test" and test["rows"] == manifest["rows"]["test"]
    about = test["about"]  # the report says what it describes
    assert about["config_file"] == str(esmm_config_path.resolve()) and about["trained_at"]
    assert about["data"]["rows"] == {s: manifest["rows"][s] for s in ("train", "eval", "test")}
    assert about["model"].endswith("esmm") and about["code_version"]
    page = (directory / "test" / "report.html").read_text()
    assert about["trained_at"] in page and f"test {manifest['rows']['test']:,}" in page
    model_dir = load_config(esmm_config_path).model_dir  # the model directory alone is enough
    assert main(["evaluate", "--config", str(model_dir), "--split", "test"]) == 0
    again = json.loads((directory / "test" / "evaluation.json").read_text())
    assert again["tasks"]["ctr"]["auc"] == test["tasks"]["ctr"]["auc"]
    assert test["tasks"]["ctr"]["auc"] > test["baselines"]["item_popularity"]["ctr_auc"] + 0.03
    assert json.loads((directory / "evaluation.json").read_text())["split"] == "eval"  # blessing reads eval


def _served_and_in_memory(config, ranker, version_dir, rows: int = 300):
    """Scores of the same eval rows: raw tf.Examples through the SavedModel, and the Beam-transformed
    rows through the in-memory ranker (matched by their true CTR, unique per row)."""
    from features.examples import to_example
    from pipelines.split import EVAL, split_of
    from pipelines.validation import RowValidator
    from recsys.data import make_dataset, split_files, transformed_feature_spec
    from recsys.evaluation.evaluate import predict
    from serving.scoring import ExportedModel

    artifacts = Artifacts.of(config)
    dataset = make_dataset(split_files(artifacts.root, "eval"), transformed_feature_spec(artifacts.root), 1024)
    outputs, columns, _ = predict(ranker, dataset, ["true_ctr"])
    validate = RowValidator(config)
    with open(config.input.path) as handle:
        raw_rows = [validate(row) for row in csv.DictReader(handle)
                    if row["impression_id"].startswith("imp") and split_of(row["impression_id"], 0.2, TEST_FRACTION) == EVAL]
    position = {np.float32(value): i for i, value in enumerate(columns["true_ctr"])}
    sample = [row for row in raw_rows if np.float32(row["true_ctr"]) in position][:rows]
    served = ExportedModel(version_dir).score([to_example(config, row) for row in sample])
    matched = [position[np.float32(row["true_ctr"])] for row in sample]
    return served, {name: values[matched] for name, values in outputs.items()}


def test_exported_model_scores_raw_examples_exactly_like_the_trained_model(esmm_config_path, esmm_report):
    from recsys.training import load_trained_ranker
    from serving.scoring import latest_version

    config = load_config(esmm_config_path)
    assert main(["export", "--config", str(esmm_config_path)]) == 0
    served, in_memory = _served_and_in_memory(config, load_trained_ranker(config),
                                              latest_version(config.served_model_dir))
    assert set(served) == {"ctr", "cvr", "dwell", "ctcvr"}
    for name in served:
        np.testing.assert_allclose(served[name], in_memory[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bottom, backbone", [("shared", "mmoe"), ("shared", "cgc"), ("shared", "ple"),
                                              ("shared", "adatt"), ("dtrn", "ple")])
def test_every_backbone_exports_through_the_same_signature(workdir, raw_csv, manifest, bottom, backbone):
    from recsys.models.ranker import build_ranker
    from serving.export import export_model

    def with_backbone(raw):
        raw["model"].update(bottom=bottom, backbone=backbone, experts={"units": [16]}, bottom_units=[])
        raw["export"]["model_name"] = f"e2e_{bottom}_{backbone}"

    config = load_config(_write_config(workdir, raw_csv, f"{bottom}_{backbone}", with_backbone))
    ranker = build_ranker(config, manifest["model_inputs"])  # untrained weights score just as well
    served, in_memory = _served_and_in_memory(config, ranker, export_model(ranker, config, config.artifacts), 100)
    assert set(served) == {"ctr", "cvr", "dwell", "ctcvr"}
    for name in served:
        np.testing.assert_allclose(served[name], in_memory[name], rtol=1e-5, atol=1e-6)


def test_a_worse_model_is_not_published_and_a_better_one_is(workdir, raw_csv, manifest, esmm_report):
    """Blessing against the published version on the same raw eval rows, through the command line."""
    from recsys.models.ranker import build_ranker
    from serving.export import _versions, export_model

    def published_as_blessing(raw):
        raw["export"]["model_name"] = "blessing"
        raw["training"]["model_dir"] = str(workdir / "models" / "esmm")  # the trained ESMM model

    good_path = _write_config(workdir, raw_csv, "blessing_good", published_as_blessing)
    good = load_config(good_path)
    untrained = build_ranker(good, manifest["model_inputs"])
    first = export_model(untrained, good, good.artifacts)  # an untrained model is what is published now
    assert main(["validate", "--config", str(good_path)]) == 0
    decision = json.loads((Artifacts.of(good).evaluation_dir / "blessing.json").read_text())
    assert decision["status"] == "BLESSED" and decision["baseline"] == str(first)
    assert main(["export", "--config", str(good_path)]) == 0

    def untrained_candidate(raw):
        published_as_blessing(raw)
        raw["training"]["model_dir"] = str(workdir / "models" / "untrained")

    worse_path = _write_config(workdir, raw_csv, "blessing_worse", untrained_candidate)
    worse = load_config(worse_path)
    untrained.save_weights(str(Artifacts.of(worse).weights_path))
    assert main(["validate", "--config", str(worse_path)]) == 3
    decision = json.loads((Artifacts.of(worse).evaluation_dir / "blessing.json").read_text())
    assert decision["status"] == "NOT_BLESSED"
    assert any(reason.startswith("ctr auc: drop") for reason in decision["reasons"]), decision["reasons"]
    assert _versions(good.served_model_dir) == [1, 2]  # nothing new was published
