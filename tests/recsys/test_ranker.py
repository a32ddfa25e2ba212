import numpy as np
import tensorflow as tf

from recsys.models.ranker import MultiTaskRanker, dummy_features, objectives
from recsys.optimizers import LazyAdam
from tests.recsys.test_layers import MODEL_INPUTS

TASKS = [
    {"name": "ctr", "label": "click", "type": "binary", "sample_space": None, "weight": 1.0},
    {"name": "cvr", "label": "conversion", "type": "binary", "sample_space": "ctr", "weight": 1.0},
    {"name": "dwell", "label": "dwell_time", "type": "regression", "sample_space": "ctr", "weight": 0.5,
     "label_transform": "log1p"},
]
ESMM = {"ctr_task": "ctr", "cvr_task": "cvr", "ctcvr_name": "ctcvr"}


def test_esmm_objectives_drop_the_direct_cvr_loss_and_add_ctcvr_over_all_impressions():
    by_output = {o.output: o for o in objectives(TASKS, ESMM)}
    assert not by_output["cvr"].in_loss and by_output["cvr"].sample_space_label == "click"
    assert by_output["ctcvr"].labels == ("click", "conversion") and by_output["ctcvr"].sample_space_label is None
    assert by_output["dwell"].log_space and by_output["dwell"].sample_space_label == "click"


def test_independent_objectives_restrict_cvr_to_clicked_impressions():
    by_output = {o.output: o for o in objectives(TASKS, None)}
    assert by_output["cvr"].in_loss and by_output["cvr"].sample_space_label == "click"
    assert "ctcvr" not in by_output


def _batch():
    features = dummy_features(MODEL_INPUTS, batch=4)
    features.update(click=tf.constant([1.0, 0, 1, 0]), conversion=tf.constant([1.0, 0, 0, 0]),
                    dwell_time=tf.constant([30.0, 0, 5, 0]))
    return features


def test_esmm_outputs_the_product_of_probabilities():
    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, structure="esmm", esmm=ESMM, bottom_units=[8], tower_units=[4])
    outputs = ranker(_batch())
    assert set(outputs) == {"ctr", "cvr", "dwell", "ctcvr"}
    np.testing.assert_allclose(outputs["ctcvr"], outputs["ctr"] * outputs["cvr"], rtol=1e-6)
    assert all(v.shape == (4,) for v in outputs.values())


def test_conversion_labels_outside_the_sample_space_do_not_change_the_independent_loss():
    tf.keras.utils.set_random_seed(1)
    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, bottom_units=[8], tower_units=[4])
    batch = _batch()
    loss = ranker.compute_loss(batch)
    batch["conversion"] = tf.constant([1.0, 1, 0, 1])  # rows 2 and 4 are not clicked
    np.testing.assert_allclose(ranker.compute_loss(batch), loss, rtol=1e-6)
    batch["conversion"] = tf.constant([0.0, 0, 0, 0])  # row 1 is clicked: this must matter
    assert abs(float(ranker.compute_loss(batch)) - float(loss)) > 1e-4


def test_ranker_config_round_trips():
    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, structure="esmm", esmm=ESMM, bottom_units=[8], tower_units=[4])
    clone = MultiTaskRanker.from_config(ranker.get_config())
    assert set(clone(_batch())) == {"ctr", "cvr", "dwell", "ctcvr"}


def _fit_once(seed: int) -> list:
    tf.keras.utils.set_random_seed(seed)
    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, structure="esmm", esmm=ESMM, bottom_units=[8], tower_units=[4],
                             dropout=0.2)
    ranker.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    dataset = tf.data.Dataset.from_tensors(_batch()).repeat(5)
    ranker.fit(dataset, epochs=1, verbose=0)
    return [w.numpy() for w in ranker.trainable_weights]


def test_training_is_reproducible_with_a_seed():
    first, again, other = _fit_once(7), _fit_once(7), _fit_once(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_every_backbone_gives_per_task_outputs_and_named_gates():
    experts = {"num_experts": 3, "task_experts": 2, "shared_experts": 1, "num_levels": 2, "units": [4]}
    for backbone in ("mmoe", "cgc", "ple", "adatt"):
        ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, structure="esmm", esmm=ESMM, backbone=backbone,
                                 experts=experts, bottom_units=[], tower_units=[4])
        assert set(ranker(_batch())) == {"ctr", "cvr", "dwell", "ctcvr"}
        gates, names = ranker.gate_weights(_batch()), ranker.expert_names()
        assert set(gates) == set(names) and "level1/ctr" in gates, backbone
        for gate, weights in gates.items():
            assert weights.shape == (4, len(names[gate]))
            np.testing.assert_allclose(tf.reduce_sum(weights, axis=-1), 1.0, rtol=1e-5)
    assert "ctr_expert0" in names["level1/cvr"]  # AdaTT: every task's experts in every gate


def _random_batch(rows: int = 32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    click = rng.integers(0, 2, rows).astype("float32")
    return {"item_id": tf.constant(rng.integers(1, 10, rows)),
            "hist_click": tf.constant(rng.integers(0, 10, (rows, 3))),
            "price": tf.constant(rng.normal(size=rows).astype("float32")),
            "click": tf.constant(click), "conversion": tf.constant(click * rng.integers(0, 2, rows)),
            "dwell_time": tf.constant(click * rng.exponential(20.0, rows).astype("float32"))}


def _weights_after_steps(steps: int = 3, **options) -> list[np.ndarray]:
    tf.keras.utils.set_random_seed(3)
    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, bottom_units=[8], tower_units=[4], **options)
    ranker(dummy_features(MODEL_INPUTS))
    ranker.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    ranker.optimizer.build(ranker.trainable_variables)
    for step in range(steps):
        ranker.train_step(_random_batch(seed=step))
    return [v.numpy() for v in ranker.trainable_variables]


def test_an_xla_compiled_step_trains_exactly_like_the_plain_step():
    for balancing in ("fixed", "pcgrad"):
        plain = _weights_after_steps(loss_balancing=balancing)
        compiled = _weights_after_steps(loss_balancing=balancing, jit_compile=True)
        assert any(np.abs(w - w0).max() > 1e-3 for w, w0 in zip(plain, _weights_after_steps(steps=0)))
        for a, b in zip(plain, compiled):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_dense_and_sparse_embedding_updates_give_the_same_weights():
    sparse = _weights_after_steps(dense_update_max_rows=0)
    dense = _weights_after_steps(dense_update_max_rows=10**9)
    for a, b in zip(sparse, dense):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _weights_after(batches: list[dict], optimizer, **options) -> list[tuple[str, np.ndarray]]:
    tf.keras.utils.set_random_seed(3)
    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, bottom_units=[8], tower_units=[4], **options)
    ranker(dummy_features(MODEL_INPUTS))
    ranker.compile(optimizer=optimizer)
    ranker.optimizer.build(ranker.trainable_variables)
    for batch in batches:
        ranker.train_step(batch)
    return [(v.name, v.numpy()) for v in ranker.trainable_variables]


def _ids_below(batch: dict, limit: int) -> dict:
    return {**batch, "item_id": batch["item_id"] % limit, "hist_click": batch["hist_click"] % limit}


def test_lazy_adam_in_the_ranker_leaves_rows_the_later_batches_did_not_look_up_and_trains_the_rest_like_adam():
    # Every item id in the first batch, only ids 0-4 after it: Adam keeps moving rows 5-9 on their momentum.
    batches = [_random_batch(seed=0)] + [_ids_below(_random_batch(seed=s), 5) for s in (1, 2)]
    for jit_compile in (False, True):
        options = dict(dense_update_max_rows=0, jit_compile=jit_compile)  # the item table's gradient stays sparse
        adam = [w for _, w in _weights_after(batches, tf.keras.optimizers.Adam(0.05), **options)]
        after_first = [w for _, w in _weights_after(batches[:1], LazyAdam(0.05), **options)]
        named = _weights_after(batches, LazyAdam(0.05), **options)
        table = next(i for i, (name, _) in enumerate(named) if "width4_tables" in name)
        lazy = [w for _, w in named]
        np.testing.assert_array_equal(lazy[table][5:], after_first[table][5:])
        assert np.abs(adam[table][5:] - after_first[table][5:]).max() > 1e-3
        for i, (got, expected) in enumerate(zip(lazy, adam)):  # rows 0-4 and every dense weight: Adam's updates
            got, expected = (got[:5], expected[:5]) if i == table else (got, expected)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=named[i][0])
