"""Fixed-size XLA batch scoring gives the model's own scores, compiles once, and names bad input."""
import numpy as np
import pytest
import tensorflow as tf

from serving.batch_scoring import BatchScorer


class _TwoTaskModel(tf.keras.Model):
    """Embedding of a categorical id + a numeric feature → two sigmoid outputs, like a small ranker."""

    def __init__(self):
        super().__init__()
        self.embedding = tf.keras.layers.Embedding(50, 4)
        self.hidden = tf.keras.layers.Dense(8, activation="relu")
        self.heads = {"ctr": tf.keras.layers.Dense(1, activation="sigmoid"),
                      "cvr": tf.keras.layers.Dense(1, activation="sigmoid")}

    def call(self, features, training=False):
        pooled = tf.reduce_mean(self.embedding(features["tags"]), axis=1)
        x = self.hidden(tf.concat([self.embedding(features["item"]), pooled, features["price"][:, None]], axis=1))
        return {name: tf.squeeze(head(x), axis=1) for name, head in self.heads.items()}


def _features(rows):
    rng = np.random.default_rng(3)
    return {"item": rng.integers(0, 50, rows), "tags": rng.integers(0, 50, (rows, 3)),
            "price": rng.normal(size=rows).astype(np.float32)}


def test_scores_equal_the_model_and_one_shape_is_compiled_for_any_row_count():
    model = _TwoTaskModel()
    model({k: tf.constant(v) for k, v in _features(2).items()})  # built, as a trained model is
    scorer = BatchScorer(model, batch_size=8)
    for rows in (23, 8, 3):
        features = _features(rows)
        scores = scorer.score(features)
        expected = model({k: tf.constant(v) for k, v in features.items()})
        assert set(scores) == {"ctr", "cvr"}
        for name in scores:
            assert scores[name].shape == (rows,)
            np.testing.assert_allclose(scores[name], expected[name].numpy(), atol=1e-6)
    assert scorer._forward.experimental_get_tracing_count() == 1


def test_features_of_different_lengths_are_refused_by_name():
    features = _features(10)
    features["price"] = features["price"][:7]
    with pytest.raises(ValueError, match="price has 7 rows, item has 10"):
        BatchScorer(_TwoTaskModel(), batch_size=4).score(features)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        BatchScorer(_TwoTaskModel(), batch_size=0)
