"""AdaTT: Adaptive Task-to-Task Fusion Network (Li, Zhang, Yuan, Gao, Zhang, Yang, Xi, Yang, KDD 2023).

Paper: https://doi.org/10.1145/3580305.3599769 (arXiv 2304.04959).
Official code: facebookresearch/AdaTT, `mtl_lib.py`, classes `AdaTTSp` (no
shared experts) and `AdaTTWSharedExps` (with them).

At fusion level l, task k's fusion unit (§3) outputs

    f_k^l = Σ_e softmax(W_k^l · x_k^{l-1})_e · E_e^l  +  Σ_i v_{k,i}^l · E_{k,i}^l
            (gated fusion over all experts)              (linear combination of its native experts)

where E^l are the experts of every task (and the shared ones) at level l,
E_{k,i}^l task k's own experts reading x_k^{l-1}, and x_k^0 the input.
Code: `AdaTTLevel.task_groups[k]` are E_{k,·}, `AdaTTLevel.task_gates[k]` the
softmax gate, `AdaTTLevel.native_weights[k]` the v_k.
"""
from __future__ import annotations

import tensorflow as tf

from recsys.layers.experts import ExpertGroup, GatedMixture, expert_labels
from recsys.layers.multitask import LeveledBackbone, by_level, mean_of


class AdaTTLevel(tf.keras.layers.Layer):
    """One fusion level of AdaTT (Li et al., KDD 2023, §3).

    Task k's fusion unit outputs (a) the experts of all tasks (and the shared
    ones) mixed by a gate that reads task k's input, plus (b) a learned linear
    combination of task k's own experts, initialised to ones. (a) lets each
    example decide how much to borrow from every other task; (b) is a residual
    that keeps the task's own knowledge from being washed out by the mixture.
    `call(task_inputs, shared_input)` returns (task outputs, gates keyed "task{k}").
    """

    def __init__(self, num_tasks: int, task_experts: int, shared_experts: int, expert_units: list[int],
                 activation: str = "relu", dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if task_experts < 1:
            raise ValueError(f"AdaTT needs at least one expert per task, got task_experts={task_experts}")
        self.num_tasks, self.task_experts, self.shared_experts = num_tasks, task_experts, shared_experts
        self.expert_units, self.activation, self.dropout = list(expert_units), activation, dropout
        self.task_groups = [ExpertGroup(task_experts, self.expert_units, activation, dropout,
                                        name=f"task{k}_experts") for k in range(num_tasks)]
        self.shared_group = ExpertGroup(shared_experts, self.expert_units, activation, dropout,
                                        name="shared_experts")
        self.task_gates = [GatedMixture(num_tasks * task_experts + shared_experts, name=f"task{k}_gate")
                           for k in range(num_tasks)]

    def build(self, input_shape):
        self.native_weights = [self.add_weight(name=f"task{k}_native_weights", shape=[self.task_experts],
                                               initializer="ones") for k in range(self.num_tasks)]
        super().build(input_shape)

    def call(self, task_inputs, shared_input, training=None):
        task_experts = [group(x, training=training) for group, x in zip(self.task_groups, task_inputs)]
        all_experts = sum(task_experts, []) + self.shared_group(shared_input, training=training)
        outputs, gates = [], {}
        for k, gate in enumerate(self.task_gates):
            fused, gates[f"task{k}"] = gate(task_inputs[k], all_experts)
            native = tf.einsum("e,bed->bd", self.native_weights[k], tf.stack(task_experts[k], axis=1))
            outputs.append(fused + native)
        return outputs, gates

    def expert_names(self) -> dict[str, list[str]]:
        experts = sum((expert_labels(f"task{k}", self.task_experts) for k in range(self.num_tasks)), [])
        experts += expert_labels("shared", self.shared_experts)
        return {f"task{k}": experts for k in range(self.num_tasks)}

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "task_experts": self.task_experts,
                "shared_experts": self.shared_experts, "expert_units": self.expert_units,
                "activation": self.activation, "dropout": self.dropout}


class AdaTT(LeveledBackbone):
    """Adaptive Task-to-Task Fusion Network (Li et al., KDD 2023).

    Stacked fusion levels: at each level, task k's experts and fusion gate read
    task k's output of the previous level (level 1: task k's input). Optional
    shared experts read the shared input at level 1 and the mean of the tasks'
    previous outputs after it. Unlike PLE, every task's gate can reach every
    other task's experts, so task-to-task transfer is learned per example.
    """

    def __init__(self, num_tasks: int, num_levels: int, task_experts: int, shared_experts: int = 0,
                 expert_units: list[int] | None = None, activation: str = "relu", dropout: float = 0.0,
                 **kwargs):
        if expert_units is None:  # a default only so that the order matches PLE's
            raise TypeError("AdaTT() missing required argument: 'expert_units'")
        super().__init__(num_tasks, num_levels, task_experts, shared_experts, expert_units, activation,
                         dropout, **kwargs)

    def make_level(self, level: int) -> "AdaTTLevel":
        return AdaTTLevel(self.num_tasks, self.task_experts, self.shared_experts, self.expert_units,
                          self.activation, self.dropout, name=f"level{level}")

    def mix(self, task_inputs, shared_input, training):
        per_level = []
        for level in self.levels:
            task_inputs, gates = level(task_inputs, shared_input, training=training)
            shared_input = mean_of(task_inputs)
            per_level.append(gates)
        return task_inputs, by_level(per_level)
