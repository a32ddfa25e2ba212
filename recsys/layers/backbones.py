"""Multi-task backbones: Shared-Bottom, MMoE, PLE (CGC) and AdaTT.

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
"""
from __future__ import annotations

import tensorflow as tf

from recsys.layers.experts import ExpertGroup, GatedMixture, expert_labels
from recsys.layers.mlp import MLP


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


class SharedBottom(MultiTaskBackbone):
    """One MLP that every task reads (Caruana, 1997): the baseline the gated backbones improve on.

    Hard sharing makes every task pull the same parameters its own way, which
    hurts when tasks are weakly related; with `units=[]` it is the identity, so
    the towers read the embeddings directly.
    """

    def __init__(self, num_tasks: int, units: list[int], activation: str = "relu",
                 dropout: float = 0.0, **kwargs):
        super().__init__(num_tasks, activation, dropout, **kwargs)
        self.units = list(units)
        self.bottom = MLP(self.units, activation, dropout, name="bottom")

    def mix(self, task_inputs, shared_input, training):
        return [self.bottom(shared_input, training=training)] * self.num_tasks, {}

    def expert_names(self):
        return {}

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class MMoE(MultiTaskBackbone):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).

    The experts are shared, but each task k mixes them with its own gate,
    f_k(x) = Σ_e softmax(W_k x_k)_e · expert_e(x), so weakly related tasks can
    use different experts instead of fighting over one bottom. The experts read
    the shared input; task k's gate reads task k's input.
    """

    def __init__(self, num_tasks: int, num_experts: int, expert_units: list[int],
                 activation: str = "relu", dropout: float = 0.0, **kwargs):
        super().__init__(num_tasks, activation, dropout, **kwargs)
        self.num_experts, self.expert_units = num_experts, list(expert_units)
        self.experts = ExpertGroup(num_experts, self.expert_units, activation, dropout, name="experts")
        self.task_gates = [GatedMixture(num_experts, name=f"task{k}_gate") for k in range(num_tasks)]

    def mix(self, task_inputs, shared_input, training):
        experts = self.experts(shared_input, training=training)
        outputs, gates = [], {}
        for k, (gate, task_input) in enumerate(zip(self.task_gates, task_inputs)):
            output, gates[f"task{k}"] = gate(task_input, experts)
            outputs.append(output)
        return outputs, by_level([gates])

    def expert_names(self):
        return by_level([{f"task{k}": expert_labels("shared", self.num_experts)
                          for k in range(self.num_tasks)}])

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "expert_units": self.expert_units}


class CGCLevel(tf.keras.layers.Layer):
    """One extraction level of PLE; a single level is CGC (Tang et al., RecSys 2020, §4.2–4.3).

    Task k's gate reads task k's input and mixes task k's experts with the
    shared experts, so task-specific knowledge is kept apart from shared
    knowledge (the "seesaw" fix). With `with_shared_gate`, a shared gate reads
    the shared input and mixes every expert of the level; its output is the
    next level's shared input. `call(task_inputs, shared_input)` returns
    (task outputs, shared output or None, gates keyed "task{k}" / "shared").
    """

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
        self.task_gates = [GatedMixture(task_experts + shared_experts, name=f"task{k}_gate")
                           for k in range(num_tasks)]
        self.shared_gate = (GatedMixture(num_tasks * task_experts + shared_experts, name="shared_gate")
                            if with_shared_gate else None)

    def call(self, task_inputs, shared_input, training=None):
        task_experts = [group(x, training=training) for group, x in zip(self.task_groups, task_inputs)]
        shared_experts = self.shared_group(shared_input, training=training)
        outputs, gates = [], {}
        for k, gate in enumerate(self.task_gates):
            output, gates[f"task{k}"] = gate(task_inputs[k], task_experts[k] + shared_experts)
            outputs.append(output)
        shared_output = None
        if self.shared_gate is not None:
            every_expert = sum(task_experts, []) + shared_experts
            shared_output, gates["shared"] = self.shared_gate(shared_input, every_expert)
        return outputs, shared_output, gates

    def expert_names(self) -> dict[str, list[str]]:
        shared = expert_labels("shared", self.shared_experts)
        own = [expert_labels(f"task{k}", self.task_experts) for k in range(self.num_tasks)]
        names = {f"task{k}": own[k] + shared for k in range(self.num_tasks)}
        if self.with_shared_gate:
            names["shared"] = sum(own, []) + shared
        return names

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "task_experts": self.task_experts,
                "shared_experts": self.shared_experts, "expert_units": self.expert_units,
                "activation": self.activation, "dropout": self.dropout,
                "with_shared_gate": self.with_shared_gate}


class LeveledBackbone(MultiTaskBackbone):
    """A stack of `num_levels` expert levels with the same expert counts; subclasses make each level."""

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

    def expert_names(self):
        return by_level([level.expert_names() for level in self.levels])

    def get_config(self):
        return {**super().get_config(), "num_levels": self.num_levels, "task_experts": self.task_experts,
                "shared_experts": self.shared_experts, "expert_units": self.expert_units}


class PLE(LeveledBackbone):
    """Progressive Layered Extraction (Tang et al., RecSys 2020); `num_levels=1` is CGC.

    Stacking CGC levels separates task-specific from shared knowledge
    progressively: at level j, task k's experts and gate read task k's output
    of level j-1, the shared experts read the shared gate's output of level
    j-1, and only non-final levels have a shared gate (nothing reads the last
    one's). Level 1 reads the backbone's input.
    """

    def make_level(self, level: int) -> "CGCLevel":
        return CGCLevel(self.num_tasks, self.task_experts, self.shared_experts, self.expert_units,
                        self.activation, self.dropout, with_shared_gate=level < self.num_levels,
                        name=f"level{level}")

    def mix(self, task_inputs, shared_input, training):
        per_level = []
        for level in self.levels:
            task_inputs, shared_input, gates = level(task_inputs, shared_input, training=training)
            per_level.append(gates)
        return task_inputs, by_level(per_level)


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
