"""Ranking and calibration metrics on NumPy arrays; each takes optional per-row weights.

AUC, log loss, the ROC curve, precision and recall come from scikit-learn;
what it lacks (GAUC, normalised entropy, calibration ratio, expected
calibration error, error against known true probabilities) is written here.
Every metric is NaN where it is undefined (no rows, one class) rather than
raising, so one empty slice never sinks a whole report.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, precision_score, recall_score, roc_auc_score, roc_curve

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
    because a GAUC over few groups says little. Every group's AUC comes from one
    vectorised pass (Mann-Whitney: the rank sum of its positives, ties at their
    average rank), not a scikit-learn call per group: a million rows of tens of
    thousands of users take seconds.
    """
    if len(labels) == 0:
        return {"gauc": float("nan"), "groups": 0, "groups_skipped": 0}
    frame = pd.DataFrame({"group": groups, "label": np.asarray(labels, dtype=float),
                          "score": np.asarray(scores, dtype=float)})
    frame["rank"] = frame.groupby("group", sort=False)["score"].rank(method="average")
    frame["positive_rank"] = frame["rank"] * frame["label"]
    per_group = frame.groupby("group", sort=False).agg(rows=("label", "size"), positives=("label", "sum"),
                                                       rank_sum=("positive_rank", "sum"))
    negatives = per_group["rows"] - per_group["positives"]
    usable = (per_group["positives"] > 0) & (negatives > 0)
    used = per_group[usable]
    aucs = (used["rank_sum"] - used["positives"] * (used["positives"] + 1) / 2) / (used["positives"] * negatives[usable])
    weight = used["rows"].sum()
    return {"gauc": float((aucs * used["rows"]).sum() / weight) if weight else float("nan"),
            "groups": int(usable.sum()), "groups_skipped": int((~usable).sum())}


def rmse(targets: np.ndarray, predictions: np.ndarray, weights: np.ndarray | None = None) -> float:
    return float(np.sqrt(np.average((targets - predictions) ** 2, weights=weights)))


def mae(targets: np.ndarray, predictions: np.ndarray, weights: np.ndarray | None = None) -> float:
    return float(np.average(np.abs(targets - predictions), weights=weights))


def truth_error(true_probabilities: np.ndarray, predictions: np.ndarray) -> dict:
    """How far predictions are from the known true probabilities (synthetic data only)."""
    return {"mae": mae(true_probabilities, predictions), "rmse": rmse(true_probabilities, predictions),
            "bias": float(np.mean(predictions - true_probabilities))}


def normalized_entropy(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Log loss over the entropy of the base rate (He et al., ADKDD 2014): below 1 beats predicting the mean.

    It makes log loss comparable across tasks and days whose base rates differ.
    """
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    if len(labels) == 0 or weights.sum() <= 0:
        return float("nan")
    rate = float(np.sum(weights * labels) / weights.sum())
    if rate <= 0.0 or rate >= 1.0:
        return float("nan")
    entropy = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    return logloss(labels, probabilities, weights) / entropy


def reliability_curve(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict:
    """Mean prediction and observed rate per bin of equal count (quantiles of the predictions).

    Equal-count bins keep every point of the curve equally reliable; with CVR
    probabilities bunched near 0, equal-width bins would leave most empty.
    """
    if len(labels) == 0:
        return {"predicted": [], "observed": [], "rows": []}
    order = np.argsort(probabilities, kind="stable")
    chunks = [chunk for chunk in np.array_split(order, min(bins, len(order))) if len(chunk)]
    return {"predicted": [float(probabilities[c].mean()) for c in chunks],
            "observed": [float(labels[c].mean()) for c in chunks],
            "rows": [int(len(c)) for c in chunks]}


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Row-weighted mean |mean prediction - observed rate| over equal-count bins."""
    curve = reliability_curve(labels, probabilities, bins)
    if not curve["rows"]:
        return float("nan")
    gaps = np.abs(np.array(curve["predicted"]) - np.array(curve["observed"]))
    return float(np.average(gaps, weights=curve["rows"]))


def precision_recall_at(labels: np.ndarray, probabilities: np.ndarray, thresholds: list[float]) -> list[dict]:
    """Precision and recall when everything scored at or above each threshold is called positive."""
    result = []
    for threshold in thresholds:
        predicted = (probabilities >= threshold).astype(int)
        result.append({"threshold": float(threshold),
                       "precision": float(precision_score(labels, predicted, zero_division=np.nan))
                       if len(labels) else float("nan"),
                       "recall": float(recall_score(labels, predicted, zero_division=np.nan))
                       if len(labels) else float("nan"),
                       "predicted_positive": int(predicted.sum())})
    return result


def roc_points(labels: np.ndarray, scores: np.ndarray, max_points: int = 200) -> dict:
    """The ROC curve thinned to at most `max_points` points, for plots and the JSON report."""
    if len(np.unique(labels)) < 2:
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=True)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    return {"fpr": fpr[keep].round(5).tolist(), "tpr": tpr[keep].round(5).tolist()}
