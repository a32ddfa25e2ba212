"""Label leakage: a feature that is the label, or was derived from it, in disguise.

The config already refuses a task's label column as a feature. This check looks
at the data: on a sample of validated training rows it refuses any feature
that determines a binary label, in one of two ways:

- a numeric feature whose single-feature AUC against the label is at least
  `min_auc` (0.999) in either direction: a copy, a scaled copy or a monotone
  function of the label (rows with a missing value are left out);
- a feature with far fewer distinct values than rows (at most
  `max_distinct_fraction` of them) whose every value is pure, all positives or
  all negatives: a bucket, a code or a text derived from the label.

An honest id (nearly one row per value) is pure trivially and says nothing, so
it is exempt from the second test. A label is judged within its task's sample
space (CVR on clicked rows), and only when each class has at least
`min_class_rows` rows: with fewer, a perfect split happens by chance.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.config import Config, Task
from features.errors import RecsysError


class LeakageError(RecsysError):
    """A feature determines a label; the message names the feature, its column and the label."""


def check_label_leakage(config: Config, rows: list[dict], max_rows: int = 50_000, min_auc: float = 0.999,
                        max_distinct_fraction: float = 0.1, min_class_rows: int = 10) -> None:
    """Raises LeakageError listing every (feature, label) pair where the feature determines the label."""
    sample = pd.DataFrame.from_records(rows[:max_rows])
    findings = []
    for task in config.tasks:
        if task.type != "binary" or sample.empty:
            continue
        space = _sample_space(config, task, sample)
        labels = space[task.label].to_numpy(dtype=np.int64)
        if min(int(labels.sum()), int(len(labels) - labels.sum())) < min_class_rows:
            continue
        for feature in config.features:
            if feature.source not in space:
                continue
            values = space[feature.source]
            reason = (_numeric_leak(values, labels, min_auc)
                      or _pure_values_leak(values, labels, max_distinct_fraction))
            if reason:
                findings.append(f"feature '{feature.name}' (column '{feature.source}') determines label "
                                f"'{task.label}' of task '{task.name}': {reason}")
    if findings:
        raise LeakageError(f"label leakage on {len(sample):,} training rows:\n  " + "\n  ".join(findings)
                           + "\na label, or a column derived from it, must not be a feature: "
                             "remove these features or fix the columns they read")


def _sample_space(config: Config, task: Task, rows: pd.DataFrame) -> pd.DataFrame:
    if task.sample_space is None:
        return rows
    return rows[rows[config.task(task.sample_space).label] == 1]


def _numeric_leak(values: pd.Series, labels: np.ndarray, min_auc: float) -> str | None:
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return None
    known = values.notna().to_numpy()
    known_labels = labels[known]
    if known_labels.min(initial=1) == known_labels.max(initial=0):
        return None
    auc = single_feature_auc(values.to_numpy(dtype=np.float64)[known], known_labels)
    if max(auc, 1.0 - auc) >= min_auc:
        return f"its single-feature AUC is {auc:.4f}"
    return None


def single_feature_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of ranking by `scores`, tied scores sharing their mean rank (scikit-learn's)."""
    return float(roc_auc_score(labels, scores))


def _pure_values_leak(values: pd.Series, labels: np.ndarray, max_distinct_fraction: float) -> str | None:
    if values.dtype == object:
        values = values.map(lambda v: tuple(v) if isinstance(v, list) else v)  # lists are not hashable
    classes = pd.Series(labels, index=values.index).groupby(values, dropna=False).nunique()
    if len(classes) > max_distinct_fraction * len(values):
        return None  # id-like: purity is what one row per value gives anyway
    if (classes == 1).all():
        return (f"each of its {len(classes)} values occurs with one label value only "
                f"({len(values):,} rows, both classes present)")
    return None
