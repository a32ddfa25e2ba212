"""Pairwise mutual information between item features, measured in Beam on the transformed training split.

Correlated Feature Masking (Yao et al., CIKM 2021) masks a seed feature together
with the features that carry the most information about it, so the contrastive
task cannot be solved by reading a masked feature off a correlated visible one.
This step measures that correlation where the model will see it: on the
transformed training rows (vocabulary ids, hashed ids, buckets), never on eval.

Each feature's value in a row is a set of tokens: one id for a categorical
feature; the non-padding ids of a multi-valued feature, each weighted 1/count
so that every row weighs 1 (an empty list is the padding token); a numeric
feature's z-score in half-sigma bins clipped at ±3 (tf.Transform has already
standardised it, so fixed bins mean the same on every dataset and need no
second analysis pass). For single-valued features the result is exactly the
plug-in estimate `sklearn.metrics.mutual_info_score` gives, in nats.

Workers pre-aggregate joint counts per record batch with NumPy, so the shuffle
carries one small table per feature pair and batch, not one element per row.
"""
from __future__ import annotations

import collections
import itertools
import json

import apache_beam as beam
import numpy as np
import pyarrow as pa

from features.padding import PADDING_ID

NUMERIC_BIN_WIDTH = 0.5  # in standard deviations
NUMERIC_CLIP = 3.0


def _column_matrix(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """A transformed column as [rows, values per row] (1 for scalars, max_length for multi-valued)."""
    column = batch.column(batch.schema.get_field_index(name))
    if any(is_list(column.type) for is_list in (pa.types.is_list, pa.types.is_large_list,
                                                 pa.types.is_fixed_size_list)):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
    return column.to_numpy(zero_copy_only=False).reshape(-1, 1)


def feature_tokens(values: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [rows, k] int64, weights [rows, k]): each row's tokens, weights summing to 1 per row."""
    if kind == "numeric":
        clipped = np.clip(values.astype(np.float64), -NUMERIC_CLIP, NUMERIC_CLIP)
        return np.round(clipped / NUMERIC_BIN_WIDTH).astype(np.int64), np.ones(values.shape)
    tokens = values.astype(np.int64)
    present = tokens != PADDING_ID
    if kind == "multi_valued":
        present[:, 0] |= ~present.any(axis=1)  # an empty list counts once, as the padding token
    else:
        present[:] = True
    return tokens, present / present.sum(axis=1, keepdims=True)


def joint_counts(first: tuple, second: tuple) -> dict[tuple[int, int], float]:
    """Weighted co-occurrence counts of two features' tokens over the same rows."""
    (tokens_a, weights_a), (tokens_b, weights_b) = first, second
    shape = tokens_a.shape + (tokens_b.shape[1],)  # [rows, tokens of a, tokens of b]
    pairs_a = np.broadcast_to(tokens_a[:, :, None], shape).ravel()
    pairs_b = np.broadcast_to(tokens_b[:, None, :], shape).ravel()
    weights = (weights_a[:, :, None] * weights_b[:, None, :]).ravel()
    keep = weights > 0
    stacked = np.stack([pairs_a[keep], pairs_b[keep]], axis=1)
    unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=weights[keep])
    return {(int(a), int(b)): float(w) for (a, b), w in zip(unique, sums)}


def mutual_information(joint: dict[tuple[int, int], float]) -> float:
    """Plug-in mutual information (nats) of a joint count table {(a, b): count}."""
    counts = np.array(list(joint.values()), dtype=np.float64)
    total = counts.sum()
    firsts, seconds = collections.Counter(), collections.Counter()
    for (a, b), count in joint.items():
        firsts[a] += count
        seconds[b] += count
    p_joint = counts / total
    p_first = np.array([firsts[a] for a, _ in joint]) / total
    p_second = np.array([seconds[b] for _, b in joint]) / total
    return float(max(np.sum(p_joint * np.log(p_joint / (p_first * p_second))), 0.0))


def entropy(joint: dict[tuple[int, int], float], side: int) -> float:
    """Entropy (nats) of one side's marginal of a joint count table."""
    marginal = collections.Counter()
    for pair, count in joint.items():
        marginal[pair[side]] += count
    p = np.array(list(marginal.values()), dtype=np.float64)
    p /= p.sum()
    return float(-np.sum(p * np.log(p)))


class _BatchJointCounts(beam.DoFn):
    """Per transformed record batch: ((i, j), joint counts) for every pair of item features i < j."""

    def __init__(self, features: list[tuple[str, str]]):
        self._features = features  # (name, kind) in the order of the output matrix

    def process(self, batch_and_passthrough):
        batch, _ = batch_and_passthrough
        tokens = [feature_tokens(_column_matrix(batch, name), kind) for name, kind in self._features]
        for i, j in itertools.combinations(range(len(tokens)), 2):
            yield (i, j), joint_counts(tokens[i], tokens[j])


class _SumCounts(beam.CombineFn):
    def create_accumulator(self):
        return collections.Counter()

    def add_input(self, accumulator, counts):
        accumulator.update(counts)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = collections.Counter()
        for accumulator in accumulators:
            merged.update(accumulator)
        return merged

    def extract_output(self, accumulator):
        return dict(accumulator)


def mi_document(names: list[str], pair_tables: list) -> dict:
    """The JSON document: the symmetric matrix (diagonal: each feature's entropy) and the row count."""
    size = len(names)
    matrix = np.zeros((size, size))
    rows = 0.0
    for (i, j), joint in sorted(pair_tables):
        matrix[i, j] = matrix[j, i] = mutual_information(joint)
        matrix[i, i], matrix[j, j] = entropy(joint, 0), entropy(joint, 1)
        rows = sum(joint.values())
    return {"features": names, "unit": "nats", "split": "train", "rows": int(round(rows)),
            "mutual_information": [[round(float(v), 6) for v in row] for row in matrix]}


class ItemFeatureMutualInformation(beam.PTransform):
    """Transformed (record batch, passthrough) pairs → one JSON document written to `path`.

    Args:
      features: (name, kind) of each item feature, kind as in the model-input
        contract ("categorical", "multi_valued" or "numeric").
      path: the output file (exactly this name: one shard, no shard suffix).
    """

    def __init__(self, features: list[tuple[str, str]], path: str):
        super().__init__()
        self._features, self._path = list(features), path

    def expand(self, transformed):
        names = [name for name, _ in self._features]
        return (transformed
                | "PairCounts" >> beam.ParDo(_BatchJointCounts(self._features))
                | "SumPairCounts" >> beam.CombinePerKey(_SumCounts())
                | "AllPairs" >> beam.combiners.ToList()
                | "MatrixJson" >> beam.Map(lambda tables: json.dumps(mi_document(names, tables)))
                | "WriteMatrix" >> beam.io.WriteToText(self._path, shard_name_template="", num_shards=1))



def plot_mutual_information(mi_path, png_path):
    """A heatmap of the stored matrix, so the feature groups CFM masks together can be seen at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    document = json.loads(open(mi_path).read())
    names, matrix = document["features"], np.asarray(document["mutual_information"])
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.0 * len(names) + 1.5))
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i, j in itertools.product(range(len(names)), repeat=2):
        ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(image, ax=ax, label="nats (diagonal: entropy)")
    ax.set_title(f"Item feature mutual information, train split ({document['rows']} rows)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
