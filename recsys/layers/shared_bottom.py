"""Shared-Bottom: hard parameter sharing (Caruana, "Multitask Learning", Machine Learning 28, 1997).

In the form the MMoE paper writes it (Ma et al., KDD 2018, §3.1),
y_k = h^k(f(x)): one bottom network f is shared by every task and each task k
has its own tower h^k. Here f is `SharedBottom.bottom` (an MLP of `units`) and
the towers belong to the ranker; every task's representation is the same f(x).
"""
from __future__ import annotations

from recsys.layers.mlp import MLP
from recsys.layers.multitask import MultiTaskBackbone


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
