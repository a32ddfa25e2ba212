"""DTRN's task-specific bottom (Liu, Zhou, Jiang, Ge, Lian, CIKM 2023, arXiv 2308.05996).

"Deep Task-specific Bottom Representation Network for Multi-Task
Recommendation": instead of one bottom representation that every task pulls
its own way, each task gets its own, from two modules:

- Task-specific Interest Module (TIM): every behaviour sequence (clicks,
  carts, purchases, ...) is encoded by one Transformer shared by all
  (task, behaviour type) pairs, whose LayerNorms are conditional: a
  hypernetwork reads the task's embedding e_t and the behaviour type's
  embedding e_b and generates each LayerNorm's scale and shift,

      [γ_1; β_1; γ_2; β_2] = Hyper([e_t; e_b])
      CLN_i(h) = γ_i ⊙ (h − μ(h)) / σ(h) + β_i
      h'  = CLN_1(s + MultiHead(s, s, s))        (s: the sequence + positions)
      h'' = CLN_2(h' + FFN(h'))
      interest_{t,b} = masked mean of h'' over the behaviour's positions,

  so "items the user clicked" can mean one thing to the CTR task and another
  to the CVR task, from shared weights.
  Code: `ConditionalTransformerInterest` (`hypernetwork_*` is Hyper,
  `norm_parameters` gives γ_i and β_i, `attention` and `feed_forward` the block).
- Task-specific Representation Refinement Module (TRM): per task, a
  SENet-like network squeezes every field embedding, the task's interest
  vectors included, to one number, excites them through a bottleneck, and
  re-weights each field: r_t = [w_{t,1} f_1, ..., w_{t,n} f_n] with
  w_t = Excite(Squeeze(f_1, ..., f_n)). Code: `FieldReweighting`, one per task.

Task t's bottom output is r_t; a tower, or MMoE, PLE or AdaTT, sits on top.

Where the paper leaves a choice open, this is what is done, and why:
- the interest vector pools the encoded sequence by its masked mean (padding
  and empty sequences contribute nothing; an empty sequence gives zeros);
- one Transformer block with `num_heads` heads, learned position
  embeddings, and `attention_units` as both the attention's per-head size and
  the feed-forward's hidden width;
- the hypernetwork is a two-layer MLP whose last layer starts at zero, with
  γ = 1 + its output, so an untrained network is the plain, shared Transformer
  and training moves away from it only as the tasks need;
- self-attention does not depend on the task, only the LayerNorms after it
  do, so it runs once per behaviour and the rest once per (task, behaviour):
  the same result as one pass per pair, at a fraction of the cost.
"""
from __future__ import annotations

import tensorflow as tf

from features.padding import PADDING_ID


def conditional_layer_norm(inputs: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor,
                           epsilon: float = 1e-6) -> tf.Tensor:
    """γ ⊙ (x − μ) / σ + β over the last axis, with γ and β given rather than learned here."""
    mean, variance = tf.nn.moments(inputs, axes=[-1], keepdims=True)
    return scale * (inputs - mean) * tf.math.rsqrt(variance + epsilon) + shift


class ConditionalTransformerInterest(tf.keras.layers.Layer):
    """TIM: a Transformer over a behaviour sequence whose LayerNorms a (task, behaviour) hypernetwork sets.

    `call((history [batch, length, dim], mask [batch, length]), behavior, tasks)`
    returns one interest vector [batch, dim] per task in `tasks`.
    """

    def __init__(self, num_tasks: int, num_behaviors: int, max_length: int, attention_units: int = 32,
                 num_heads: int = 2, context_dim: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks, self.num_behaviors, self.max_length = num_tasks, num_behaviors, max_length
        self.attention_units, self.num_heads, self.context_dim = attention_units, num_heads, context_dim
        self.task_embedding = tf.keras.layers.Embedding(num_tasks, context_dim, name="task_embedding")
        self.behavior_embedding = tf.keras.layers.Embedding(num_behaviors, context_dim, name="behavior_embedding")

    def build(self, input_shape):
        dim = input_shape[0][-1]
        self.positions = self.add_weight(name="positions", shape=[self.max_length, dim],
                                         initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
        self.attention = tf.keras.layers.MultiHeadAttention(self.num_heads, self.attention_units, name="attention")
        self.feed_forward_hidden = tf.keras.layers.Dense(self.attention_units, activation="relu",
                                                         name="feed_forward_hidden")
        self.feed_forward_output = tf.keras.layers.Dense(dim, name="feed_forward_output")
        self.hypernetwork_hidden = tf.keras.layers.Dense(2 * self.context_dim, activation="relu",
                                                         name="hypernetwork_hidden")
        self.hypernetwork_output = tf.keras.layers.Dense(4 * dim, kernel_initializer="zeros",
                                                         bias_initializer="zeros", name="hypernetwork_output")
        super().build(input_shape)

    def norm_parameters(self, task: int, behavior: int) -> list[tf.Tensor]:
        """[γ_1, β_1, γ_2, β_2], each [dim], for one (task, behaviour type) pair."""
        context = tf.concat([self.task_embedding(tf.constant([task])),
                             self.behavior_embedding(tf.constant([behavior]))], axis=-1)
        generated = self.hypernetwork_output(self.hypernetwork_hidden(context))[0]
        scale_1, shift_1, scale_2, shift_2 = tf.split(generated, 4)
        return [1.0 + scale_1, shift_1, 1.0 + scale_2, shift_2]

    def call(self, inputs, behavior: int, tasks=None):
        history, mask = inputs
        length = tf.shape(history)[1]
        sequence = history + self.positions[:length]
        attended = sequence + self.attention(sequence, sequence, attention_mask=mask[:, None, :])
        weights = tf.cast(mask, history.dtype)[..., None]
        interests = []
        for task in range(self.num_tasks) if tasks is None else tasks:
            scale_1, shift_1, scale_2, shift_2 = self.norm_parameters(task, behavior)
            hidden = conditional_layer_norm(attended, scale_1, shift_1)
            encoded = conditional_layer_norm(hidden + self.feed_forward(hidden), scale_2, shift_2)
            interests.append(tf.math.divide_no_nan(tf.reduce_sum(encoded * weights, axis=1),
                                                   tf.reduce_sum(weights, axis=1)))
        return interests

    def feed_forward(self, hidden: tf.Tensor) -> tf.Tensor:
        return self.feed_forward_output(self.feed_forward_hidden(hidden))

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "num_behaviors": self.num_behaviors,
                "max_length": self.max_length, "attention_units": self.attention_units,
                "num_heads": self.num_heads, "context_dim": self.context_dim}


class FieldReweighting(tf.keras.layers.Layer):
    """TRM's SENet over feature fields: squeeze each field to its mean, excite, scale the field by the result."""

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
    """Per task t: the TRM SENet over every field and task t's interest vector for each behaviour sequence.

    `field_names` are the non-sequence inputs, `sequences` the behaviour
    sequences, `behaviors` the behaviour type of each (sequences of one type
    share its embedding), `max_length` the longest sequence.
    """

    def __init__(self, num_tasks: int, field_names: list[str], sequences: list[str], behaviors: list[str],
                 max_length: int, attention_units: int = 32, **kwargs):
        super().__init__(**kwargs)
        if len(behaviors) != len(sequences):
            raise ValueError(f"one behaviour type per sequence: {len(sequences)} sequences, {len(behaviors)} types")
        self.num_tasks, self.field_names, self.sequences = num_tasks, list(field_names), list(sequences)
        self.behaviors, self.max_length, self.attention_units = list(behaviors), max_length, attention_units
        self.behavior_types = sorted(set(self.behaviors))
        self.interest = ConditionalTransformerInterest(num_tasks, len(self.behavior_types), max_length,
                                                       attention_units, name="interest")
        self.refinements = [FieldReweighting(len(self.field_names) + len(self.sequences), name=f"task{k}_senet")
                            for k in range(num_tasks)]

    def call(self, fields: dict, sequence_embeddings: dict) -> list[tf.Tensor]:
        """fields: name → [batch, dim]; sequence_embeddings: name → ([batch, length, dim], ids)."""
        by_sequence = []
        for name, behavior in zip(self.sequences, self.behaviors):
            history, ids = sequence_embeddings[name]
            by_sequence.append(self.interest((history, tf.not_equal(ids, PADDING_ID)),
                                             behavior=self.behavior_types.index(behavior)))
        field_list = [fields[name] for name in self.field_names]
        return [self.refinements[task](field_list + [interests[task] for interests in by_sequence])
                for task in range(self.num_tasks)]

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "field_names": self.field_names,
                "sequences": self.sequences, "behaviors": self.behaviors, "max_length": self.max_length,
                "attention_units": self.attention_units}
