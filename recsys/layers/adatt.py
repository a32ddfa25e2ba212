"""AdaTT: Adaptive Task-to-Task Fusion Network (Li, Zhang, Yuan, Gao, Zhang, Yang, Xi, Yang, KDD 2023).

Paper: https://doi.org/10.1145/3580305.3599769 (arXiv 2304.04959). Where the
paper leaves details open, this follows the authors' code, facebookresearch/AdaTT
`mtl_lib.py` (commit 0efdd82): `AdaTTSp` without shared experts, and
`AdaTTWSharedExps` with them.

A level has one fusion unit per task, and, with shared experts, a shared one.
At level l, unit m (a task k, or the shared unit s) outputs

    f_m^l = Σ_e softmax(W_m^l · x_m^{l-1})_e · E_e^l   +   Σ_i v_{m,i}^l · E_{m,i}^l
            (all-expert gated fusion)                       (native-expert linear combination)

E^l are the experts of every unit at level l, E_{m,·}^l those of unit m, which
read unit m's previous output x_m^{l-1} (x_m^0 is the input; with task-specific
inputs, task k reads `inputs[k]` and the shared unit their mean). Code:
`AdaTTLevel.task_groups[k]` / `shared_group` are E_{m,·}, `task_gates[k]` /
`shared_gate` the softmax gates W_m, `native_weights[m]` the v_m.

What the official code does, and so does this layer:

- The shared unit has its own fusion gate at every level but the last
  (`num_full_active_modules` is T + 1 there, T at the last level, where nothing
  reads the shared output); its output is what the next level's shared experts read.
- The shared unit gets the native-expert residual too, at the levels it has a gate.
- The native weights v are learned, initialised uniform in ±sqrt(1 / n_m) for a
  unit of n_m experts, when some unit has other than one expert; when every unit
  has exactly one, v is fixed at 1 and not learned (the expert's output is added
  as it is). `mtl_lib.py` calls the residual "crucial for model performance",
  so it has no switch here.

As in the paper and the authors' `CentralTaskArch`, the experts read the input
itself: a config that names this backbone gets no MLP in front of them unless
`model.bottom_units` asks for one (`features.config.ModelConfig.paper_bottom_units`).
"""
from __future__ import annotations

import math

import tensorflow as tf

from recsys.layers.experts import GatedMixture, expert_labels
from recsys.layers.multitask import ExpertLevel, LeveledBackbone


class AdaTTLevel(ExpertLevel):
    """One fusion level of AdaTT; see the module docstring for the formula and the official code.

    Unlike PLE's task gates, every unit's gate reaches every task's experts, so
    each example decides how much task k borrows from each other task; the
    native-expert residual keeps the task's own knowledge from being washed out
    by the mixture. With `with_shared_gate` (and shared experts), the shared
    unit fuses too and its output feeds the next level's shared experts.
    `call(task_inputs, shared_input)` returns (task outputs, shared output or
    None, gates keyed "task{k}" / "shared").
    """

    def __init__(self, num_tasks: int, task_experts: int, shared_experts: int, expert_units: list[int],
                 activation: str = "relu", dropout: float = 0.0, with_shared_gate: bool = False, **kwargs):
        if task_experts < 1:
            raise ValueError(f"AdaTT needs at least one expert per task, got task_experts={task_experts}")
        super().__init__(num_tasks, task_experts, shared_experts, expert_units, activation, dropout,
                         with_shared_gate, **kwargs)
        all_experts = num_tasks * task_experts + shared_experts
        self.task_gates = [GatedMixture(all_experts, name=f"task{k}_gate") for k in range(num_tasks)]
        self.shared_gate = (GatedMixture(all_experts, name="shared_gate")
                            if with_shared_gate and shared_experts else None)
        # As `mtl_lib.py`: learned only if some unit (the shared one counts) has other than one expert.
        self.learns_native_weights = task_experts != 1 or shared_experts > 1

    def build(self, input_shape):
        units = [(f"task{k}", self.task_experts) for k in range(self.num_tasks)]
        if self.shared_gate is not None:
            units.append(("shared", self.shared_experts))
        self.native_weights = [self._native_weights(name, count) for name, count in units
                               if self.learns_native_weights]
        super().build(input_shape)

    def _native_weights(self, unit: str, count: int) -> tf.Variable:
        scale = math.sqrt(1.0 / count)
        return self.add_weight(name=f"{unit}_native_weights", shape=[count],
                               initializer=tf.keras.initializers.RandomUniform(-scale, scale))

    def call(self, task_inputs, shared_input, training=None):
        own_experts, shared_experts = self.expert_outputs(task_inputs, shared_input, training)
        every_expert = sum(own_experts, []) + shared_experts
        outputs, gates = [], {}
        for k, gate in enumerate(self.task_gates):
            fused, gates[f"task{k}"] = gate(task_inputs[k], every_expert)
            outputs.append(fused + self._native_combination(k, own_experts[k]))
        shared_output = None
        if self.shared_gate is not None:
            fused, gates["shared"] = self.shared_gate(shared_input, every_expert)
            shared_output = fused + self._native_combination(self.num_tasks, shared_experts)
        return outputs, shared_output, gates

    def _native_combination(self, unit: int, experts: list) -> tf.Tensor:
        """Σ_i v_{m,i} · E_{m,i}; with v fixed at 1, the experts' plain sum."""
        if not self.learns_native_weights:
            return tf.add_n(experts)
        return tf.einsum("e,bed->bd", self.native_weights[unit], tf.stack(experts, axis=1))

    def expert_names(self) -> dict[str, list[str]]:
        experts = sum((expert_labels(f"task{k}", self.task_experts) for k in range(self.num_tasks)), [])
        experts += expert_labels("shared", self.shared_experts)
        names = {f"task{k}": experts for k in range(self.num_tasks)}
        if self.shared_gate is not None:
            names["shared"] = experts
        return names


class AdaTT(LeveledBackbone):
    """Adaptive Task-to-Task Fusion Network (Li et al., KDD 2023): `num_levels` stacked fusion levels.

    At each level, task k's experts and fusion gate read task k's output of the
    previous level (level 1: task k's input). Optional shared experts read the
    shared input at level 1 and, above it, the shared unit's fused output of
    the level below (AdaTT-sp when `shared_experts=0`, the general AdaTT otherwise).
    """

    def __init__(self, num_tasks: int, num_levels: int, task_experts: int, shared_experts: int = 0,
                 expert_units: list[int] | None = None, activation: str = "relu", dropout: float = 0.0,
                 **kwargs):
        if expert_units is None:  # a default only so that the order matches PLE's
            raise TypeError("AdaTT() missing required argument: 'expert_units'")
        super().__init__(num_tasks, num_levels, task_experts, shared_experts, expert_units, activation,
                         dropout, **kwargs)

    def make_level(self, level: int) -> AdaTTLevel:
        return AdaTTLevel(self.num_tasks, self.task_experts, self.shared_experts, self.expert_units,
                          self.activation, self.dropout, with_shared_gate=level < self.num_levels,
                          name=f"level{level}")
