"""Expert utilisation: how much weight each task's gate gives each expert, on average.

A gate that puts all its weight on one expert, or tasks that share no experts,
is the first thing to look at when a mixture-of-experts model underperforms.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf


class UtilisationMeter:
    """Running mean gate weight per expert, fed the gate weights of one batch at a time."""

    def __init__(self, expert_names: dict[str, list[str]]):
        self._names = expert_names
        self._totals = {gate: np.zeros(len(experts)) for gate, experts in expert_names.items()}
        self._rows = 0

    def update(self, gates: dict[str, tf.Tensor]):
        if not gates:
            return
        for gate, weights in gates.items():
            self._totals[gate] += weights.numpy().sum(axis=0)
        self._rows += int(next(iter(gates.values())).shape[0])

    def result(self) -> dict[str, dict[str, float]]:
        return {gate: {expert: float(total / max(self._rows, 1))
                       for expert, total in zip(self._names[gate], self._totals[gate])} for gate in self._names}


def expert_utilisation(ranker: tf.keras.Model, dataset: tf.data.Dataset) -> dict[str, dict[str, float]]:
    """Mean gate weight per expert for every gate, over all examples of `dataset`."""
    meter = UtilisationMeter(ranker.expert_names())
    for batch in dataset:
        meter.update(ranker.gate_weights(batch))
    return meter.result()


def plot_expert_utilisation(utilisation: dict[str, dict[str, float]], path: Path) -> Path:
    """A heatmap with one row per gate and one column per expert (blank where a gate cannot pick it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gates = list(utilisation)
    experts = list(dict.fromkeys(e for weights in utilisation.values() for e in weights))
    grid = np.full((len(gates), len(experts)), np.nan)
    for i, gate in enumerate(gates):
        for expert, weight in utilisation[gate].items():
            grid[i, experts.index(expert)] = weight
    figure, axes = plt.subplots(figsize=(1.0 + 0.7 * len(experts), 1.2 + 0.45 * len(gates)))
    image = axes.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0.0, aspect="auto")
    axes.set_xticks(range(len(experts)), experts, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(gates)), gates, fontsize=8)
    for (i, j), weight in np.ndenumerate(grid):
        if not np.isnan(weight):
            axes.text(j, i, f"{weight:.2f}", ha="center", va="center", fontsize=7, color="white")
    axes.set_title("mean gate weight per expert")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
