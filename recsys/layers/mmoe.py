"""MMoE: Multi-gate Mixture-of-Experts (Ma, Zhao, Yi, Chen, Hong, Chi, KDD 2018).

The paper's model (§4.2), and where each part lives:

    f^k(x) = Σ_{i=1..n} g^k(x)_i · f_i(x)      task k's mixture   GatedMixture.call (einsum)
    g^k(x) = softmax(W_gk · x)                  task k's gate      GatedMixture.gate (Dense) + softmax
    f_i                                          expert i           ExpertGroup.experts[i] (MLP)
    y_k = h^k(f^k(x))                            task k's tower     the ranker's towers, not this layer

The experts read the backbone's input x. With task-specific inputs (a list),
the experts read their mean and task k's gate reads `inputs[k]`.

As in the paper, the experts read the input itself: a config that names this
backbone gets no MLP in front of them unless `model.bottom_units` asks for one
(`features.config.ModelConfig.paper_bottom_units`).
"""
from __future__ import annotations

from recsys.layers.experts import ExpertGroup, GatedMixture, expert_labels
from recsys.layers.multitask import MultiTaskBackbone, by_level


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
