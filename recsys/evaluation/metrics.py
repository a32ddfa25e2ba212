"""Ranking and calibration metrics on NumPy arrays; each takes optional per-row weights.

AUC and log loss come from scikit-learn; what it lacks (GAUC, calibration
ratio, error against known true probabilities) is written here.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

_EPSILON = 1e-7


def auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """ROC AUC; NaN when only one class is present (AUC is undefined there)."""
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores, sample_weight=weights))


def logloss(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray | None = None) -> float:
    if len(labels) == 0:
        return float("nan")
    clipped = np.clip(probabilities, _EPSILON, 1 - _EPSILON)
    return float(log_loss(labels, clipped, sample_weight=weights, labels=[0, 1]))


def calibration(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean prediction over mean label: 1.0 is calibrated, above 1 over-predicts."""
    weights = np.ones_like(labels, dtype=float) if weights is None else weights
    positives = float(np.sum(weights * labels))
    return float(np.sum(weights * probabilities) / positives) if positives > 0 else float("nan")


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> dict:
    """Impression-weighted mean of per-group AUCs (groups are usually users).

    Groups with a single class have no AUC and are skipped; how many is reported,
    because a GAUC over few groups says little.
    """
    order = np.argsort(groups, kind="stable")
    labels, scores, groups = labels[order], scores[order], groups[order]
    boundaries = np.flatnonzero(np.diff(groups)) + 1
    total, weight, used, skipped = 0.0, 0, 0, 0
    for group_labels, group_scores in zip(np.split(labels, boundaries), np.split(scores, boundaries)):
        if len(group_labels) == 0:
            continue
        if group_labels.min() == group_labels.max():
            skipped += 1
            continue
        total += len(group_labels) * roc_auc_score(group_labels, group_scores)
        weight += len(group_labels)
        used += 1
    return {"gauc": total / weight if weight else float("nan"), "groups": used, "groups_skipped": skipped}


def rmse(targets: np.ndarray, predictions: np.ndarray, weights: np.ndarray | None = None) -> float:
    return float(np.sqrt(np.average((targets - predictions) ** 2, weights=weights)))


def mae(targets: np.ndarray, predictions: np.ndarray, weights: np.ndarray | None = None) -> float:
    return float(np.average(np.abs(targets - predictions), weights=weights))


def truth_error(true_probabilities: np.ndarray, predictions: np.ndarray) -> dict:
    """How far predictions are from the known true probabilities (synthetic data only)."""
    return {"mae": mae(true_probabilities, predictions), "rmse": rmse(true_probabilities, predictions),
            "bias": float(np.mean(predictions - true_probabilities))}
