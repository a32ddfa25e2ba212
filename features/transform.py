"""The tf.Transform `preprocessing_fn` built from the config, and the model-input contract.

Every feature is encoded here and only here; the same graph runs in the Beam
pipeline and inside the exported SavedModel, so training and serving cannot skew.

Encoding contract (what the model receives):
- categorical features (vocabulary, hash, bucketize): int64 ids of shape [batch];
  id 0 is reserved for padding, so real ids start at 1;
- multi-valued features and behaviour sequences: int64 ids [batch, max_length],
  zero-padded, truncated to the first max_length values (sequences are most
  recent first); a sequence uses its item feature's vocabulary and embedding table;
- numeric features (zscore, log_zscore): float32 [batch];
- labels and evaluation passthroughs: float32 [batch] under their column names.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf
import tensorflow_transform as tft

from features.config import Config, Feature
from features.padding import PADDING_ID


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """One transformed input as the model sees it."""

    name: str
    kind: str  # "categorical", "multi_valued", "sequence" or "numeric"
    group: str  # "user", "item", "context" (sequences belong to "user")
    table: str | None = None  # embedding table; sequences share their item feature's
    vocabulary_size: int | None = None  # rows in the table, padding included
    embedding_dim: int | None = None
    length: int | None = None
    behavior: str | None = None


def _is_multi_valued(config: Config, feature: Feature) -> bool:
    return config.column(feature.source).type == "string_list"


def feature_kind(config: Config, feature: Feature) -> str:
    """"categorical", "multi_valued" or "numeric": how the model receives the feature."""
    if not feature.is_categorical:
        return "numeric"
    return "multi_valued" if _is_multi_valued(config, feature) else "categorical"


def _shift_ids(ids):
    """Moves ids up by one so that 0 can mean padding."""
    if isinstance(ids, tf.SparseTensor):
        return tf.SparseTensor(ids.indices, ids.values + 1, ids.dense_shape)
    return ids + 1


def _pad_to_length(ids: tf.SparseTensor, length: int) -> tf.Tensor:
    """Keeps the first `length` values of each row and zero-pads the rest."""
    batch = ids.dense_shape[0]
    kept = tf.sparse.slice(ids, [0, 0], tf.stack([batch, tf.constant(length, tf.int64)]))
    dense = tf.sparse.to_dense(kept, default_value=PADDING_ID)
    dense = tf.pad(dense, [[0, 0], [0, length - tf.shape(dense)[1]]])
    return tf.ensure_shape(dense, [None, length])


def _as_strings(values):
    if values.dtype == tf.string:
        return values
    if isinstance(values, tf.SparseTensor):
        return tf.SparseTensor(values.indices, tf.strings.as_string(values.values), values.dense_shape)
    return tf.strings.as_string(values)


class TftAnalyzers:
    """Learns every statistic with tf.Transform's analyzers: the reference path.

    `make_preprocessing_fn` asks an analyzers object for the three learned
    pieces (vocabularies, quantile buckets, z-scores); `features/precomputed.py`
    answers the same questions from statistics computed outside tf.Transform,
    so both paths share every other op of the graph.
    """

    def vocabulary(self, feature: Feature, strings):
        return tft.vocabulary(strings, top_k=feature.top_k, frequency_threshold=feature.min_frequency,
                              vocab_filename=feature.name)

    def bucketize(self, feature: Feature, values):
        return tft.bucketize(values, feature.num_buckets)

    def z_score(self, feature: Feature, values):
        return tft.scale_to_z_score(values)


def _encode_categorical(feature: Feature, values, vocabularies: dict, analyzers):
    if feature.transform == "vocabulary":
        ids = tft.apply_vocabulary(_as_strings(values), vocabularies[feature.name],
                                   num_oov_buckets=feature.oov_buckets)
    elif feature.transform == "hash":
        strings = _as_strings(values)
        if isinstance(strings, tf.SparseTensor):
            ids = tf.SparseTensor(strings.indices,
                                  tf.strings.to_hash_bucket_fast(strings.values, feature.hash_buckets),
                                  strings.dense_shape)
        else:
            ids = tf.strings.to_hash_bucket_fast(strings, feature.hash_buckets)
    else:
        ids = analyzers.bucketize(feature, tf.cast(values, tf.float32))
    return _shift_ids(ids)


def numeric_input(feature: Feature, values):
    """The value a numeric feature is scaled from (float32; log1p for log_zscore)."""
    values = tf.cast(values, tf.float32)
    if feature.transform == "log_zscore":
        # Prices and counts are heavy-tailed; negatives are clamped, log1p(0) = 0.
        values = tf.math.log1p(tf.maximum(values, 0.0))
    return values


def _learn_vocabularies(config: Config, inputs: dict, analyzers) -> dict:
    """Vocabulary files, learned on the analysis (train) split only."""
    return {feature.name: analyzers.vocabulary(feature, _as_strings(inputs[feature.source]))
            for feature in config.features if feature.transform == "vocabulary"}


def make_preprocessing_fn(config: Config, analyzers=None):
    """Builds the `preprocessing_fn` that tf.Transform analyses and applies.

    `analyzers` supplies the learned statistics: tf.Transform's own analyzers by
    default, or precomputed ones (`features.precomputed.PrecomputedAnalyzers`).
    """
    analyzers = analyzers or TftAnalyzers()

    def preprocessing_fn(inputs: dict) -> dict:
        vocabularies = _learn_vocabularies(config, inputs, analyzers)
        outputs = {}
        for feature in config.features:
            values = inputs[feature.source]
            if feature.is_categorical:
                ids = _encode_categorical(feature, values, vocabularies, analyzers)
                outputs[feature.name] = (_pad_to_length(ids, feature.max_length)
                                         if _is_multi_valued(config, feature) else ids)
            else:
                outputs[feature.name] = analyzers.z_score(feature, numeric_input(feature, values))
        for sequence in config.sequences:
            item = config.feature(sequence.item_feature)
            ids = _encode_categorical(item, inputs[sequence.column], vocabularies, analyzers)
            outputs[sequence.name] = _pad_to_length(ids, sequence.max_length)
        for column in config.label_columns + config.passthrough_columns:
            outputs[column] = tf.cast(inputs[column], tf.float32)
        return outputs

    return preprocessing_fn


def table_size(feature: Feature, vocabulary_size: int | None) -> int:
    """Embedding rows for a categorical feature: padding + ids (+ OOV buckets)."""
    if feature.transform == "vocabulary":
        return 1 + vocabulary_size + feature.oov_buckets
    if feature.transform == "hash":
        return 1 + feature.hash_buckets
    return 1 + feature.num_buckets


def model_inputs(config: Config, vocabulary_sizes: dict[str, int]) -> list[ModelInput]:
    """The model-input contract, given the learned vocabulary sizes (feature name -> size)."""
    inputs = []
    for feature in config.features:
        if not feature.is_categorical:
            inputs.append(ModelInput(feature.name, "numeric", feature.group))
            continue
        multi = _is_multi_valued(config, feature)
        inputs.append(ModelInput(
            feature.name, "multi_valued" if multi else "categorical", feature.group,
            table=feature.name, vocabulary_size=table_size(feature, vocabulary_sizes.get(feature.name)),
            embedding_dim=feature.embedding_dim, length=feature.max_length if multi else None))
    for sequence in config.sequences:
        item = config.feature(sequence.item_feature)
        inputs.append(ModelInput(
            sequence.name, "sequence", "user", table=item.name,
            vocabulary_size=table_size(item, vocabulary_sizes.get(item.name)),
            embedding_dim=item.embedding_dim, length=sequence.max_length, behavior=sequence.behavior))
    return inputs
