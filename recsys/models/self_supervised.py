"""The self-supervised item task: a contrastive loss between two masked views of each item.

Yao et al. (CIKM 2021), "Self-supervised Learning for Large-scale Item
Recommendations": an item seen through two complementary feature masks must be
recognised as itself among the other items of the batch. The item tower reads
the ranker's own embedding tables, so tail items, whose id embeddings the
ranking loss barely updates, get representations shaped by their other
features. The loss is InfoNCE (softmax cross-entropy of cosine similarities
over a temperature, in-batch negatives, mean over the batch), computed by
`tfrs.tasks.Retrieval` with accidental hits (the same item twice in a batch)
removed from the negatives.

The ranker adds `alpha` times this loss to its ranking loss while training;
scoring never calls it, so the exported model is the plain ranker.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys.layers.augmentation import ItemTower, correlated_feature_mask, drop_values, random_feature_mask
from recsys.layers.embedding import FeatureEmbedding
from recsys.random_streams import checkpointed_generator

# The key under which a batch carries its separately drawn catalogue items (see `recsys.data`).
ITEM_BATCH_KEY = "ssl_items"


def masked_count(num_features: int, mask_rate: float) -> int:
    """Features view one hides: mask_rate of them, at least one, and at least one left for view two."""
    return min(max(int(round(mask_rate * num_features)), 1), num_features - 1)


class SelfSupervisedItemTask(tf.keras.layers.Layer):
    """Two augmented views of a batch of items → their contrastive (InfoNCE) loss.

    Args:
      item_inputs: the model-input contract entries of the item features, in
        mask order; the first is the item id (it marks accidental hits).
      strategy: "rfm" (random halves) or "cfm" (a seed feature and its most
        correlated partners, by `mutual_information`, a square nested list in
        the order of `item_inputs`).
      alpha, temperature, mask_rate, dropout_rate, encoder_units, item_sampling:
        as `features.config.SslConfig` documents them.

    Call with the items' transformed features and the ranker's `FeatureEmbedding`.
    """

    def __init__(self, item_inputs: list[dict], strategy: str = "cfm", alpha: float = 0.1,
                 temperature: float = 0.1, mask_rate: float = 0.5, dropout_rate: float = 0.1,
                 encoder_units=(64,), mutual_information: list | None = None,
                 item_sampling: str = "catalogue", activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        if strategy == "cfm" and mutual_information is None:
            raise ValueError("correlated feature masking (strategy 'cfm') needs the mutual information matrix")
        self.item_inputs = [dict(spec) for spec in item_inputs]
        self.strategy, self.alpha, self.temperature = strategy, alpha, temperature
        self.mask_rate, self.dropout_rate, self.item_sampling = mask_rate, dropout_rate, item_sampling
        self.encoder_units, self.activation = list(encoder_units), activation
        self.mutual_information = mutual_information
        self.names = [spec["name"] for spec in self.item_inputs]
        # Masks and value drops, from a stream the checkpoints carry, so a resumed run augments alike.
        self.augmentation_noise = checkpointed_generator()
        self.num_masked = masked_count(len(self.names), mask_rate)
        widths = [(spec["name"], 1 if spec["kind"] == "numeric" else spec["embedding_dim"])
                  for spec in self.item_inputs]
        self.tower = ItemTower(widths, self.encoder_units, activation, name="item_tower")
        self.contrastive = tfrs.tasks.Retrieval(
            loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True), temperature=temperature,
            remove_accidental_hits=True, name="item_contrastive_task")

    def view_one_mask(self) -> tf.Tensor:
        """[features] bool: the features view one hides this batch; view two hides the others."""
        if self.strategy == "cfm":
            return correlated_feature_mask(tf.constant(self.mutual_information, tf.float32), self.num_masked,
                                           self.augmentation_noise)
        return random_feature_mask(len(self.names), self.num_masked, self.augmentation_noise)

    def item_features(self, batch: dict) -> dict:
        """The items this step contrasts: a catalogue draw riding along the batch, or the impressions' own."""
        if self.item_sampling == "catalogue" and ITEM_BATCH_KEY in batch:
            return batch[ITEM_BATCH_KEY]
        return {name: batch[name] for name in self.names}

    def view(self, items: dict, embedding: FeatureEmbedding, masked: tf.Tensor, training=None) -> tf.Tensor:
        """One view's [batch, units[-1]] unit vectors."""
        ids = {spec["name"]: drop_values(items[spec["name"]], self.dropout_rate, self.augmentation_noise) if spec["kind"] == "multi_valued"
               else items[spec["name"]] for spec in self.item_inputs}
        return self.tower(embedding.field_embeddings(ids, names=self.names), masked, training=training)

    def call(self, items: dict, embedding: FeatureEmbedding, training=None) -> tf.Tensor:
        masked = self.view_one_mask()
        first = self.view(items, embedding, masked, training)
        second = self.view(items, embedding, tf.logical_not(masked), training)
        return self.contrastive_loss(first, second, tf.reshape(items[self.names[0]], [-1]))

    def contrastive_loss(self, first: tf.Tensor, second: tf.Tensor, item_ids: tf.Tensor) -> tf.Tensor:
        """InfoNCE of matching rows of two [batch, d] unit-vector views, mean over the batch."""
        return self.contrastive(first, second, candidate_ids=item_ids, compute_metrics=False,
                                compute_batch_metrics=False)

    def get_config(self):
        return {**super().get_config(), "item_inputs": self.item_inputs, "strategy": self.strategy,
                "alpha": self.alpha, "temperature": self.temperature, "mask_rate": self.mask_rate,
                "dropout_rate": self.dropout_rate, "encoder_units": self.encoder_units,
                "mutual_information": self.mutual_information, "item_sampling": self.item_sampling,
                "activation": self.activation}


def ssl_task_config(config, model_inputs: list[dict], mutual_information: list | None) -> dict:
    """`SelfSupervisedItemTask` arguments from the config's `ssl` section and the model-input contract."""
    by_name = {spec["name"]: spec for spec in model_inputs}
    ssl = config.ssl
    return dict(item_inputs=[by_name[name] for name in config.ssl_item_features], strategy=ssl.strategy,
                alpha=ssl.alpha, temperature=ssl.temperature, mask_rate=ssl.mask_rate,
                dropout_rate=ssl.dropout_rate, encoder_units=list(ssl.encoder_units),
                mutual_information=mutual_information if ssl.strategy == "cfm" else None,
                item_sampling=ssl.item_sampling, activation=config.model.activation)
