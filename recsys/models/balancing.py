"""Combining task losses: fixed weights, learned uncertainty weights, or PCGrad.

- fixed: sum of the config's task weights times task losses.
- uncertainty (Kendall, Gal & Cipolla, CVPR 2018): each task k learns a log
  variance s_k; the loss is sum_k 0.5·exp(-s_k)·L_k + 0.5·s_k, so noisy tasks
  are down-weighted and no weight collapses to zero.
- pcgrad (Yu et al., NeurIPS 2020): per-task gradients are computed separately;
  where two conflict (negative inner product) each is projected onto the
  normal plane of the other before they are summed.
"""
from __future__ import annotations

import tensorflow as tf


def uncertainty_weighted(losses: dict[str, tf.Tensor], log_variances: dict[str, tf.Variable]) -> tf.Tensor:
    return tf.add_n([0.5 * tf.exp(-log_variances[name]) * loss + 0.5 * log_variances[name]
                     for name, loss in losses.items()])


def pcgrad_combine(task_gradients: tf.Tensor, rng: tf.random.Generator) -> tf.Tensor:
    """Sums per-task gradients [tasks, parameters] after PCGrad's pairwise projections.

    Each task's gradient is projected against every other task's original
    gradient, in a random order, whenever they conflict. A task's own gradient
    never conflicts with itself (its inner product is not negative), so the
    shuffled order can include it. The orders come from `rng`, whose state
    checkpoints carry, so a resumed run projects in the same orders.
    """
    num_tasks = task_gradients.shape[0]
    projected = []
    for i in range(num_tasks):
        gradient = task_gradients[i]
        for j in tf.unstack(tf.argsort(rng.uniform([num_tasks])), num=num_tasks):
            other = tf.gather(task_gradients, j)
            conflict = tf.minimum(tf.reduce_sum(gradient * other), 0.0)
            gradient -= conflict / (tf.reduce_sum(other * other) + 1e-12) * other
        projected.append(gradient)
    return tf.add_n(projected)


def flatten_gradients(gradients: list, variables: list) -> tf.Tensor:
    """One vector per task: missing gradients (a task not using a variable) count as zeros."""
    parts = [tf.reshape(tf.convert_to_tensor(g) if g is not None else tf.zeros_like(v), [-1])
             for g, v in zip(gradients, variables)]
    return tf.concat(parts, axis=0)


def unflatten_gradients(vector: tf.Tensor, variables: list) -> list[tf.Tensor]:
    sizes = [v.shape.num_elements() for v in variables]
    return [tf.reshape(part, v.shape) for part, v in zip(tf.split(vector, sizes), variables)]
