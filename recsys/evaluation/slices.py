"""Metrics by slice: a feature's values or a derived bucket, each task in its own sample space.

An overall AUC can hide a model that is excellent on popular items and poor on
the long tail, or one that is calibrated on average but over-predicts for new
users; slices show where. Slices are cut from the predictions already made for
the overall metrics (no second pass of the model), one pandas group-by per
slice definition.

The eval data holds transformed features, so slice values are read back:
vocabulary ids become their strings, hash and quantile-bucket ids their bucket
numbers. Numeric features are z-scored in the eval data; the transform is
monotone, so quantile buckets of the transformed value are quantile buckets of
the raw value, labelled by rank (q1 = lowest).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.config import Config, SliceConfig
from recsys.evaluation import metrics

OTHER = "other"


def feature_labels(config: Config, spec: SliceConfig, values: np.ndarray, vocabulary: list[str] | None) -> np.ndarray:
    """A label per eval row from a transformed feature's values."""
    feature = config.feature(spec.feature)
    if not feature.is_categorical:
        if len(values) == 0:
            return np.array([], dtype=object)
        ranks = pd.qcut(pd.Series(values).rank(method="dense"), spec.buckets, labels=False, duplicates="drop")
        return np.array([f"q{int(r) + 1:02d}" for r in ranks], dtype=object)
    if feature.transform == "vocabulary" and vocabulary is not None:
        names = np.array(["(padding)"] + list(vocabulary), dtype=object)
        labels = np.where(values < len(names), names[np.minimum(values, len(names) - 1)], "(out of vocabulary)")
    else:
        kind = "hash bucket" if feature.transform == "hash" else "bucket"
        labels = np.array([f"{kind} {int(v) - 1}" for v in values], dtype=object)
    frequent = pd.Series(labels).value_counts().index[:spec.top_values]
    return np.where(np.isin(labels, frequent), labels, OTHER)


def popularity_labels(item_train_impressions: np.ndarray) -> np.ndarray:
    """Deciles of each eval row's item by its train impressions (d1 = rarest; unseen items alone)."""
    labels = np.full(len(item_train_impressions), "unseen in train", dtype=object)
    seen = item_train_impressions > 0
    if seen.any():
        deciles = pd.qcut(pd.Series(item_train_impressions[seen]).rank(method="first"), 10, labels=False)
        labels[seen] = [f"d{int(d) + 1:02d}" for d in deciles]
    return labels


def history_labels(user_train_impressions: np.ndarray) -> np.ndarray:
    """'new' for users with no train impressions (out-of-vocabulary ids included), else 'returning'."""
    return np.where(user_train_impressions > 0, "returning", "new").astype(object)


def _group_metrics(task_type: str, labels: np.ndarray, scores: np.ndarray, truth: np.ndarray | None) -> dict:
    found = {"rows": int(len(labels))}
    if task_type == "binary":
        found.update(positives=int(labels.sum()), auc=metrics.auc(labels, scores),
                     logloss=metrics.logloss(labels, scores), calibration=metrics.calibration(labels, scores))
    else:
        found.update(rmse=metrics.rmse(labels, scores) if len(labels) else float("nan"),
                     mae=metrics.mae(labels, scores) if len(labels) else float("nan"))
    if truth is not None and len(labels):
        found["truth_bias"] = float(np.mean(scores - truth))
        found["truth_mae"] = float(np.mean(np.abs(scores - truth)))
    return found


def sliced_metrics(slice_labels: np.ndarray, evaluated: list[dict]) -> dict:
    """{slice value: {output: metrics}} for one slice definition.

    `evaluated` lists each output as {name, type, labels, scores, space (bool
    mask of its sample space), truth (or None)}, over all eval rows. A slice
    value with no rows in an output's sample space gets rows 0 and NaN metrics.
    """
    codes, values = pd.factorize(pd.Series(slice_labels, dtype=object), sort=True)
    result = {str(value): {} for value in values}
    for output in evaluated:
        in_space = output["space"]
        order = np.argsort(codes[in_space], kind="stable")
        space_codes = codes[in_space][order]
        labels, scores = output["labels"][in_space][order], output["scores"][in_space][order]
        truth = output["truth"][in_space][order] if output["truth"] is not None else None
        starts = np.searchsorted(space_codes, np.arange(len(values)))
        ends = np.searchsorted(space_codes, np.arange(len(values)), side="right")
        for i, value in enumerate(values):
            part = slice(starts[i], ends[i])
            result[str(value)][output["name"]] = _group_metrics(
                output["type"], labels[part], scores[part], truth[part] if truth is not None else None)
    return result
