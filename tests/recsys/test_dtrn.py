import numpy as np
import tensorflow as tf

from recsys.layers.dtrn import ConditionalTransformerInterest, DTRNBottom, FieldReweighting
from recsys.models.ranker import MultiTaskRanker
from tests.recsys.test_layers import MODEL_INPUTS
from tests.recsys.test_ranker import ESMM, TASKS, _batch


def _sequence(batch=2, length=4, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    history = tf.constant(rng.normal(size=(batch, length, dim)), tf.float32)
    mask = tf.constant([[True, True, False, False], [False, False, False, False]])
    return history, mask


def _interest(**kwargs):
    return ConditionalTransformerInterest(num_tasks=2, num_behaviors=2, max_length=4, attention_units=4, **kwargs)


def test_interest_ignores_padding_and_empty_sequences_give_zeros():
    layer = _interest()
    history, mask = _sequence()
    interests = layer((history, mask), behavior=1)
    assert len(interests) == 2 and interests[0].shape == (2, 3)
    np.testing.assert_allclose(interests[0][1], 0.0)
    changed_padding = tf.concat([history[:, :2], 100.0 + history[:, 2:]], axis=1)
    for task, interest in enumerate(layer((changed_padding, mask), behavior=1)):
        np.testing.assert_allclose(interest, interests[task], rtol=1e-5, atol=1e-6)


def test_interest_is_a_transformer_block_with_hypernetwork_layer_norms():
    """Recomputes the paper's h' = CLN_1(s + MHA(s)), h'' = CLN_2(h' + FFN(h')) and the masked mean."""
    layer = _interest()
    history, mask = _sequence()
    layer((history, mask), behavior=0)
    last = layer.hypernetwork_output
    last.kernel.assign(tf.random.normal(last.kernel.shape, seed=1))
    last.bias.assign(tf.random.normal(last.bias.shape, seed=2))
    sequence = history + layer.positions
    attended = sequence + layer.attention(sequence, sequence, attention_mask=mask[:, None, :])
    for task in range(2):
        scale_1, shift_1, scale_2, shift_2 = layer.norm_parameters(task, 1)
        hidden = tf.keras.layers.LayerNormalization(epsilon=1e-6, center=False, scale=False)(attended)
        hidden = scale_1 * hidden + shift_1
        encoded = tf.keras.layers.LayerNormalization(epsilon=1e-6, center=False, scale=False)(
            hidden + layer.feed_forward(hidden))
        encoded = scale_2 * encoded + shift_2
        expected = tf.reduce_mean(encoded[0, :2], axis=0)  # row 0 has two real positions
        np.testing.assert_allclose(layer((history, mask), behavior=1, tasks=[task])[0][0], expected,
                                   rtol=1e-4, atol=1e-5)


def test_the_hypernetwork_specialises_the_encoder_per_task_and_behaviour():
    layer = _interest()
    inputs = _sequence()
    # untrained: the identity specialisation, every pair shares the encoder
    np.testing.assert_allclose(*layer(inputs, behavior=0), rtol=1e-6)
    np.testing.assert_allclose(layer(inputs, behavior=0)[0], layer(inputs, behavior=1)[0], rtol=1e-6)
    last = layer.hypernetwork_output
    last.kernel.assign(tf.random.normal(last.kernel.shape, seed=1))
    by_pair = {(t, b): layer(inputs, behavior=b)[t].numpy() for t in range(2) for b in range(2)}
    assert not np.allclose(by_pair[(0, 0)][0], by_pair[(1, 0)][0])
    assert not np.allclose(by_pair[(0, 0)][0], by_pair[(0, 1)][0])


def test_senet_weights_each_field_and_keeps_the_widths():
    layer = FieldReweighting(num_fields=3)
    fields = [tf.ones([2, 4]), tf.ones([2, 2]) * 3.0, tf.ones([2, 1])]
    weights = layer.field_weights(fields)
    assert weights.shape == (2, 3) and np.all((weights > 0) & (weights < 2))
    output = layer(fields)
    assert output.shape == (2, 7)
    np.testing.assert_allclose(output[:, 4:6], 3.0 * weights[:, 1:2] * np.ones([2, 2]), rtol=1e-6)


def test_dtrn_gives_each_task_its_own_bottom_and_trains_every_part():
    ranker = MultiTaskRanker(MODEL_INPUTS, TASKS, structure="esmm", esmm=ESMM, bottom="dtrn", bottom_units=[],
                             backbone="mmoe", experts={"num_experts": 2, "units": [4]}, tower_units=[4],
                             dtrn_attention_units=4)
    batch = _batch()
    batch["hist_click"] = tf.constant([[3, 5, 0], [2, 0, 0], [0, 0, 0], [1, 1, 1]])
    with tf.GradientTape() as tape:
        loss = ranker.compute_loss(batch, training=True)
    gradients = dict(zip([v.name for v in ranker.trainable_variables],
                         tape.gradient(loss, ranker.trainable_variables)))
    for name in ("task_embedding", "behavior_embedding", "hypernetwork", "attention", "feed_forward", "positions",
                 "task0_senet", "task2_senet"):
        assert any(name in v and g is not None for v, g in gradients.items()), name
    bottoms = ranker.bottom(ranker.embedding.field_embeddings(batch), ranker.embedding.sequence_embeddings(batch))
    assert len(bottoms) == 3 and bottoms[0].shape == (4, 4 + 1 + 4)  # refined fields ⊕ one interest vector
    # the SENet re-weights the interest vector too: one weight per field, the interest included
    assert ranker.bottom.refinements[0].num_fields == 3
    clone = MultiTaskRanker.from_config(ranker.get_config())
    assert set(clone(batch)) == {"ctr", "cvr", "dwell", "ctcvr"}
    bottom = ranker.bottom
    assert DTRNBottom.from_config(bottom.get_config()).get_config() == bottom.get_config()


VOCAB, WIDTH, LENGTH = 20, 4, 5
FUNNEL_INPUTS = [
    {"name": "item_id", "kind": "categorical", "group": "item", "table": "item_id", "vocabulary_size": VOCAB,
     "embedding_dim": WIDTH, "length": None, "behavior": None},
    *[{"name": f"hist_{behavior}", "kind": "sequence", "group": "user", "table": "item_id",
       "vocabulary_size": VOCAB, "embedding_dim": WIDTH, "length": LENGTH, "behavior": behavior}
      for behavior in ("click", "cart")],
]
BEHAVIOUR_TASKS = [{"name": "ctr", "label": "click", "type": "binary", "sample_space": None, "weight": 1.0},
                   {"name": "atc", "label": "add_to_cart", "type": "binary", "sample_space": None, "weight": 1.0}]


def _behaviour_driven_labels(seed: int, rows: int) -> tuple[dict, dict]:
    """Clicks follow the share of 'kind A' items (ids below VOCAB/2) in the click history, add-to-carts
    the share in the cart history; returns the features with labels and the true probabilities."""
    rng = np.random.default_rng(seed)
    features, truth = {"item_id": rng.integers(1, VOCAB, size=rows)}, {}
    for behavior, label in (("click", "click"), ("cart", "add_to_cart")):
        lengths = rng.integers(1, LENGTH + 1, size=rows)
        ids = rng.integers(1, VOCAB, size=(rows, LENGTH))
        ids[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0  # padding after each history
        kind_a_share = ((ids >= 1) & (ids < VOCAB // 2)).sum(axis=1) / lengths
        truth[label] = 1 / (1 + np.exp(2 - 4 * kind_a_share))
        features[f"hist_{behavior}"] = ids
        features[label] = (rng.random(rows) < truth[label]).astype("float32")
    return features, truth


def _auc(labels, scores) -> float:
    metric = tf.keras.metrics.AUC(num_thresholds=2000)
    metric.update_state(labels, scores)
    return float(metric.result())


def test_dtrn_learns_each_task_from_the_behaviour_sequence_that_drives_it():
    """Both tasks recover at least 85% of the oracle's AUC lift over a constant score (0.5), on held-out rows:
    only the interest vectors carry the signal, so the Transformer, its pooling and the SENet must pass it on."""
    train_rows, test_rows = 8192, 4096
    features, truth = _behaviour_driven_labels(0, train_rows + test_rows)
    train = {name: column[:train_rows] for name, column in features.items()}
    test = {name: column[train_rows:] for name, column in features.items()}
    tf.keras.utils.set_random_seed(0)
    ranker = MultiTaskRanker(FUNNEL_INPUTS, BEHAVIOUR_TASKS, bottom="dtrn", bottom_units=[], tower_units=[8],
                             dtrn_attention_units=4)
    ranker.compile(optimizer=tf.keras.optimizers.Adam(0.01), steps_per_execution=16)
    ranker.fit(tf.data.Dataset.from_tensor_slices(train).shuffle(train_rows, seed=0).batch(256), epochs=2,
               verbose=0)
    outputs = ranker(test)
    for task in BEHAVIOUR_TASKS:
        label, oracle = test[task["label"]], truth[task["label"]][train_rows:]
        lift = (_auc(label, outputs[task["name"]]) - 0.5) / (_auc(label, oracle) - 0.5)
        assert lift >= 0.85, (task["name"], lift)
