"""DTRN's task-specific bottom (Bi et al., CIKM 2023): each task gets its own input representation.

Two modules, as in the paper:

- Task-specific interest: one sequence encoder is shared by every (task,
  behaviour type) pair but specialised by a small hypernetwork that reads the
  task's and the behaviour type's embeddings, so "items the user clicked" can
  mean something different to the CTR task than to the CVR task. The encoder
  attends from the target item over the behaviour sequence (padding masked).
- Task-specific refinement: a SENet per task squeezes each feature field to
  one number, excites them through a bottleneck, and re-weights the fields.

Task k's bottom output is its re-weighted fields concatenated with its interest
vectors, one per behaviour type; MMoE, PLE or AdaTT can sit on top.
"""
from __future__ import annotations

import tensorflow as tf

from features.transform import PADDING_ID


class HyperAttentionInterest(tf.keras.layers.Layer):
    """Target attention over a behaviour sequence, specialised per (task, behaviour) by a hypernetwork.

    The shared scorer is MLP([h, t, h*t, h-t]) for history item h and target t;
    the hypernetwork maps [task embedding, behaviour embedding] to a scale on the
    scorer's hidden units and a scale on the value vectors.
    """

    def __init__(self, num_tasks: int, num_behaviors: int, attention_units: int = 32,
                 context_dim: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks, self.num_behaviors = num_tasks, num_behaviors
        self.attention_units, self.context_dim = attention_units, context_dim
        self.task_embedding = tf.keras.layers.Embedding(num_tasks, context_dim, name="task_embedding")
        self.behavior_embedding = tf.keras.layers.Embedding(num_behaviors, context_dim, name="behavior_embedding")
        self.scorer_hidden = tf.keras.layers.Dense(attention_units, name="scorer_hidden")
        self.scorer_output = tf.keras.layers.Dense(1, use_bias=False, name="scorer_output")

    def build(self, input_shape):
        item_dim = input_shape[0][-1]
        # Starts as the identity specialisation (scales of 1), so training begins from the shared encoder.
        self.hypernetwork = tf.keras.layers.Dense(self.attention_units + item_dim, kernel_initializer="zeros",
                                                  bias_initializer="zeros", name="hypernetwork")
        super().build(input_shape)

    def specialisation(self, task: int, behavior: int) -> tuple[tf.Tensor, tf.Tensor]:
        """(hidden-unit scale, value scale) for one task and behaviour type."""
        context = tf.concat([self.task_embedding(tf.constant([task])),
                             self.behavior_embedding(tf.constant([behavior]))], axis=-1)
        generated = 1.0 + self.hypernetwork(context)[0]
        return generated[:self.attention_units], generated[self.attention_units:]

    def call(self, inputs, task: int, behavior: int):
        """inputs = (history [batch, length, dim], mask [batch, length], target [batch, dim]) → [batch, dim]."""
        history, mask, target = inputs
        hidden_scale, value_scale = self.specialisation(task, behavior)
        target_tiled = tf.broadcast_to(target[:, None, :], tf.shape(history))
        pairs = tf.concat([history, target_tiled, history * target_tiled, history - target_tiled], axis=-1)
        scores = tf.squeeze(self.scorer_output(tf.nn.relu(self.scorer_hidden(pairs) * hidden_scale)), -1)
        scores = tf.where(mask, scores, tf.fill(tf.shape(scores), -1e9))
        weights = tf.nn.softmax(scores, axis=-1) * tf.cast(mask, scores.dtype)  # empty rows: all zero
        return tf.reduce_sum(weights[..., None] * history * value_scale, axis=1)

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "num_behaviors": self.num_behaviors,
                "attention_units": self.attention_units, "context_dim": self.context_dim}


class FieldReweighting(tf.keras.layers.Layer):
    """SENet over feature fields: squeeze each field to its mean, excite, scale the field by the result."""

    def __init__(self, num_fields: int, reduction: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.num_fields, self.reduction = num_fields, reduction
        self.squeeze_to = tf.keras.layers.Dense(max(1, num_fields // reduction), activation="relu")
        self.excite = tf.keras.layers.Dense(num_fields, activation="sigmoid")

    def field_weights(self, fields: list[tf.Tensor]) -> tf.Tensor:
        summary = tf.stack([tf.reduce_mean(field, axis=-1) for field in fields], axis=-1)
        # sigmoid in (0, 1), doubled so that an untrained layer keeps fields near their scale
        return 2.0 * self.excite(self.squeeze_to(summary))

    def call(self, fields: list[tf.Tensor]) -> tf.Tensor:
        weights = self.field_weights(fields)
        return tf.concat([field * weights[:, i:i + 1] for i, field in enumerate(fields)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "num_fields": self.num_fields, "reduction": self.reduction}


class DTRNBottom(tf.keras.layers.Layer):
    """Per task: SENet-refined fields ⊕ one hypernetwork-specialised interest vector per behaviour sequence.

    `sequences` names the behaviour sequences and `target` the candidate item
    input whose embedding table they share.
    """

    def __init__(self, num_tasks: int, field_names: list[str], sequences: list[str], target: str,
                 attention_units: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks, self.field_names, self.sequences = num_tasks, list(field_names), list(sequences)
        self.target, self.attention_units = target, attention_units
        self.interest = HyperAttentionInterest(num_tasks, len(self.sequences), attention_units, name="interest")
        self.refinements = [FieldReweighting(len(self.field_names), name=f"task{k}_senet")
                            for k in range(num_tasks)]

    def call(self, fields: dict, sequence_embeddings: dict) -> list[tf.Tensor]:
        """fields: name → [batch, dim]; sequence_embeddings: name → ([batch, length, dim], ids)."""
        field_list = [fields[name] for name in self.field_names]
        outputs = []
        for task in range(self.num_tasks):
            parts = [self.refinements[task](field_list)]
            for behavior, name in enumerate(self.sequences):
                history, ids = sequence_embeddings[name]
                parts.append(self.interest((history, tf.not_equal(ids, PADDING_ID), fields[self.target]), task, behavior))
            outputs.append(tf.concat(parts, axis=-1))
        return outputs

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "field_names": self.field_names,
                "sequences": self.sequences, "target": self.target, "attention_units": self.attention_units}
