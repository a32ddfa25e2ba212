"""The contract every multi-task backbone keeps: Shared-Bottom, MMoE, PLE (CGC) and AdaTT.

Every backbone maps its input to one representation per task, which that
task's tower reads:

    outputs = backbone(inputs)                          # num_tasks × [batch, width]
    outputs, gates = backbone(inputs, return_gates=True)

`inputs` is one tensor [batch, d] that every task reads, or a list of
`num_tasks` tensors from task-specific bottoms (e.g. DTRN). With a list, what
a paper feeds from "the input" to task k reads `inputs[k]`, and what is shared
(shared experts and the shared gate of the first level) reads their
element-wise mean. `gates` maps names such as "level1/task0" or
"level1/shared" to softmax weights [batch, n_experts], and `expert_names()`
names, per gate, the experts it mixes, in order, for utilisation plots.

Each backbone lives in its own module with its paper: `shared_bottom`,
`mmoe`, `ple` (CGC is PLE with one level) and `adatt`.
"""
from __future__ import annotations

import tensorflow as tf

from recsys.layers.experts import ExpertGroup


def mean_of(tensors: list[tf.Tensor]) -> tf.Tensor:
    """Element-wise mean of same-shaped tensors: the shared view of task-specific inputs."""
    return tf.add_n(list(tensors)) / len(tensors)


def by_level(per_level: list[dict]) -> dict:
    """Merges one dict per level into one, prefixing keys with "level1/", "level2/", ..."""
    return {f"level{j}/{key}": value for j, level in enumerate(per_level, start=1)
            for key, value in level.items()}


class MultiTaskBackbone(tf.keras.layers.Layer):
    """The contract of every backbone (see the module docstring); subclasses implement `mix`."""

    def __init__(self, num_tasks: int, activation: str = "relu", dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
        self.num_tasks, self.activation, self.dropout = num_tasks, activation, dropout

    def call(self, inputs, training=None, return_gates: bool = False):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != self.num_tasks:
                raise ValueError(f"expected {self.num_tasks} task inputs, got {len(inputs)}")
            task_inputs, shared_input = list(inputs), mean_of(inputs)
        else:
            task_inputs, shared_input = [inputs] * self.num_tasks, inputs
        outputs, gates = self.mix(task_inputs, shared_input, training)
        return (outputs, gates) if return_gates else outputs

    def mix(self, task_inputs: list, shared_input, training) -> tuple[list, dict]:
        """Task k's representation from `task_inputs[k]` and `shared_input`, and the gate weights."""
        raise NotImplementedError

    def expert_names(self) -> dict[str, list[str]]:
        """For each gate name in `gates`, the names of the experts it mixes, in order."""
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "activation": self.activation,
                "dropout": self.dropout}


class LeveledBackbone(MultiTaskBackbone):
    """A stack of `num_levels` expert levels with the same expert counts; subclasses make each level.

    A level maps (task inputs, shared input) to (task outputs, shared output,
    gates); level j+1 reads level j's task outputs and shared output (None
    where level j has no shared gate).
    """

    def __init__(self, num_tasks: int, num_levels: int, task_experts: int, shared_experts: int,
                 expert_units: list[int], activation: str = "relu", dropout: float = 0.0, **kwargs):
        super().__init__(num_tasks, activation, dropout, **kwargs)
        if num_levels < 1:
            raise ValueError(f"num_levels must be at least 1, got {num_levels}")
        self.num_levels, self.task_experts, self.shared_experts = num_levels, task_experts, shared_experts
        self.expert_units = list(expert_units)
        self.levels = [self.make_level(j) for j in range(1, num_levels + 1)]

    def make_level(self, level: int) -> tf.keras.layers.Layer:
        raise NotImplementedError

    def mix(self, task_inputs, shared_input, training):
        per_level = []
        for level in self.levels:
            task_inputs, shared_input, gates = level(task_inputs, shared_input, training=training)
            per_level.append(gates)
        return task_inputs, by_level(per_level)

    def expert_names(self):
        return by_level([level.expert_names() for level in self.levels])

    def get_config(self):
        return {**super().get_config(), "num_levels": self.num_levels, "task_experts": self.task_experts,
                "shared_experts": self.shared_experts, "expert_units": self.expert_units}


class ExpertLevel(tf.keras.layers.Layer):
    """What every experts-and-gates level shares (PLE/CGC's and AdaTT's): its hyperparameters (for
    `get_config`) and its experts, `task_experts` per task, each task's reading that task's input, and
    `shared_experts` reading the shared input. Subclasses add the gates and how they fuse."""

    def __init__(self, num_tasks: int, task_experts: int, shared_experts: int, expert_units: list[int],
                 activation: str = "relu", dropout: float = 0.0, with_shared_gate: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks, self.task_experts, self.shared_experts = num_tasks, task_experts, shared_experts
        self.expert_units, self.activation, self.dropout = list(expert_units), activation, dropout
        self.with_shared_gate = with_shared_gate
        self.task_groups = [ExpertGroup(task_experts, self.expert_units, activation, dropout,
                                        name=f"task{k}_experts") for k in range(num_tasks)]
        self.shared_group = ExpertGroup(shared_experts, self.expert_units, activation, dropout,
                                        name="shared_experts")

    def expert_outputs(self, task_inputs, shared_input, training=None) -> tuple[list[list], list]:
        """(each task's experts' outputs, the shared experts' outputs)."""
        own = [group(x, training=training) for group, x in zip(self.task_groups, task_inputs)]
        shared = self.shared_group(shared_input, training=training) if self.shared_experts else []
        return own, shared

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "task_experts": self.task_experts,
                "shared_experts": self.shared_experts, "expert_units": self.expert_units,
                "activation": self.activation, "dropout": self.dropout,
                "with_shared_gate": self.with_shared_gate}
