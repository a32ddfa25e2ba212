import numpy as np
import tensorflow as tf

from recsys.models.balancing import flatten_gradients, pcgrad_combine, unflatten_gradients, uncertainty_weighted
from recsys.models.ranker import MultiTaskRanker
from tests.recsys.test_layers import MODEL_INPUTS
from tests.recsys.test_ranker import ESMM, TASKS, _batch


def test_pcgrad_projects_conflicting_gradients_apart():
    # g1·g2 = -1: g1 → g1 + g2/2 = [0.5, 0.5]; g2 → g2 + g1 = [0, 1]
    combined = pcgrad_combine(tf.constant([[1.0, 0.0], [-1.0, 1.0]]), tf.random.Generator.from_seed(1))
    np.testing.assert_allclose(combined, [0.5, 1.5], atol=1e-6)


def test_pcgrad_leaves_agreeing_gradients_alone():
    gradients = tf.constant([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0], [0.0, 1.0, 1.0]])
    np.testing.assert_allclose(pcgrad_combine(gradients, tf.random.Generator.from_seed(1)), tf.reduce_sum(gradients, axis=0), atol=1e-6)


def test_uncertainty_weighting_starts_at_half_and_learns_toward_the_loss_scale():
    losses = {"a": tf.constant(4.0), "b": tf.constant(0.25)}
    log_variances = {"a": tf.Variable(0.0), "b": tf.Variable(0.0)}
    assert float(uncertainty_weighted(losses, log_variances)) == 0.5 * (4.0 + 0.25)
    optimizer = tf.keras.optimizers.SGD(0.1)
    for _ in range(300):
        with tf.GradientTape() as tape:
            total = uncertainty_weighted(losses, log_variances)
        optimizer.apply_gradients(zip(tape.gradient(total, list(log_variances.values())),
                                      list(log_variances.values())))
    # the optimum of 0.5·exp(-s)·L + 0.5·s is s = log L: the noisier task gets the smaller weight
    np.testing.assert_allclose([log_variances["a"].numpy(), log_variances["b"].numpy()],
                               [np.log(4.0), np.log(0.25)], atol=1e-2)


def test_gradients_round_trip_through_one_vector_with_zeros_for_unused_variables():
    variables = [tf.Variable(tf.ones([2, 3])), tf.Variable(tf.ones([4]))]
    vector = flatten_gradients([tf.fill([2, 3], 2.0), None], variables)
    assert vector.shape == (10,) and float(tf.reduce_sum(vector)) == 12.0
    restored = unflatten_gradients(vector, variables)
    assert restored[0].shape == (2, 3) and float(tf.reduce_sum(restored[1])) == 0.0


def _trained(balancing: str):
    tf.keras.utils.set_random_seed(5)
    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, structure="esmm", esmm=ESMM, backbone="mmoe",
                             experts={"num_experts": 2, "units": [4]}, bottom_units=[], tower_units=[4],
                             loss_balancing=balancing)
    ranker.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    history = ranker.fit(tf.data.Dataset.from_tensors(_batch()).repeat(20), epochs=1, verbose=0)
    return ranker, history.history


def test_every_balancing_method_trains_and_logs_per_task_losses():
    first_losses = {}
    for balancing in ("fixed", "uncertainty", "pcgrad"):
        ranker, history = _trained(balancing)
        assert {"ctr_loss", "ctcvr_loss", "dwell_loss", "total_loss"} <= set(history), balancing
        first_losses[balancing] = ranker.compute_loss(_batch()).numpy()
    weights = _trained("uncertainty")[0].learned_task_weights()
    assert set(weights) == {"ctr", "dwell", "ctcvr"} and all(w != 0.5 for w in weights.values())
    assert first_losses["pcgrad"] != first_losses["fixed"]  # the projected update is a different step
