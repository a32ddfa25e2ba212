import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from recsys.evaluation import metrics


def test_auc_and_logloss_match_scikit_learn_with_weights():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1)
    weights = rng.random(500)
    assert metrics.auc(labels, scores, weights) == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights))
    assert metrics.logloss(labels, scores) == pytest.approx(log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7)))


def test_auc_is_nan_for_a_single_class_and_half_for_equal_scores():
    assert math.isnan(metrics.auc(np.ones(5), np.arange(5)))
    assert metrics.auc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == 0.5


def test_calibration_is_mean_prediction_over_mean_label():
    assert metrics.calibration(np.array([1, 0, 0, 0]), np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(2.0)
    assert math.isnan(metrics.calibration(np.zeros(3), np.full(3, 0.1)))


def test_gauc_weights_groups_by_impressions_and_skips_single_class_groups():
    # group 1: perfect ranking (AUC 1, 4 rows); group 2: inverted (AUC 0, 2 rows); group 3: one class.
    labels = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.1, 0.9, 0.5, 0.4])
    groups = np.array([1, 1, 1, 1, 2, 2, 3, 3])
    result = metrics.gauc(labels, scores, groups)
    assert result == {"gauc": pytest.approx(4 / 6), "groups": 2, "groups_skipped": 1}


def test_gauc_with_no_usable_group_is_nan():
    result = metrics.gauc(np.array([1, 1]), np.array([0.2, 0.3]), np.array([5, 5]))
    assert math.isnan(result["gauc"]) and result["groups_skipped"] == 1


def test_regression_and_truth_errors():
    truth, predicted = np.array([0.1, 0.2, 0.3]), np.array([0.2, 0.2, 0.1])
    assert metrics.mae(truth, predicted) == pytest.approx(0.1)
    assert metrics.rmse(truth, predicted) == pytest.approx(math.sqrt((0.01 + 0 + 0.04) / 3))
    assert metrics.truth_error(truth, predicted)["bias"] == pytest.approx(-0.1 / 3)
