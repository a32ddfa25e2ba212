"""Offline batch scoring of transformed features with one XLA-compiled forward pass of a fixed batch size.

Keras `predict` runs the model op by op through its generic predict loop; for
scoring millions of rows (daily candidate refreshes, backfills) XLA fuses the
embedding gathers, expert and tower matmuls and gates into a few kernels.
XLA compiles once per input shape, so every batch is padded to the same
`batch_size` (padding rows are id 0 / value 0, scored and dropped): one
compilation for the whole job, however many rows. Rows are independent in
every model here (no batch statistics at inference), so padding never changes
a real row's score. Scores equal Keras' to float rounding (XLA may fuse
additions in another order): about 1e-7.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow as tf


class BatchScorer:
    """Scores dicts of transformed feature arrays (the model-input contract) in fixed-size XLA batches."""

    def __init__(self, model: tf.keras.Model, batch_size: int = 8192, jit_compile: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self._forward = tf.function(lambda features: model(features, training=False), jit_compile=jit_compile)

    def _padded_batches(self, features: Mapping[str, np.ndarray]) -> Iterator[tuple[dict, int]]:
        for start in range(0, _rows(features), self.batch_size):
            batch = {name: values[start:start + self.batch_size] for name, values in features.items()}
            real = len(next(iter(batch.values())))
            if real < self.batch_size:
                batch = {name: np.concatenate([values, np.zeros((self.batch_size - real,) + values.shape[1:],
                                                                values.dtype)])
                         for name, values in batch.items()}
            yield batch, real

    def score(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output's scores for all rows of `features` (name → array with the rows on axis 0)."""
        outputs: dict[str, list[np.ndarray]] = {}
        for batch, real in self._padded_batches(features):
            for name, values in self._forward(batch).items():
                outputs.setdefault(name, []).append(values.numpy()[:real])
        return {name: np.concatenate(parts) for name, parts in outputs.items()}


def _rows(features: Mapping[str, np.ndarray]) -> int:
    if not features:
        raise ValueError("no features to score")
    lengths = {name: len(values) for name, values in features.items()}
    if len(set(lengths.values())) > 1:
        first = next(iter(lengths))
        odd = [name for name, length in lengths.items() if length != lengths[first]]
        raise ValueError(f"features have different row counts: {odd[0]} has {lengths[odd[0]]} rows, "
                         f"{first} has {lengths[first]}")
    return next(iter(lengths.values()))
