"""PLE: Progressive Layered Extraction, and CGC, its one-level form (Tang, Liu, Zhao, Gong, RecSys 2020).

CGC, Customized Gate Control, for task k, and where each part lives:

    g^k(x) = w^k(x) · S^k(x)                      task k's gated output     CGCLevel.call, via GatedMixture
    w^k(x) = softmax(W_g^k · x)                    task k's gate             CGCLevel.task_gates[k]
    S^k(x) = [E_(k,1) … E_(k,m_k), E_(s,1) … E_(s,m_s)]
                                                   task k's and the shared   CGCLevel.task_groups[k] +
                                                   experts                   CGCLevel.shared_group
    y^k(x) = t^k(g^k(x))                           task k's tower            the ranker's towers

PLE stacks N such extraction networks. At level j, task k's experts
and gate read task k's output of level j-1, g^{k,j}(x) = w^{k,j}(g^{k,j-1}(x))
S^{k,j}(x), and the shared experts read the output of a shared gate of level
j-1, which mixes every expert of that level (`with_shared_gate`; the last
level has none, since nothing reads it). Level 1 reads the backbone's input
x. `PLE(num_levels=1)` is CGC.

As in the paper, the experts read the input itself: a config that names this
backbone gets no MLP in front of them unless `model.bottom_units` asks for one
(`features.config.ModelConfig.paper_bottom_units`).
"""
from __future__ import annotations


from recsys.layers.experts import GatedMixture, expert_labels
from recsys.layers.multitask import ExpertLevel, LeveledBackbone


class CGCLevel(ExpertLevel):
    """One extraction level of PLE; a single level is CGC (Tang et al., RecSys 2020).

    Task k's gate reads task k's input and mixes task k's experts with the
    shared experts, so task-specific knowledge is kept apart from shared
    knowledge (the "seesaw" fix). With `with_shared_gate`, a shared gate reads
    the shared input and mixes every expert of the level; its output is the
    next level's shared input. `call(task_inputs, shared_input)` returns
    (task outputs, shared output or None, gates keyed "task{k}" / "shared").
    """

    def __init__(self, num_tasks: int, task_experts: int, shared_experts: int, expert_units: list[int],
                 activation: str = "relu", dropout: float = 0.0, with_shared_gate: bool = False, **kwargs):
        super().__init__(num_tasks, task_experts, shared_experts, expert_units, activation, dropout,
                         with_shared_gate, **kwargs)
        self.task_gates = [GatedMixture(task_experts + shared_experts, name=f"task{k}_gate")
                           for k in range(num_tasks)]
        self.shared_gate = (GatedMixture(num_tasks * task_experts + shared_experts, name="shared_gate")
                            if with_shared_gate else None)

    def call(self, task_inputs, shared_input, training=None):
        task_experts, shared_experts = self.expert_outputs(task_inputs, shared_input, training)
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
