"""DeepCTR's MMoE as the serving and batch-prediction comparisons build it, in one place.

`serving_vs_deepctr.py` trains it and `batch_predict.py` loads the weights
that training saved: both must build the very same layers, or the load would
match some variables and leave the rest at their initial values.
"""
from __future__ import annotations


def deepctr_mmoe(model_inputs: list[dict], seed: int):
    """DeepCTR's MMOE over the manifest's model inputs: 4 experts of [64], towers of [64], no gate layers."""
    from deepctr.models.multitask import MMOE

    from benchmarks.multitask_models import _deepctr_columns

    return MMOE(_deepctr_columns(model_inputs), num_experts=4, expert_dnn_hidden_units=(64,),
                tower_dnn_hidden_units=(64,), task_types=("binary", "binary"), task_names=("ctr", "ctcvr"),
                gate_dnn_hidden_units=(), seed=seed)
