"""Offline evaluation metrics against hand-computed and scikit-learn values, edge cases included."""
import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score, roc_curve

from recsys.evaluation import binned, bootstrap, metrics


def test_normalized_entropy_is_one_for_the_base_rate_and_weighted():
    labels = np.array([1, 0, 0, 0])
    assert metrics.normalized_entropy(labels, np.full(4, 0.25)) == pytest.approx(1.0)
    better = np.array([0.7, 0.1, 0.1, 0.1])
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert metrics.normalized_entropy(labels, better) == pytest.approx(log_loss(labels, better) / entropy)
    weights = np.array([3.0, 1.0, 1.0, 1.0])  # base rate 0.5 under these weights
    assert metrics.normalized_entropy(labels, np.full(4, 0.5), weights) == pytest.approx(1.0)
    assert math.isnan(metrics.normalized_entropy(np.zeros(3), np.full(3, 0.1)))
    assert math.isnan(metrics.normalized_entropy(np.array([]), np.array([])))


def test_reliability_curve_and_ece_by_hand():
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.6, 0.8])
    curve = metrics.reliability_curve(labels, scores, bins=2)
    assert curve == {"predicted": [pytest.approx(0.2), pytest.approx(0.7)], "observed": [0.0, 1.0], "rows": [2, 2]}
    assert metrics.expected_calibration_error(labels, scores, bins=2) == pytest.approx((0.2 + 0.3) / 2)
    assert metrics.reliability_curve(np.array([]), np.array([]))["rows"] == []
    assert math.isnan(metrics.expected_calibration_error(np.array([]), np.array([])))


def test_precision_and_recall_at_thresholds_including_no_positive_calls():
    labels, scores = np.array([1, 0, 1, 0]), np.array([0.9, 0.6, 0.4, 0.1])
    at_half, at_tenth = metrics.precision_recall_at(labels, scores, [0.5, 0.1])
    assert (at_half["precision"], at_half["recall"], at_half["predicted_positive"]) == (0.5, 0.5, 2)
    assert (at_tenth["precision"], at_tenth["recall"]) == (0.5, 1.0)
    none_called = metrics.precision_recall_at(labels, np.full(4, 0.3), [0.5])[0]  # all-equal scores
    assert math.isnan(none_called["precision"]) and none_called["recall"] == 0.0


def test_roc_points_follow_scikit_learn_and_are_empty_for_one_class():
    rng = np.random.default_rng(1)
    labels, scores = rng.integers(0, 2, 300), rng.random(300)
    fpr, tpr, _ = roc_curve(labels, scores)
    points = metrics.roc_points(labels, scores, max_points=1000)
    np.testing.assert_allclose(points["fpr"], fpr, atol=1e-5)
    np.testing.assert_allclose(points["tpr"], tpr, atol=1e-5)
    assert len(metrics.roc_points(labels, scores, max_points=20)["fpr"]) <= 20
    assert metrics.roc_points(np.ones(4), scores[:4]) == {"fpr": [], "tpr": []}


def test_binned_auc_is_exact_with_few_distinct_scores_and_ties():
    labels = np.array([1, 0, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.9, 0.5, 0.1, 0.5, 0.5, 0.2])
    bins, count = bootstrap.rank_bins(scores)
    positives = np.bincount(bins, weights=labels, minlength=count)
    negatives = np.bincount(bins, weights=1 - labels, minlength=count)
    assert bootstrap.binned_auc(positives, negatives) == pytest.approx(roc_auc_score(labels, scores))
    assert bootstrap.binned_auc(np.array([2.0]), np.array([3.0])) == 0.5  # all scores equal
    assert math.isnan(bootstrap.binned_auc(np.array([2.0, 1.0]), np.array([0.0, 0.0])))  # one class


def _sample(rows, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.2).astype(float)
    scores = 1 / (1 + np.exp(-(-1.5 + labels + rng.normal(0, 1, rows))))
    return labels, scores


def test_bootstrap_intervals_bracket_the_metric_match_a_row_bootstrap_and_repeat_with_the_seed():
    labels, scores = _sample(3000)
    found = bootstrap.metric_intervals(labels, scores, "binary", 400, 0.95, seed=3)
    assert found == bootstrap.metric_intervals(labels, scores, "binary", 400, 0.95, seed=3)
    assert found["auc"][0] < roc_auc_score(labels, scores) < found["auc"][1]
    assert found["logloss"][0] < log_loss(labels, scores) < found["logloss"][1]
    # the textbook bootstrap, one row draw per resample, gives the same width
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(labels), size=(250, len(labels)))
    naive = [roc_auc_score(labels[d], scores[d]) for d in draws]
    naive_width = np.percentile(naive, 97.5) - np.percentile(naive, 2.5)
    assert found["auc"][1] - found["auc"][0] == pytest.approx(naive_width, rel=0.25)
    wider = bootstrap.metric_intervals(labels[:300], scores[:300], "binary", 400, 0.95)
    assert wider["auc"][1] - wider["auc"][0] > 2 * (found["auc"][1] - found["auc"][0])


def test_regression_intervals_and_empty_input():
    rng = np.random.default_rng(0)
    targets = rng.normal(size=2000)
    predictions = targets + rng.normal(0, 0.5, 2000)
    found = bootstrap.metric_intervals(targets, predictions, "regression", 200, 0.9)
    assert found["rmse"][0] < metrics.rmse(targets, predictions) < found["rmse"][1]
    assert found["mae"][0] < metrics.mae(targets, predictions) < found["mae"][1]
    assert bootstrap.metric_intervals(np.array([]), np.array([]), "binary", 100, 0.95) == {}
    assert bootstrap.interval(np.array([np.nan, np.nan]), 0.95) == [pytest.approx(np.nan, nan_ok=True)] * 2


def test_paired_bootstrap_sees_a_small_real_difference_and_none_between_equal_models():
    labels, scores = _sample(5000)
    rng = np.random.default_rng(1)
    noisier = 1 / (1 + np.exp(-(np.log(scores / (1 - scores)) + rng.normal(0, 0.6, len(scores)))))
    found = bootstrap.resampled_metrics(labels, {"a": scores, "b": noisier, "same": scores.copy()}, "binary", 300)
    delta = bootstrap.interval(found["b"]["auc"] - found["a"]["auc"], 0.95)
    assert delta[1] < 0  # the noisier model is worse, and the paired interval knows
    assert bootstrap.interval(found["same"]["auc"] - found["a"]["auc"], 0.95) == [0.0, 0.0]


def test_binned_accumulators_merge_and_match_exact_metrics():
    labels, scores = _sample(20_000, seed=5)
    whole = binned.BinaryAccumulator().add(labels, scores)
    merged = binned.BinaryAccumulator().add(labels[:7000], scores[:7000]).merge(
        binned.BinaryAccumulator().add(labels[7000:], scores[7000:]))
    found, again = whole.result(10, (0.3,)), merged.result(10, (0.3,))
    assert found["auc"] == pytest.approx(again["auc"]) and found["logloss"] == pytest.approx(again["logloss"])
    assert found["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=2e-4)
    assert found["logloss"] == pytest.approx(log_loss(labels, scores))
    assert found["calibration"] == pytest.approx(metrics.calibration(labels, scores))
    assert found["normalized_entropy"] == pytest.approx(metrics.normalized_entropy(labels, scores))
    assert found["ece"] == pytest.approx(metrics.expected_calibration_error(labels, scores), abs=2e-3)
    exact = metrics.precision_recall_at(labels, scores, [0.3])[0]
    assert found["precision_recall"][0]["recall"] == pytest.approx(exact["recall"], abs=3e-3)
    import pickle

    shipped = pickle.loads(pickle.dumps(merged))  # what Beam sends between workers: used bins only
    assert len(pickle.dumps(binned.BinaryAccumulator().add(labels[:50], scores[:50]))) < 5_000
    shipped_result = shipped.result(10, (0.3,))
    for key in ("rows", "positives", "auc", "logloss", "calibration", "ece", "reliability", "roc"):
        assert shipped_result[key] == again[key], key
    roc = found["roc"]
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(found["auc"], abs=2e-3)
    empty = binned.BinaryAccumulator().result()
    assert empty["rows"] == 0 and math.isnan(empty["auc"]) and math.isnan(empty["logloss"])
    regression = binned.RegressionAccumulator().add([1.0, 2.0], [1.5, 2.0]).merge(
        binned.RegressionAccumulator().add([0.0], [1.0]))
    assert regression.result() == {"rows": 3, "rmse": pytest.approx(math.sqrt(1.25 / 3)), "mae": pytest.approx(0.5)}
