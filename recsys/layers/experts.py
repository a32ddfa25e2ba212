"""Experts and the softmax gates that mix them: the parts MMoE, PLE and AdaTT share.

A mixture-of-experts backbone routes each example through several expert
MLPs and lets a per-task gate decide, per example, how much of each expert the
task uses (Ma et al., KDD 2018, eq. 5; Tang et al., RecSys 2020, eq. 2).
"""
from __future__ import annotations

import tensorflow as tf

from recsys.layers.mlp import MLP


class ExpertGroup(tf.keras.layers.Layer):
    """`num_experts` MLPs of one shape that read the same input.

    Returns the list of their outputs, one [batch, units[-1]] tensor per expert,
    so that groups of different owners (a task's, the shared ones) can be
    concatenated before a gate mixes them. `num_experts` may be 0.
    """

    def __init__(self, num_experts: int, units: list[int], activation: str = "relu",
                 dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if num_experts and not units:
            raise ValueError("an expert needs at least one layer: identical identity experts mix to nothing")
        self.num_experts, self.units = num_experts, list(units)
        self.activation, self.dropout = activation, dropout
        self.experts = [MLP(self.units, activation, dropout, name=f"expert{i}") for i in range(num_experts)]

    def call(self, inputs, training=None):
        return [expert(inputs, training=training) for expert in self.experts]

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "units": self.units,
                "activation": self.activation, "dropout": self.dropout}


class GatedMixture(tf.keras.layers.Layer):
    """softmax(W x + b) over `num_experts` experts, and the experts weighted by it.

    The gate is linear before the softmax, as in MMoE's g_k(x) = softmax(W_gk x):
    it only decides the routing, the experts do the non-linear work.
    `call(gate_input, experts)` takes the gate's input [batch, d] and the list of
    expert outputs [batch, width] and returns (mixture [batch, width],
    weights [batch, num_experts]); the weights are returned for diagnostics.
    """

    def __init__(self, num_experts: int, **kwargs):
        super().__init__(**kwargs)
        if num_experts < 1:
            raise ValueError(f"a gate needs at least one expert to mix, got num_experts={num_experts}")
        self.num_experts = num_experts
        self.gate = tf.keras.layers.Dense(num_experts, name="gate")

    def call(self, gate_input, experts):
        weights = tf.nn.softmax(self.gate(gate_input), axis=-1)
        mixture = tf.einsum("be,bed->bd", weights, tf.stack(experts, axis=1))
        return mixture, weights

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts}


def expert_labels(owner: str, count: int) -> list[str]:
    """Readable names of a group's experts, e.g. `["task0_expert0", "task0_expert1"]`."""
    return [f"{owner}_expert{i}" for i in range(count)]
