"""Streaming analyzers over Arrow batches, defined as tf.Transform defines them.

- vocabulary (`tft.vocabulary`): tokens counted on the train split; empty tokens
  and tokens holding a newline are left out (they cannot live in a text file);
  ordered by count, then by token bytes, both descending; `frequency_threshold`
  keeps counts >= min_frequency; `top_k` keeps the first k; an empty vocabulary
  holds TFT's one dummy token so lookup tables still build.
- quantiles (`tft.bucketize`): the same tfx_bsl C++ quantile sketch with TFT's
  epsilon, num_buckets + 1 quantiles with the min and max trimmed.
- moments (`tft.scale_to_z_score`): count, mean and variance (population), merged
  batch by batch with Chan's formula in float64, returned as float32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tensorflow_transform import analyzers as tft_analyzers
from tfx_bsl import sketches

from features.config import Config, Feature
from features.precomputed import AnalysisResults
from features.transform import numeric_input

_NO_NEWLINES = r"[\n\r]"
_COMPACT_EVERY = 32  # partial counts held before they are merged into one table


class VocabularyCounter:
    """Token counts over batches, merged with Arrow group-by so memory is one row per distinct token."""

    def __init__(self, feature: Feature):
        self._feature = feature
        self._partials: list[pa.Table] = []

    def update(self, values: pa.Array):
        if pa.types.is_list(values.type):
            values = pc.list_flatten(values)
        if not pa.types.is_string(values.type):
            values = pc.cast(values, pa.string())
        keep = pc.and_(pc.not_equal(values, ""), pc.invert(pc.match_substring_regex(values, _NO_NEWLINES)))
        counts = pc.value_counts(values.filter(keep))
        self._partials.append(pa.table({"token": counts.field("values"), "count": counts.field("counts")}))
        if len(self._partials) >= _COMPACT_EVERY:
            self._partials = [self._merged()]

    def _merged(self) -> pa.Table:
        if not self._partials:
            return pa.table({"token": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
        merged = pa.concat_tables(self._partials).group_by("token").aggregate([("count", "sum")])
        return merged.rename_columns(["token", "count"])

    def tokens(self) -> list[bytes]:
        """The vocabulary in tf.Transform's order, after its threshold and top_k."""
        table = self._merged()
        table = table.set_column(0, "token", table.column("token").cast(pa.binary()))
        table = table.filter(pc.greater_equal(table.column("count"), self._feature.min_frequency))
        order = pc.sort_indices(table, sort_keys=[("count", "descending"), ("token", "descending")])
        tokens = table.column("token").take(order).to_pylist()
        if self._feature.top_k is not None:
            tokens = tokens[:self._feature.top_k]
        return tokens or [tft_analyzers.get_empy_vocabulary_dummy_value("string")[1]]

    def write(self, path: Path) -> Path:
        path.write_bytes(b"".join(token + b"\n" for token in self.tokens()))
        return path


class Moments:
    """Count, mean and sum of squared deviations, merged batch by batch (Chan et al.)."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values: np.ndarray):
        if not len(values):
            return
        values = values.astype(np.float64)
        count, mean = len(values), float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.m2 += m2 + delta * delta * self.count * count / total
        self.count = total

    def result(self) -> tuple[float, float]:
        variance = self.m2 / self.count if self.count else 0.0
        return float(np.float32(self.mean)), float(np.float32(variance))


class Quantiles:
    """tf.Transform's bucket boundaries from the same tfx_bsl quantile sketch."""

    def __init__(self, num_buckets: int):
        self._num_buckets = num_buckets
        epsilon = min(1.0 / num_buckets, 0.01)  # tft.bucketize's default
        self._sketch = sketches.QuantilesSketch(epsilon, 1 << 32, 1)

    def update(self, values: np.ndarray):
        self._sketch.AddValues(pa.array(values.astype(np.float32)))

    def boundaries(self) -> list[float]:
        quantiles = self._sketch.GetQuantiles(self._num_buckets).to_pylist()
        if not quantiles or not quantiles[0]:
            return [0.0] * (self._num_buckets - 1)
        return np.asarray(quantiles[0][1:-1], np.float32).tolist()


def numeric_values(feature: Feature, values: pa.Array) -> np.ndarray:
    """What the graph scales or buckets, computed by the graph's own ops (float32, log1p)."""
    return numeric_input(feature, tf.constant(values.to_numpy())).numpy()


class TrainAnalyzers:
    """Every analyzer the config needs, fed with the train split's batches."""

    def __init__(self, config: Config):
        self._config = config
        self._vocabularies = {f.name: VocabularyCounter(f) for f in config.features if f.transform == "vocabulary"}
        self._quantiles = {f.name: Quantiles(f.num_buckets) for f in config.features if f.transform == "bucketize"}
        self._moments = {f.name: Moments() for f in config.features if f.transform in ("zscore", "log_zscore")}

    def update(self, train: pa.Table):
        for feature in self._config.features:
            column = pa.concat_arrays(train.column(feature.source).chunks) if train.num_rows else None
            if column is None:
                continue
            if feature.name in self._vocabularies:
                self._vocabularies[feature.name].update(column)
            elif feature.name in self._quantiles:
                self._quantiles[feature.name].update(numeric_values(feature, column))
            elif feature.name in self._moments:
                self._moments[feature.name].update(numeric_values(feature, column))

    def results(self, vocabulary_dir: Path) -> AnalysisResults:
        """Writes the vocabulary files (named after their features) and returns every result."""
        vocabulary_dir.mkdir(parents=True, exist_ok=True)
        return AnalysisResults(
            vocabulary_files={name: counter.write(vocabulary_dir / name)
                              for name, counter in self._vocabularies.items()},
            bucket_boundaries={name: q.boundaries() for name, q in self._quantiles.items()},
            moments={name: m.result() for name, m in self._moments.items()})
