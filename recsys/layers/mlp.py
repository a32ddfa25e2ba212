"""A stack of dense layers, the building block of bottoms, experts and towers."""
from __future__ import annotations

import tensorflow as tf


class MLP(tf.keras.layers.Layer):
    """Dense → activation (→ dropout) for each entry of `units`.

    Example: `MLP([256, 128], dropout=0.1)(x)` maps [batch, d] to [batch, 128].
    """

    def __init__(self, units: list[int], activation: str = "relu", dropout: float = 0.0,
                 l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.activation, self.dropout, self.l2 = list(units), activation, dropout, l2
        regularizer = tf.keras.regularizers.l2(l2) if l2 else None
        self._dense_layers = [tf.keras.layers.Dense(n, activation=activation, kernel_regularizer=regularizer)
                              for n in self.units]
        self._dropout_layers = [tf.keras.layers.Dropout(dropout) for _ in self.units] if dropout else []

    def call(self, inputs, training=None):
        outputs = inputs
        for i, dense in enumerate(self._dense_layers):
            outputs = dense(outputs)
            if self._dropout_layers:
                outputs = self._dropout_layers[i](outputs, training=training)
        return outputs

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "dropout": self.dropout, "l2": self.l2}
