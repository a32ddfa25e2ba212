"""Lazy Adam: sparse updates touch only looked-up rows and follow Adam's formula there; dense ones are Adam's."""
import numpy as np
import pytest
import tensorflow as tf

from features.config import ConfigError, parse_config
from recsys.optimizers import LazyAdam, make_optimizer

LR, B1, B2, EPS = 0.01, 0.9, 0.999, 1e-7


def _sparse_steps(optimizer, table, steps, jit_compile=False):
    """Runs `steps` (ids, upstream gradient) steps of looking ids up in `table` and applying the gradient."""
    optimizer.build([table])

    def step(ids, upstream):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(table, ids) * upstream)
        optimizer.apply_gradients(zip(tape.gradient(loss, [table]), [table]))

    run = tf.function(step, jit_compile=jit_compile)
    for ids, upstream in steps:
        run(tf.constant(ids, tf.int64), tf.constant(upstream, tf.float32))


def _reference_lazy(table: np.ndarray, steps) -> np.ndarray:
    """Adam applied row by row, only to the rows each step looked up, duplicates' gradients summed."""
    table = table.astype(np.float64).copy()
    m, v = np.zeros_like(table), np.zeros_like(table)
    for t, (ids, upstream) in enumerate(steps, start=1):
        grad = np.zeros_like(table)
        np.add.at(grad, ids, upstream)
        rows = np.unique(ids)
        m[rows] = B1 * m[rows] + (1 - B1) * grad[rows]
        v[rows] = B2 * v[rows] + (1 - B2) * grad[rows] ** 2
        alpha = LR * np.sqrt(1 - B2 ** t) / (1 - B1 ** t)
        table[rows] -= alpha * m[rows] / (np.sqrt(v[rows]) + EPS)
    return table


def _steps(rng, rows: int, width: int, count: int):
    steps = []
    for _ in range(count):
        ids = rng.integers(0, rows // 2, size=6)  # the upper half is never looked up
        ids[1] = ids[0]  # a duplicate in every batch
        steps.append((ids, rng.normal(size=(6, width)).astype(np.float32)))
    return steps


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager-graph", "xla"])
def test_lazy_adam_moves_only_looked_up_rows_and_follows_adam_there(jit_compile):
    rng = np.random.default_rng(0)
    initial = rng.normal(size=(20, 3)).astype(np.float32)
    steps = _steps(rng, 20, 3, 5)
    table = tf.Variable(initial)
    optimizer = LazyAdam(LR, beta_1=B1, beta_2=B2, epsilon=EPS)
    _sparse_steps(optimizer, table, steps, jit_compile)

    result = table.numpy()
    np.testing.assert_array_equal(result[10:], initial[10:])  # never looked up: untouched
    np.testing.assert_allclose(result, _reference_lazy(initial, steps), rtol=1e-5, atol=1e-6)
    looked_up = np.unique(np.concatenate([ids for ids, _ in steps]))
    untouched = np.setdiff1d(np.arange(20), looked_up)
    momentum = optimizer.variables[1].numpy()  # [iterations, m, v]
    assert np.all(momentum[untouched] == 0) and np.all(momentum[looked_up] != 0)


def test_plain_adam_moves_rows_a_batch_did_not_look_up_which_is_what_lazy_adam_avoids():
    rng = np.random.default_rng(1)
    initial = rng.normal(size=(20, 3)).astype(np.float32)
    steps = _steps(rng, 20, 3, 3)
    first_ids = set(steps[0][0].tolist())
    later_only = sorted(set(steps[1][0].tolist()) - first_ids)
    table = tf.Variable(initial)
    _sparse_steps(tf.keras.optimizers.Adam(LR, beta_1=B1, beta_2=B2, epsilon=EPS), table, steps[:2])
    lazy_table = tf.Variable(initial)
    _sparse_steps(LazyAdam(LR, beta_1=B1, beta_2=B2, epsilon=EPS), lazy_table, steps[:2])
    # Rows looked up in step 1 only: Adam moves them again in step 2 on their momentum, lazy Adam does not.
    first_only = sorted(first_ids - set(steps[1][0].tolist()))
    assert first_only, "the generated steps must have a row looked up in step 1 only"
    assert not np.allclose(table.numpy()[first_only], lazy_table.numpy()[first_only])
    np.testing.assert_allclose(lazy_table.numpy()[later_only], _reference_lazy(initial, steps[:2])[later_only],
                               rtol=1e-5, atol=1e-6)


def test_lazy_adam_updates_dense_gradients_exactly_as_adam_does():
    rng = np.random.default_rng(2)
    initial = rng.normal(size=(4, 3)).astype(np.float32)
    gradients = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(4)]
    results = []
    for optimizer in (tf.keras.optimizers.Adam(LR), LazyAdam(LR)):
        weights = tf.Variable(initial)
        for gradient in gradients:
            optimizer.apply_gradients([(tf.constant(gradient), weights)])
        results.append(weights.numpy())
    np.testing.assert_array_equal(results[0], results[1])


def test_the_configured_name_picks_the_optimiser_and_a_typo_is_named(raw_config):
    assert type(make_optimizer("adam", 0.1)) is tf.keras.optimizers.Adam
    assert isinstance(make_optimizer("lazy_adam", 0.1), LazyAdam)
    with pytest.raises(ValueError, match="training.optimizer: unknown optimiser 'lazyadam'"):
        make_optimizer("lazyadam", 0.1)
    raw_config["training"]["optimizer"] = "lazyadam"
    with pytest.raises(ConfigError, match="training.optimizer"):
        parse_config(raw_config)
