"""A stack of dense layers, the building block of bottoms, experts and towers."""
from __future__ import annotations

import tensorflow as tf

from recsys.random_streams import checkpointed_generator


class MLP(tf.keras.layers.Layer):
    """Dense → activation (→ dropout) for each entry of `units`.

    Dropout draws from a generator the checkpoints carry (recsys.random_streams),
    so a run resumed from its backup drops the units an uninterrupted run drops.

    Example: `MLP([256, 128], dropout=0.1)(x)` maps [batch, d] to [batch, 128].
    """

    def __init__(self, units: list[int], activation: str = "relu", dropout: float = 0.0,
                 l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.activation, self.dropout, self.l2 = list(units), activation, dropout, l2
        regularizer = tf.keras.regularizers.l2(l2) if l2 else None
        self._dense_layers = [tf.keras.layers.Dense(n, activation=activation, kernel_regularizer=regularizer)
                              for n in self.units]
        self._dropout_noise = checkpointed_generator() if dropout else None

    def call(self, inputs, training=None):
        outputs = inputs
        for dense in self._dense_layers:
            outputs = dense(outputs)
            if self._dropout_noise is not None and training:
                outputs = tf.nn.experimental.general_dropout(outputs, self.dropout,
                                                             uniform_sampler=self._dropout_noise.uniform)
        return outputs

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "dropout": self.dropout, "l2": self.l2}
