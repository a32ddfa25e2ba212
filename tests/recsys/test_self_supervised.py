"""The self-supervised item task: views, masking strategies, the contrastive loss, and training with it."""
import numpy as np
import pytest
import tensorflow as tf

from recsys.layers.augmentation import ItemTower, correlated_feature_mask, drop_values, random_feature_mask
from recsys.models.ranker import MultiTaskRanker, dummy_features
from recsys.models.self_supervised import ITEM_BATCH_KEY, SelfSupervisedItemTask, masked_count
from tests.recsys.test_ranker import ESMM, TASKS

ITEM_INPUTS = [
    {"name": "item_id", "kind": "categorical", "group": "item", "table": "item_id",
     "vocabulary_size": 20, "embedding_dim": 4, "length": None, "behavior": None},
    {"name": "item_category", "kind": "categorical", "group": "item", "table": "item_category",
     "vocabulary_size": 6, "embedding_dim": 3, "length": None, "behavior": None},
    {"name": "item_brand", "kind": "categorical", "group": "item", "table": "item_brand",
     "vocabulary_size": 8, "embedding_dim": 3, "length": None, "behavior": None},
    {"name": "item_tags", "kind": "multi_valued", "group": "item", "table": "item_tags",
     "vocabulary_size": 9, "embedding_dim": 2, "length": 3, "behavior": None},
    {"name": "item_price", "kind": "numeric", "group": "item", "table": None,
     "vocabulary_size": None, "embedding_dim": None, "length": None, "behavior": None},
]
MODEL_INPUTS = ITEM_INPUTS + [
    {"name": "user_id", "kind": "categorical", "group": "user", "table": "user_id",
     "vocabulary_size": 10, "embedding_dim": 4, "length": None, "behavior": None},
    {"name": "hist_click", "kind": "sequence", "group": "user", "table": "item_id",
     "vocabulary_size": 20, "embedding_dim": 4, "length": 3, "behavior": "click"},
]
# item_id is most informative about everything; brand and category go together; price with tags.
MUTUAL_INFORMATION = [
    [3.0, 1.3, 1.6, 1.2, 1.1],
    [1.3, 1.7, 1.4, 0.2, 0.1],
    [1.6, 1.4, 2.0, 0.3, 0.2],
    [1.2, 0.2, 0.3, 1.9, 0.9],
    [1.1, 0.1, 0.2, 0.9, 1.5],
]


def _items(batch: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"item_id": tf.constant(np.arange(1, batch + 1), tf.int64),
            "item_category": tf.constant(rng.integers(1, 6, batch), tf.int64),
            "item_brand": tf.constant(rng.integers(1, 8, batch), tf.int64),
            "item_tags": tf.constant(rng.integers(0, 9, (batch, 3)), tf.int64),
            "item_price": tf.constant(rng.normal(size=batch), tf.float32)}


def test_rfm_views_are_complementary_halves_and_every_feature_gets_masked():
    rng = tf.random.Generator.from_seed(3)
    seen = np.zeros(5)
    for _ in range(40):
        view_one = random_feature_mask(5, masked_count(5, 0.5), rng).numpy()
        view_two = ~view_one
        assert view_one.sum() == 2 and not (view_one & view_two).any() and (view_one | view_two).all()
        seen += view_one
    assert (seen > 0).all()


# For each seed feature, the set CFM must mask: the seed and its top partners in its MI row.
CFM_SETS = {2: [{0, 2}, {1, 2}, {0, 2}, {0, 3}, {0, 4}],
            3: [{0, 1, 2}, {0, 1, 2}, {0, 1, 2}, {0, 3, 4}, {0, 3, 4}]}


@pytest.mark.parametrize("num_masked", [2, 3])
def test_cfm_masks_a_seed_with_its_top_partners_by_mutual_information(num_masked):
    rng = tf.random.Generator.from_seed(5)
    expected, seen = CFM_SETS[num_masked], []
    for _ in range(40):
        masked = set(np.flatnonzero(correlated_feature_mask(tf.constant(MUTUAL_INFORMATION), num_masked, rng)))
        assert masked in expected, masked
        seen.append(masked)
    assert all(s in seen for s in expected)  # the seed is drawn at random, not always the same feature


def test_value_dropout_only_pads_values():
    rng = tf.random.Generator.from_seed(1)
    ids = tf.constant(np.arange(1, 1001).reshape(100, 10), tf.int64)
    dropped = drop_values(ids, 0.3, rng).numpy()
    kept = dropped != 0
    assert np.array_equal(dropped[kept], ids.numpy()[kept])
    assert 0.25 < 1 - kept.mean() < 0.35
    assert drop_values(ids, 0.0, rng) is ids


def test_a_masked_field_takes_the_learned_default_whatever_its_value():
    tower = ItemTower([("a", 2), ("b", 1)], [8, 4], name="tower")
    fields = {"a": tf.constant([[1.0, 2.0], [3.0, -1.0]]), "b": tf.constant([[0.5], [-2.0]])}
    other_a = dict(fields, a=tf.constant([[9.0, 9.0], [-7.0, 0.0]]))
    masked_a = tf.constant([True, False])
    np.testing.assert_allclose(tower(fields, masked_a), tower(other_a, masked_a), rtol=1e-6)
    assert not np.allclose(tower(fields, ~masked_a), tower(other_a, ~masked_a))
    np.testing.assert_allclose(tf.norm(tower(fields, masked_a), axis=-1), 1.0, rtol=1e-5)
    clone = ItemTower.from_config(tower.get_config())
    assert clone.get_config() == tower.get_config()


def _task(**kwargs) -> SelfSupervisedItemTask:
    return SelfSupervisedItemTask(ITEM_INPUTS, mutual_information=MUTUAL_INFORMATION, encoder_units=[8],
                                  **kwargs)


def _unit(x):
    return tf.math.l2_normalize(tf.constant(x, tf.float32), axis=-1)


def test_infonce_is_lowest_when_views_match_and_invariant_to_batch_order():
    task = _task(temperature=0.2)
    rng = np.random.default_rng(0)
    first = _unit(rng.normal(size=(6, 4)))
    ids = tf.range(6)
    matching = float(task.contrastive_loss(first, first, ids))
    noisy = float(task.contrastive_loss(first, _unit(first.numpy() + rng.normal(0, 0.3, (6, 4))), ids))
    unrelated = float(task.contrastive_loss(first, _unit(rng.normal(size=(6, 4))), ids))
    assert matching < noisy < unrelated
    order = rng.permutation(6)
    second = _unit(rng.normal(size=(6, 4)))
    loss = task.contrastive_loss(first, second, ids)
    np.testing.assert_allclose(task.contrastive_loss(tf.gather(first, order), tf.gather(second, order),
                                                     tf.gather(ids, order)), loss, rtol=1e-6)
    logits = first.numpy() @ second.numpy().T / 0.2  # InfoNCE by hand: mean of -log softmax diagonal
    by_hand = -np.mean(np.diag(logits) - np.log(np.exp(logits).sum(axis=1)))
    np.testing.assert_allclose(float(loss), by_hand, rtol=1e-5)


def test_the_same_item_twice_is_not_its_own_negative():
    task = _task(temperature=0.2)
    first = _unit([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    with_duplicate = task.contrastive_loss(first, first, tf.constant([4, 4, 7]))
    distinct = task.contrastive_loss(first, first, tf.constant([4, 5, 7]))
    assert float(with_duplicate) < float(distinct)


def _ranker(strategy: str = "cfm", item_sampling: str = "catalogue", loss_balancing: str = "fixed") -> MultiTaskRanker:
    ssl = dict(item_inputs=ITEM_INPUTS, strategy=strategy, alpha=0.5, temperature=0.1, mask_rate=0.5,
               dropout_rate=0.2, encoder_units=[8], item_sampling=item_sampling,
               mutual_information=MUTUAL_INFORMATION if strategy == "cfm" else None)
    return MultiTaskRanker(MODEL_INPUTS, TASKS, structure="esmm", esmm=ESMM, bottom_units=[8], tower_units=[4],
                           loss_balancing=loss_balancing, ssl=ssl)


def _training_batch() -> dict:
    features = dummy_features(MODEL_INPUTS, batch=4)
    features.update(_items(4, seed=1))
    features.update(click=tf.constant([1.0, 0, 1, 0]), conversion=tf.constant([1.0, 0, 0, 0]),
                    dwell_time=tf.constant([30.0, 0, 5, 0]))
    features[ITEM_BATCH_KEY] = _items(8, seed=2)
    return features


@pytest.mark.parametrize("loss_balancing", ["fixed", "pcgrad"])
def test_ssl_loss_joins_training_and_trains_the_shared_item_embeddings(loss_balancing):
    tf.keras.utils.set_random_seed(2)
    ranker = _ranker(loss_balancing=loss_balancing)
    batch = _training_batch()
    ranker(batch)
    ranking = float(ranker.compute_loss(batch, training=False))
    ranker.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    before = ranker.embedding.table("item_id").numpy()
    history = ranker.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history
    assert history["ssl_loss"][0] > 0 and ranking > 0
    # the catalogue batch's item ids (up to 8) reach the shared item-id table only through the SSL loss
    moved = np.abs(ranker.embedding.table("item_id").numpy() - before).sum(axis=1) > 0
    assert moved[5:9].all()
    assert set(ranker(batch)) == {"ctr", "cvr", "dwell", "ctcvr"}


def test_impression_sampling_and_rfm_contrast_the_batch_own_items():
    ranker = _ranker("rfm", "impressions")
    batch = _training_batch()
    items = ranker.self_supervised.item_features(batch)
    assert np.array_equal(items["item_id"], batch["item_id"])
    assert float(ranker.auxiliary_losses(batch, training=True)["ssl"]) > 0
    assert ranker.auxiliary_losses(batch, training=False) == {}


def test_ssl_ranker_round_trips_and_cfm_needs_the_matrix():
    ranker = _ranker()
    clone = MultiTaskRanker.from_config(ranker.get_config())
    assert clone.self_supervised.get_config()["mutual_information"] == MUTUAL_INFORMATION
    with pytest.raises(ValueError, match="mutual information"):
        SelfSupervisedItemTask(ITEM_INPUTS, strategy="cfm")
