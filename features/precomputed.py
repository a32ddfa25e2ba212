"""Analyzer results computed outside tf.Transform, baked into the same transform graph.

The columnar pipeline (`pipelines/columnar/`) learns vocabularies, quantile
boundaries and means/variances with Arrow in one streaming pass. These
`PrecomputedAnalyzers` hand those results to `make_preprocessing_fn` in place of
tf.Transform's analyzers, so the exported `transform_fn` runs exactly the ops the
reference path runs (`tft.apply_vocabulary`, `tft.apply_buckets`, TFT's z-score
formula) with the learned values as constants, and serving needs nothing new.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow as tf
import tensorflow_transform as tft

from features.config import Feature


@dataclasses.dataclass(frozen=True)
class AnalysisResults:
    """What the analysis pass learned on the train split, per feature name."""

    vocabulary_files: dict[str, Path]  # text files, one token per line, TFT's order
    bucket_boundaries: dict[str, list[float]]  # num_buckets - 1 boundaries (float32 values)
    moments: dict[str, tuple[float, float]]  # (mean, variance) as float32 values


class PrecomputedAnalyzers:
    """Answers `make_preprocessing_fn`'s analyzer calls from `AnalysisResults`."""

    def __init__(self, results: AnalysisResults):
        self._results = results

    def vocabulary(self, feature: Feature, strings):
        # An eager tensor, captured by the traced function, registered as an asset:
        # tf.Transform makes it a `tf.saved_model.Asset`, and saving then both copies
        # the file into transform_fn/assets/ and points the lookup table at that copy
        # (as for the vocabularies tf.Transform writes itself). A path constant made
        # inside the trace would be copied too, but the table would keep reading the
        # original file, which is gone once the engine's temporary directory is.
        with tf.init_scope():
            path = tf.constant(str(self._results.vocabulary_files[feature.name]))
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.ASSET_FILEPATHS, path)
        return path

    def bucketize(self, feature: Feature, values):
        boundaries = tf.constant([self._results.bucket_boundaries[feature.name]], tf.float32)
        return tft.apply_buckets(values, boundaries)

    def z_score(self, feature: Feature, values):
        # tf.Transform's `scale_to_z_score`: a constant input is only centred.
        mean, variance = self._results.moments[feature.name]
        numerator = values - tf.constant(mean, tf.float32)
        denominator = tf.sqrt(tf.constant(variance, tf.float32))
        return tf.where(tf.not_equal(denominator, 0), tf.divide(numerator, denominator), numerator)
