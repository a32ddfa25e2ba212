import numpy as np
import pytest
import tensorflow as tf

from recsys.evaluation.gates import expert_utilisation, plot_expert_utilisation
from recsys.models.ranker import MultiTaskRanker
from tests.recsys.test_ranker import ESMM, TASKS, _batch
from tests.recsys.test_layers import MODEL_INPUTS


def test_utilisation_averages_gate_weights_over_all_rows_and_is_drawn(tmp_path):
    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, structure="esmm", esmm=ESMM, backbone="mmoe",
                             experts={"num_experts": 3, "units": [4]}, bottom_units=[], tower_units=[4])
    dataset = tf.data.Dataset.from_tensors(_batch()).repeat(3)
    utilisation = expert_utilisation(ranker, dataset)
    expected = {gate: weights.numpy().mean(axis=0) for gate, weights in ranker.gate_weights(_batch()).items()}
    assert set(utilisation) == {"level1/ctr", "level1/cvr", "level1/dwell"}
    for gate, weights in utilisation.items():
        assert list(weights) == ["shared_expert0", "shared_expert1", "shared_expert2"]
        np.testing.assert_allclose(list(weights.values()), expected[gate], rtol=1e-5)
        assert sum(weights.values()) == pytest.approx(1.0, rel=1e-5)
    path = plot_expert_utilisation(utilisation, tmp_path / "gates.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_a_model_without_experts_has_no_utilisation():
    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, bottom_units=[8], tower_units=[4])
    assert expert_utilisation(ranker, tf.data.Dataset.from_tensors(_batch())) == {}


def test_evaluation_gets_scores_and_utilisation_from_one_pass():
    from recsys.evaluation.evaluate import predict

    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, backbone="ple", bottom_units=[], tower_units=[4],
                             experts={"task_experts": 1, "shared_experts": 1, "num_levels": 2, "units": [4]})
    dataset = tf.data.Dataset.from_tensors(_batch()).repeat(2)
    outputs, columns, utilisation = predict(ranker, dataset, ["click"])
    assert outputs["ctr"].shape == (8,) and columns["click"].shape == (8,)
    expected = expert_utilisation(ranker, dataset)
    assert set(utilisation) == set(expected) == set(ranker.expert_names())
    for gate in expected:
        np.testing.assert_allclose(list(utilisation[gate].values()), list(expected[gate].values()), rtol=1e-6)
