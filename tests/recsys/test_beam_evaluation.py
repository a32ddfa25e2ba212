"""The Beam evaluation job agrees with the in-process metrics on the same rows and the same SavedModel."""
import math

import numpy as np
import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow


class _PriceModel(tf.Module):
    """A stand-in exported model: scores from raw features, through a `serving_default` like ours."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        raw = tf.io.parse_example(examples, {"item_price": tf.io.FixedLenFeature([], tf.float32),
                                             "position": tf.io.FixedLenFeature([], tf.int64)})
        ctr = tf.sigmoid(1.0 - tf.math.log1p(raw["item_price"]) * 0.3 - tf.cast(raw["position"], tf.float32) * 0.05)
        cvr = tf.sigmoid(-2.0 + tf.math.log1p(raw["item_price"]) * 0.6 - tf.cast(raw["position"], tf.float32) * 0.1)
        return {"ctr": ctr, "cvr": cvr, "dwell": tf.fill(tf.shape(ctr), 20.0), "ctcvr": ctr * cvr}


def _binning_bound(labels, scores):
    """The documented precision of a binned AUC: half the share of positive-negative pairs sharing a bin."""
    from recsys.evaluation.binned import logit_bins

    bins = logit_bins(scores)
    positives = np.bincount(bins[labels > 0], minlength=bins.max() + 1)
    negatives = np.bincount(bins[labels == 0], minlength=bins.max() + 1)
    return 0.5 * float(np.sum(positives * negatives)) / (positives.sum() * negatives.sum())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from features.config import parse_config
    from pipelines import synthetic
    from tests.conftest import SAMPLE_CONFIG
    import yaml

    workdir = tmp_path_factory.mktemp("beam_eval")
    synthetic.write(synthetic.SyntheticSpec(rows=3000, seed=3), str(workdir / "logs.csv"))
    module = _PriceModel()
    tf.saved_model.save(module, str(workdir / "model"), signatures={"serving_default": module.serve})
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    raw["input"]["path"] = str(workdir / "logs.csv")
    raw["artifacts_dir"] = str(workdir / "artifacts")
    raw["evaluation"]["slices"] = [{"feature": "device"}, {"feature": "position"}]
    return parse_config(raw), workdir


def test_beam_job_matches_in_process_metrics(setup):
    from pipelines.eval_rows import read_eval_rows
    from recsys.evaluation import metrics
    from pipelines.preprocess import ReadSplitRows
    from recsys.evaluation.beam_evaluation import run_beam_evaluation
    from recsys.evaluation.compare import label_columns, score_examples
    from features.examples import to_example
    from serving.scoring import ExportedModel

    config, workdir = setup
    report = run_beam_evaluation(config, workdir / "model", workdir / "beam", ReadSplitRows(config, "eval"))
    rows = read_eval_rows(config)
    scores = score_examples({"m": ExportedModel(workdir / "model").score},
                            [to_example(config, row) for row in rows])["m"]
    columns = label_columns(config, rows)
    clicked = columns["click"] > 0
    assert report["rows"] == len(rows)
    ctr, cvr = report["tasks"]["ctr"], report["tasks"]["cvr"]
    assert abs(ctr["auc"] - metrics.auc(columns["click"], scores["ctr"])) <= _binning_bound(
        columns["click"], scores["ctr"]) + 1e-9
    assert ctr["logloss"] == pytest.approx(metrics.logloss(columns["click"], scores["ctr"]), rel=1e-5)
    assert cvr["rows"] == clicked.sum()
    cvr_labels, cvr_scores = columns["conversion"][clicked], scores["cvr"][clicked]
    assert abs(cvr["auc"] - metrics.auc(cvr_labels, cvr_scores)) <= _binning_bound(cvr_labels, cvr_scores) + 1e-9
    assert report["tasks"]["dwell"]["rmse"] == pytest.approx(
        math.sqrt(np.mean((columns["dwell_time"][clicked] - 20.0) ** 2)), rel=1e-4)
    users = np.array([row["user_id"] for row in rows])
    expected = metrics.gauc(columns["click"], scores["ctr"], users)
    assert ctr["gauc"]["groups"] == expected["groups"]
    assert ctr["gauc"]["gauc"] == pytest.approx(expected["gauc"], abs=1e-6)
    devices = sorted({row["device"] for row in rows})
    assert list(report["slices"]["device"]) == devices
    ios = np.array([row["device"] == "ios" for row in rows])
    assert report["slices"]["device"]["ios"]["ctr"]["rows"] == ios.sum()
    positions = [int(p) for p in report["slices"]["position"]]
    assert positions == sorted(positions)  # numeric order, not "1", "10", "2"
    assert (workdir / "beam" / "report.html").exists()
