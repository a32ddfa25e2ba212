"""Embedding of every transformed model input into one dense vector per example."""
from __future__ import annotations

import tensorflow as tf

from features.transform import PADDING_ID


def masked_mean(embeddings: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    """Mean over the non-padding positions of [batch, length, dim]; zeros for an empty row."""
    mask = tf.cast(tf.not_equal(ids, PADDING_ID), embeddings.dtype)[..., None]
    total = tf.reduce_sum(embeddings * mask, axis=1)
    return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


class FeatureEmbedding(tf.keras.layers.Layer):
    """Looks up, pools and concatenates the inputs described by the model-input contract.

    `model_inputs` is the list written by the pipeline's manifest (see
    `features.transform.ModelInput`): categorical ids get an embedding;
    multi-valued features and behaviour sequences are mean-pooled over their
    non-padding ids; a sequence shares its item feature's table, so an item
    clicked in the past and the candidate item are embedded the same way;
    numeric features (already standardised by tf.Transform) pass through.
    """

    def __init__(self, model_inputs: list[dict], l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.model_inputs = [dict(spec) for spec in model_inputs]
        self.l2 = l2
        self._tables = {}
        for spec in self.model_inputs:
            if spec["kind"] != "numeric" and spec["table"] not in self._tables:
                self._tables[spec["table"]] = tf.keras.layers.Embedding(
                    spec["vocabulary_size"], spec["embedding_dim"],
                    embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05),
                    embeddings_regularizer=tf.keras.regularizers.l2(l2) if l2 else None,
                    name=f"{spec['table']}_embedding")

    def field_embeddings(self, features: dict, names: list[str] | None = None) -> dict[str, tf.Tensor]:
        """One vector per input, keyed by input name: [batch, dim] (numeric: [batch, 1]).

        `names` restricts it to some inputs (the item tower embeds item features only).
        """
        fields = {}
        for spec in self.model_inputs:
            if names is not None and spec["name"] not in names:
                continue
            values = features[spec["name"]]
            if spec["kind"] == "numeric":
                fields[spec["name"]] = tf.reshape(tf.cast(values, tf.float32), [-1, 1])
            elif spec["kind"] == "categorical":
                fields[spec["name"]] = self._tables[spec["table"]](tf.reshape(values, [-1]))
            else:
                fields[spec["name"]] = masked_mean(self._tables[spec["table"]](values), values)
        return fields

    def sequence_embeddings(self, features: dict) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
        """Unpooled behaviour sequences: name → (embeddings [batch, length, dim], ids [batch, length])."""
        return {spec["name"]: (self._tables[spec["table"]](features[spec["name"]]), features[spec["name"]])
                for spec in self.model_inputs if spec["kind"] == "sequence"}

    def call(self, features: dict) -> tf.Tensor:
        return tf.concat(list(self.field_embeddings(features).values()), axis=-1)

    def get_config(self):
        return {**super().get_config(), "model_inputs": self.model_inputs, "l2": self.l2}
