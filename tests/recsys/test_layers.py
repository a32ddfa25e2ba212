import numpy as np
import tensorflow as tf

from recsys.layers import MLP, FeatureEmbedding
from recsys.layers.embedding import masked_mean

MODEL_INPUTS = [
    {"name": "item_id", "kind": "categorical", "group": "item", "table": "item_id",
     "vocabulary_size": 10, "embedding_dim": 4, "length": None, "behavior": None},
    {"name": "hist_click", "kind": "sequence", "group": "user", "table": "item_id",
     "vocabulary_size": 10, "embedding_dim": 4, "length": 3, "behavior": "click"},
    {"name": "price", "kind": "numeric", "group": "item", "table": None,
     "vocabulary_size": None, "embedding_dim": None, "length": None, "behavior": None},
]


def test_masked_mean_ignores_padding_and_handles_empty_rows():
    embeddings = tf.constant([[[1.0], [3.0], [100.0]], [[5.0], [6.0], [7.0]]])
    ids = tf.constant([[4, 2, 0], [0, 0, 0]])
    np.testing.assert_allclose(masked_mean(embeddings, ids).numpy(), [[2.0], [0.0]])


def test_sequences_share_the_item_table_and_inputs_concatenate():
    layer = FeatureEmbedding(MODEL_INPUTS)
    features = {"item_id": tf.constant([3, 5]), "hist_click": tf.constant([[3, 0, 0], [5, 3, 0]]),
                "price": tf.constant([0.5, -1.0])}
    output = layer(features)
    assert output.shape == (2, 4 + 4 + 1)
    fields = layer.field_embeddings(features)
    # one past click of the same item embeds exactly like the candidate item
    np.testing.assert_allclose(fields["hist_click"][0], fields["item_id"][0])
    assert len(layer.trainable_weights) == 1  # one shared table


def test_layers_round_trip_through_get_config():
    for layer in (FeatureEmbedding(MODEL_INPUTS, name="emb"), MLP([8, 4], dropout=0.2, l2=1e-4, name="mlp")):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    assert MLP([8, 4])(tf.zeros([3, 5])).shape == (3, 4)


def test_fused_tables_keep_each_table_its_own_rows():
    inputs = MODEL_INPUTS + [
        {"name": "brand", "kind": "categorical", "group": "item", "table": "brand",
         "vocabulary_size": 6, "embedding_dim": 4, "length": None, "behavior": None},
        {"name": "tags", "kind": "multi_valued", "group": "item", "table": "tags",
         "vocabulary_size": 7, "embedding_dim": 2, "length": 2, "behavior": None}]
    layer = FeatureEmbedding(inputs)
    assert sorted(tuple(w.shape) for w in layer.trainable_weights) == [(7, 2), (16, 4)]  # one per width
    features = {"item_id": tf.constant([3, 9]), "hist_click": tf.constant([[3, 0, 0], [5, 3, 0]]),
                "price": tf.constant([0.5, -1.0]), "brand": tf.constant([3, 5]), "tags": tf.constant([[1, 6], [0, 0]])}
    fields = layer.field_embeddings(features)
    items, brands, tags = (layer.table(name).numpy() for name in ("item_id", "brand", "tags"))
    assert items.shape == (10, 4) and brands.shape == (6, 4) and tags.shape == (7, 2)
    np.testing.assert_allclose(fields["item_id"], items[[3, 9]])
    np.testing.assert_allclose(fields["brand"], brands[[3, 5]])  # id 3 of brand is not id 3 of item_id
    np.testing.assert_allclose(fields["hist_click"][1], (items[5] + items[3]) / 2)
    np.testing.assert_allclose(fields["tags"], [(tags[1] + tags[6]) / 2, np.zeros(2)], atol=1e-7)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(layer(features))
    fused_width4 = next(w for w in layer.trainable_weights if w.shape[1] == 4)
    gradient = tf.convert_to_tensor(tape.gradient(total, fused_width4)).numpy()
    assert gradient[10 + 3].any() and gradient[10 + 5].any()  # brand rows follow item_id's ten
    assert not gradient[10 + 4].any() and not gradient[0:3].any()


def test_mlp_dropout_scales_in_training_is_off_at_inference_and_its_stream_resumes_from_a_checkpoint(tmp_path):
    """Dropout draws from a checkpointed generator (recsys.random_streams): the mask must be a proper
    dropout (rate, 1/(1-rate) scaling), absent at inference, and restored with the checkpoint."""
    tf.keras.utils.set_random_seed(3)
    mlp = MLP([512], activation="linear", dropout=0.25)
    x = tf.ones([64, 8])
    reference = mlp(x, training=False).numpy()
    dropped = mlp(x, training=True).numpy()
    zeroed = (dropped == 0) & (reference != 0)
    assert 0.2 < zeroed.mean() < 0.3  # the rate
    np.testing.assert_allclose(dropped[~zeroed], reference[~zeroed] / 0.75, rtol=1e-5)  # the scaling
    np.testing.assert_array_equal(mlp(x, training=False).numpy(), reference)  # nothing dropped at inference
    checkpoint = tf.train.Checkpoint(mlp=mlp)
    saved = checkpoint.write(str(tmp_path / "ckpt"))
    after_save = mlp(x, training=True).numpy()
    mlp(x, training=True)  # the stream moves on ...
    checkpoint.read(saved).assert_existing_objects_matched()
    np.testing.assert_array_equal(mlp(x, training=True).numpy(), after_save)  # ... and the checkpoint rewinds it
