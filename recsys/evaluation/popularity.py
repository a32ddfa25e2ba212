"""Sliced evaluation by item popularity: head, torso and tail items by training impressions.

Items are ranked by how often the training split shows them. The head is the
most shown items that together take the first `head_share` of training
impressions, the torso the next `torso_share`, the tail the rest, together with
items never shown in training. A long-tail method should move the tail's AUC,
which an overall AUC dominated by head traffic hides.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from recsys.evaluation import metrics

BUCKETS = ("head", "torso", "tail")


def impression_counts(dataset: tf.data.Dataset, item: str) -> dict[int, int]:
    """Impressions per item id over a dataset of batches holding the `item` feature."""
    counts: dict[int, int] = {}
    for batch in dataset:
        for key, count in zip(*np.unique(batch[item].numpy(), return_counts=True)):
            counts[int(key)] = counts.get(int(key), 0) + int(count)
    return counts


def popularity_buckets(counts: dict[int, int], head_share: float = 0.5, torso_share: float = 0.3) -> dict:
    """Item id → "head", "torso" or "tail" by cumulative share of impressions, most shown first."""
    if not 0 < head_share < head_share + torso_share < 1:
        raise ValueError(f"need 0 < head_share < head_share + torso_share < 1, got {head_share}, {torso_share}")
    items = sorted(counts, key=lambda key: (-counts[key], key))
    shown = np.array([counts[key] for key in items], dtype=np.float64)
    share_before = (np.cumsum(shown) - shown) / max(shown.sum(), 1.0)  # impressions of more popular items
    buckets = np.where(share_before < head_share, "head",
                       np.where(share_before < head_share + torso_share, "torso", "tail"))
    return dict(zip(items, buckets.tolist()))


def bucket_of(item_ids: np.ndarray, buckets: dict) -> np.ndarray:
    """Each id's bucket; ids the training split never showed are tail."""
    return np.array([buckets.get(int(i), "tail") for i in item_ids], dtype=object)


def auc_by_bucket(labels: np.ndarray, scores: np.ndarray, row_buckets: np.ndarray,
                  sample_space: np.ndarray | None = None) -> dict:
    """{bucket: {"rows", "positives", "auc"}} over the rows in the sample space (all rows if None)."""
    in_space = np.ones(len(labels), bool) if sample_space is None else sample_space > 0
    result = {}
    for bucket in BUCKETS:
        rows = in_space & (row_buckets == bucket)
        result[bucket] = {"rows": int(rows.sum()), "positives": int(labels[rows].sum()),
                          "auc": metrics.auc(labels[rows], scores[rows])}
    return result
