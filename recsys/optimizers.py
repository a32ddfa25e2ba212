"""The optimiser choice: Adam, or lazy Adam for embedding tables too big to update whole every step.

tf-keras' Adam applies a sparse (IndexedSlices) gradient like a dense one: it
decays the first and second moments of every row of the table and moves every
row, each step, whatever the batch looked up. The step's cost therefore grows
with the table, and the tables grow with the data (one row per user and per
item): on the generated feed, 10M rows give a 1.07M-row item-and-user table,
and each step then reads and writes it several times over.

Lazy Adam updates only the rows the batch looked up: their moments decay and
take the gradient, and only they move. A row that was not looked up keeps its
moments until it is, which is what makes the step's cost follow the batch
rather than the table. That is not the same optimiser as Adam for sparse
gradients (an idle row neither decays nor drifts on its old momentum), the
trade that TensorFlow Addons' `LazyAdam` and most large-scale recommender
trainers make; dense gradients are updated exactly as Adam updates them.
TensorFlow Addons is no longer maintained and does not install beside
TensorFlow 2.21, so the update is written here.
"""
from __future__ import annotations

import tensorflow as tf


class LazyAdam(tf.keras.optimizers.Adam):
    """Adam whose sparse updates touch only the looked-up rows (see the module docstring)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name="LazyAdam", **kwargs):
        if kwargs.get("amsgrad"):
            raise ValueError("LazyAdam does not support amsgrad")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, name=name,
                         **kwargs)

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        # apply_gradients has already summed duplicate indices, so each row appears once.
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = (tf.cast(self.learning_rate, dtype) * tf.sqrt(1 - tf.pow(beta_2, step))
                 / (1 - tf.pow(beta_1, step)))
        epsilon = self.epsilon * tf.sqrt(1 - tf.pow(beta_2, step)) if self.adaptive_epsilon else self.epsilon
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        rows = gradient.indices
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * gradient.values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(gradient.values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))


_OPTIMIZERS = {"adam": tf.keras.optimizers.Adam, "lazy_adam": LazyAdam}  # the names `training.optimizer` takes


def make_optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
    """The configured optimiser (`training.optimizer`)."""
    if name not in _OPTIMIZERS:
        raise ValueError(f"training.optimizer: unknown optimiser '{name}'; expected one of {', '.join(_OPTIMIZERS)}")
    return _OPTIMIZERS[name](learning_rate)
