"""Item feature augmentation for the self-supervised task (Yao et al., CIKM 2021).

Two views of an item hide complementary sets of its features. Which set view
one hides is drawn once per batch:

- Random Feature Masking (RFM): a uniformly random subset;
- Correlated Feature Masking (CFM): a uniformly random seed feature and the
  features with the highest mutual information with it, so that a hidden
  feature cannot be read off a correlated visible one.

View two hides the rest. Multi-valued features also lose each value with a
fixed probability, independently per view. A hidden feature is replaced by a
learned default embedding in `ItemTower`. Every draw comes from the caller's
`tf.random.Generator`, whose state checkpoints carry (recsys.random_streams).
"""
from __future__ import annotations

import tensorflow as tf

from features.padding import PADDING_ID
from recsys.layers.mlp import MLP


def random_feature_mask(num_features: int, num_masked: int, rng: tf.random.Generator) -> tf.Tensor:
    """[num_features] bool: `num_masked` features chosen uniformly at random (RFM)."""
    chosen = tf.argsort(rng.uniform([num_features]))[:num_masked]
    return tf.reduce_any(tf.one_hot(chosen, num_features, on_value=True, off_value=False, dtype=tf.bool), axis=0)


def correlated_feature_mask(mutual_information: tf.Tensor, num_masked: int, rng: tf.random.Generator) -> tf.Tensor:
    """[num_features] bool: a random seed feature plus its `num_masked - 1` top partners by MI (CFM)."""
    num_features = tf.shape(mutual_information)[0]
    seed = rng.uniform([], 0, num_features, dtype=tf.int32)
    is_seed = tf.equal(tf.range(num_features), seed)
    partner_scores = tf.where(is_seed, tf.constant(float("-inf"), mutual_information.dtype),
                              tf.gather(mutual_information, seed))
    _, partners = tf.math.top_k(partner_scores, k=num_masked - 1)
    is_partner = tf.reduce_any(tf.equal(tf.range(num_features)[:, None], partners[None, :]), axis=1)
    return is_seed | is_partner


def drop_values(ids: tf.Tensor, rate: float, rng: tf.random.Generator) -> tf.Tensor:
    """Multi-valued ids [batch, length] with each value replaced by padding with probability `rate`."""
    if rate <= 0.0:
        return ids
    dropped = rng.uniform(tf.shape(ids)) < rate
    return tf.where(dropped, tf.constant(PADDING_ID, ids.dtype), ids)


class ItemTower(tf.keras.layers.Layer):
    """Item feature fields → one L2-normalised embedding; a masked field takes its learned default.

    Args:
      field_dims: [(feature name, field width)] in a fixed order (the order of the masks).
      units: the MLP; the last entry is the embedding size (a linear layer).

    Example: `ItemTower([("item_id", 16), ("item_price", 1)], [64, 32])(fields, masked)`
    maps a dict of [batch, width] fields and a [2] bool mask to [batch, 32] unit vectors.
    """

    def __init__(self, field_dims: list, units: list[int], activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        self.field_dims = [(str(name), int(dim)) for name, dim in field_dims]
        self.units, self.activation = list(units), activation
        self._hidden = MLP(self.units[:-1], activation, name="hidden")
        self._output = tf.keras.layers.Dense(self.units[-1], name="output")

    def build(self, input_shape=None):
        self.defaults = [self.add_weight(name=f"{name}_default", shape=(dim,),
                                         initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
                         for name, dim in self.field_dims]
        super().build(input_shape)

    def call(self, fields: dict, masked: tf.Tensor, training=None) -> tf.Tensor:
        parts = []
        for i, (name, _) in enumerate(self.field_dims):
            field = fields[name]
            default = tf.broadcast_to(tf.cast(self.defaults[i], field.dtype), tf.shape(field))
            parts.append(tf.where(masked[i], default, field))
        hidden = self._hidden(tf.concat(parts, axis=-1), training=training)
        return tf.math.l2_normalize(self._output(hidden), axis=-1)

    def get_config(self):
        return {**super().get_config(), "field_dims": [list(f) for f in self.field_dims], "units": self.units,
                "activation": self.activation}
