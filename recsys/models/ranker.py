"""The multi-task ranker: embeddings → bottom → backbone → one tower per task → heads, as a TFRS model.

The backbone (none, MMoE, PLE/CGC or AdaTT) turns the bottom's output into one
representation per task; any backbone works with either head structure.

The head structure is either independent (one probability or value per task)
or ESMM (Ma et al., SIGIR 2018): pCTCVR = pCTR × pCVR, trained with losses on
CTR and CTCVR over all impressions and no direct CVR loss, so the CVR tower
learns from the whole impression space instead of the biased clicked subset.
"""
from __future__ import annotations

import dataclasses
import re

import tensorflow as tf
import tensorflow_recommenders as tfrs

from features.config import ModelConfig
from recsys.layers import MLP, PLE, AdaTT, FeatureEmbedding, MMoE, SharedBottom
from recsys.layers.dtrn import DTRNBottom
from recsys.models.balancing import (flatten_gradients, pcgrad_combine, uncertainty_weighted,
                                     unflatten_gradients)
from recsys.models.self_supervised import SelfSupervisedItemTask
from recsys.random_streams import checkpointed_generator


@dataclasses.dataclass(frozen=True)
class Objective:
    """One scored output: its label, the sample space it is judged on, and its loss weight."""

    output: str
    labels: tuple[str, ...]  # the label is the product of these columns (CTCVR = click × conversion)
    sample_space_label: str | None
    weight: float
    in_loss: bool
    type: str
    log_space: bool = False


def objectives(tasks: list[dict], esmm: dict | None) -> list[Objective]:
    """What the ranker is trained and measured on, derived from the tasks and the structure."""
    by_name = {t["name"]: t for t in tasks}
    result = []
    for task in tasks:
        space = by_name[task["sample_space"]]["label"] if task.get("sample_space") else None
        is_esmm_cvr = esmm is not None and task["name"] == esmm["cvr_task"]
        result.append(Objective(
            task["name"], (task["label"],), space, task.get("weight", 1.0), in_loss=not is_esmm_cvr,
            type=task["type"], log_space=task.get("label_transform", "none") == "log1p"))
    if esmm is not None:
        ctr, cvr = by_name[esmm["ctr_task"]], by_name[esmm["cvr_task"]]
        result.append(Objective(esmm["ctcvr_name"], (ctr["label"], cvr["label"]), None,
                                cvr.get("weight", 1.0), in_loss=True, type="binary"))
    return result


def _ranking_task(objective: Objective) -> tfrs.tasks.Ranking:
    """A task whose loss is per example: `_batch_mean` reduces it, the same way under any strategy.

    Keras refuses its own batch-mean reduction inside a distribution strategy
    outside `compile`, so the reduction is ours.
    """
    name, per_example = objective.output, tf.keras.losses.Reduction.NONE
    if objective.type == "binary":
        return tfrs.tasks.Ranking(loss=tf.keras.losses.BinaryCrossentropy(reduction=per_example),
                                  metrics=[tf.keras.metrics.AUC(name=f"{name}_auc")], name=f"{name}_task")
    return tfrs.tasks.Ranking(loss=tf.keras.losses.MeanSquaredError(reduction=per_example),
                              metrics=[tf.keras.metrics.RootMeanSquaredError(name=f"{name}_rmse")],
                              name=f"{name}_task")


def _batch_mean(per_example_loss: tf.Tensor) -> tf.Tensor:
    """Sum of the (sample-weighted) losses over the batch size; 0 for an empty batch.

    Examples outside a task's sample space weigh 0 but still count in the
    denominator, as Keras's SUM_OVER_BATCH_SIZE does. An uneven last batch can
    leave a replica with no examples, hence no NaN from 0/0.
    """
    return tf.math.divide_no_nan(tf.reduce_sum(per_example_loss),
                                 tf.cast(tf.size(per_example_loss), per_example_loss.dtype))


def make_backbone(name: str, num_tasks: int, experts: dict, activation: str, dropout: float):
    """The mixture-of-experts layer a config names, or None for a plain shared bottom."""
    common = dict(num_tasks=num_tasks, activation=activation, dropout=dropout, name=f"{name}_backbone")
    if name == "mmoe":
        return MMoE(num_experts=experts["num_experts"], expert_units=experts["units"], **common)
    if name in ("ple", "cgc"):
        return PLE(num_levels=1 if name == "cgc" else experts["num_levels"], task_experts=experts["task_experts"],
                   shared_experts=experts["shared_experts"], expert_units=experts["units"], **common)
    if name == "adatt":
        return AdaTT(num_levels=experts["num_levels"], task_experts=experts["task_experts"],
                     shared_experts=experts["shared_experts"], expert_units=experts["units"], **common)
    return None


def _dtrn_bottom(model_inputs: list[dict], num_tasks: int, attention_units: int) -> DTRNBottom:
    """DTRN over the non-sequence fields and the behaviour sequences, typed by their behaviour."""
    sequences = [s for s in model_inputs if s["kind"] == "sequence"]
    return DTRNBottom(num_tasks, [s["name"] for s in model_inputs if s["kind"] != "sequence"],
                      [s["name"] for s in sequences], [s["behavior"] for s in sequences],
                      max(s["length"] for s in sequences), attention_units, name="dtrn_bottom")


class MultiTaskRanker(tfrs.models.Model):
    """A shared-bottom multi-task ranker whose outputs are a dict keyed by task, shape [batch].

    Args:
      model_inputs: the pipeline manifest's model-input contract.
      tasks: the config's tasks as dicts (name, label, type, sample_space, weight, label_transform).
      structure: "independent" or "esmm"; `esmm` names the ctr and cvr tasks and the product output.
      backbone: "shared_bottom" (towers read the bottom), "mmoe", "ple", "cgc" or "adatt";
        `experts` holds the expert counts and shapes (see `features.config.ExpertsConfig`).
      bottom_units, tower_units, dropout, activation, l2, embedding_l2: MLP shapes and regularisation;
        without `bottom_units`, the backbone's paper form (`ModelConfig.paper_bottom_units`).
      ssl: arguments of a `SelfSupervisedItemTask` whose contrastive loss, times its alpha, joins the
        training loss (logged as `ssl_loss`); None for none. Scoring never uses it.
    """

    def __init__(self, model_inputs: list[dict], tasks: list[dict], structure: str = "independent",
                 esmm: dict | None = None, backbone: str = "shared_bottom", experts: dict | None = None,
                 bottom_units=None, tower_units=(64,), dropout: float = 0.0, activation: str = "relu",
                 l2: float = 0.0, embedding_l2: float = 0.0, loss_balancing: str = "fixed",
                 bottom: str = "shared", dtrn_attention_units: int = 32, metrics_on_train: bool = False,
                 dense_update_max_rows: int = 200_000, jit_compile: bool = False, ssl: dict | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if bottom_units is None:
            bottom_units = ModelConfig.paper_bottom_units(backbone, bottom)
        self._config = dict(model_inputs=model_inputs, tasks=tasks, structure=structure, esmm=esmm,
                            backbone=backbone, experts=experts, bottom_units=list(bottom_units),
                            tower_units=list(tower_units), dropout=dropout, activation=activation, l2=l2,
                            embedding_l2=embedding_l2, loss_balancing=loss_balancing, bottom=bottom,
                            dtrn_attention_units=dtrn_attention_units, metrics_on_train=metrics_on_train,
                            dense_update_max_rows=dense_update_max_rows, jit_compile=jit_compile, ssl=ssl)
        self.tasks_config = [dict(t) for t in tasks]
        self.esmm = dict(esmm) if structure == "esmm" else None
        self.embedding = FeatureEmbedding(model_inputs, embedding_l2, name="embedding")
        self.bottom = (_dtrn_bottom(model_inputs, len(tasks), dtrn_attention_units) if bottom == "dtrn" else
                       SharedBottom(len(tasks), list(bottom_units), activation, dropout, name="shared_bottom"))
        self.backbone = make_backbone(backbone, len(tasks), experts or {}, activation, dropout)
        self.towers = {t["name"]: MLP(tower_units, activation, dropout, l2, name=f"{t['name']}_tower")
                       for t in tasks}
        self.heads = {t["name"]: tf.keras.layers.Dense(1, name=f"{t['name']}_head") for t in tasks}
        self.objectives = objectives(self.tasks_config, self.esmm)
        self.ranking_tasks = {o.output: _ranking_task(o) for o in self.objectives}
        # Per-task losses are always logged; AUC/RMSE on training batches are costly, so off by default.
        self.loss_trackers = {o.output: tf.keras.metrics.Mean(name=f"{o.output}_loss") for o in self.objectives}
        # Epoch means of the combined losses, as metrics: synchronised across replicas, and over the whole
        # eval set rather than its last batch (early stopping monitors val_total_loss).
        self.total_trackers = {name: tf.keras.metrics.Mean(name=name)
                               for name in ("loss", "regularization_loss", "total_loss")}
        # Every value a step returns is a synchronised metric, so Keras must not sum them over replicas.
        self.distribute_reduction_method = "first"
        self.metrics_on_train = metrics_on_train
        self.dense_update_max_rows = dense_update_max_rows
        # Only the optimiser step is XLA-compiled: evaluation batches of odd sizes
        # would each cost a compilation, and they are cheap without it.
        self._optimizer_step = (tf.function(self._gradient_step, jit_compile=True) if jit_compile
                                else self._gradient_step)
        self.loss_balancing = loss_balancing
        self.log_variances = {o.output: self.add_weight(name=f"{o.output}_log_variance", shape=(),
                                                        initializer="zeros")
                              for o in self.objectives if o.in_loss and loss_balancing == "uncertainty"}
        # PCGrad's projection orders, from a stream the checkpoints carry (see recsys.random_streams).
        self.projection_order_noise = checkpointed_generator() if loss_balancing == "pcgrad" else None
        self.self_supervised = SelfSupervisedItemTask(**ssl, name="self_supervised") if ssl else None
        self.ssl_loss_tracker = tf.keras.metrics.Mean(name="ssl_loss") if ssl else None

    def call(self, features: dict, training: bool = False) -> dict[str, tf.Tensor]:
        return self.call_with_gates(features, training)[0]

    def call_with_gates(self, features: dict, training: bool = False) -> tuple[dict, dict]:
        """(outputs, gate weights) from one forward pass; gates keyed like `expert_names`."""
        task_inputs, gates = self._task_representations(features, training)
        outputs = {}
        for task, task_input in zip(self.tasks_config, task_inputs):
            name = task["name"]
            head = tf.squeeze(self.heads[name](self.towers[name](task_input, training=training)), axis=-1)
            if task["type"] == "binary":
                outputs[name] = tf.sigmoid(head)
            else:
                outputs[name] = tf.math.expm1(head) if task.get("label_transform") == "log1p" else head
        if self.esmm is not None:
            # Multiply probabilities, not logits: pCTCVR = pCTR × pCVR.
            outputs[self.esmm["ctcvr_name"]] = outputs[self.esmm["ctr_task"]] * outputs[self.esmm["cvr_task"]]
        return outputs, {self._with_task_names(gate): weights for gate, weights in gates.items()}

    def _task_representations(self, features: dict, training: bool) -> tuple[list, dict]:
        if isinstance(self.bottom, DTRNBottom):
            # Only the fields it re-weights: pooling the sequences here would look them up a second time.
            task_inputs = self.bottom(self.embedding.field_embeddings(features, names=self.bottom.field_names),
                                      self.embedding.sequence_embeddings(features))
        else:
            task_inputs = self.bottom(self.embedding(features), training=training)
        if self.backbone is None:
            return task_inputs, {}
        return self.backbone(task_inputs, training=training, return_gates=True)

    def _with_task_names(self, label: str) -> str:
        """"level1/task0" → "level1/ctr": backbones number tasks, people name them."""
        return re.sub(r"task(\d+)", lambda m: self.tasks_config[int(m.group(1))]["name"], label)

    def gate_weights(self, features: dict) -> dict[str, tf.Tensor]:
        """Each backbone gate's softmax weights [batch, experts], keyed like `expert_names`."""
        return self.call_with_gates(features)[1]

    def expert_names(self) -> dict[str, list[str]]:
        """For each gate (e.g. "level1/ctr"), the experts it mixes (e.g. "ctr_expert0", "shared_expert0")."""
        names = self.backbone.expert_names() if self.backbone is not None else {}
        return {self._with_task_names(gate): [self._with_task_names(e) for e in experts]
                for gate, experts in names.items()}

    def task_losses(self, features: dict, training: bool = False) -> dict[str, tf.Tensor]:
        """Each objective's loss times its weight, for those in the loss; updates the metrics."""
        outputs = self(features, training=training)
        losses = {}
        for objective in self.objectives:
            label = tf.math.reduce_prod(tf.stack([features[c] for c in objective.labels]), axis=0)
            prediction = outputs[objective.output]
            if objective.log_space:
                label, prediction = tf.math.log1p(label), tf.math.log1p(prediction)
            weight = features[objective.sample_space_label] if objective.sample_space_label else None
            loss = _batch_mean(self.ranking_tasks[objective.output](
                labels=label[:, None], predictions=prediction[:, None], sample_weight=weight,
                training=training, compute_metrics=self.metrics_on_train or not training))
            self.loss_trackers[objective.output].update_state(loss)
            if objective.in_loss:
                losses[objective.output] = objective.weight * loss
        return losses

    def auxiliary_losses(self, features: dict, training: bool = False) -> dict[str, tf.Tensor]:
        """With ssl on: {"ssl": alpha × the contrastive item loss} while training; otherwise empty.

        Evaluation measures the loss (on the batch's own items) for `val_ssl_loss`
        but leaves it out of the total, so `val_total_loss` compares with and without ssl.
        """
        if self.self_supervised is None:
            return {}
        task = self.self_supervised
        loss = task(task.item_features(features), self.embedding, training=training)
        self.ssl_loss_tracker.update_state(loss)
        return {"ssl": task.alpha * loss} if training else {}

    def compute_loss(self, features: dict, training: bool = False) -> tf.Tensor:
        return tf.add_n([self._combined(self.task_losses(features, training)),
                         *self.auxiliary_losses(features, training).values()])

    def _combined(self, losses: dict[str, tf.Tensor]) -> tf.Tensor:
        if self.loss_balancing == "uncertainty":
            return uncertainty_weighted(losses, self.log_variances)
        return tf.add_n(list(losses.values()))

    def train_step(self, inputs):
        """One optimiser step on the global batch, with or without a distribution strategy.

        With `jit_compile` the gradient step is XLA-compiled; call
        `optimizer.build(trainable_variables)` first, since an XLA function
        cannot create the optimiser's slot variables.
        """
        loss, regularization = self._optimizer_step(inputs)
        return self._step_metrics(loss, regularization)

    def _gradient_step(self, inputs) -> tuple[tf.Tensor, tf.Tensor]:
        """Gradients of the combined loss (or PCGrad's projection of per-task ones), applied.

        Each replica's losses are means over its part of the batch and the
        optimiser sums gradients over replicas, so each replica differentiates
        1/replicas of its loss (as Keras's `compile` losses do): the step equals
        one on the whole batch. Regularisation, which every replica adds in
        full, is scaled the same way. PCGrad and uncertainty weighting run on
        one replica only (the trainer refuses more; see recsys.training).
        """
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape(persistent=self.loss_balancing == "pcgrad") as tape:
            losses = self.task_losses(inputs, training=True)
            auxiliary = self.auxiliary_losses(inputs, training=True)
            loss = tf.add_n([self._combined(losses), *auxiliary.values()])
            regularization = tf.add_n(self.losses) if self.losses else tf.constant(0.0)
            replica_share = (loss + regularization) / replicas
        variables = self.trainable_variables  # after the forward pass, which creates them on first use
        if self.loss_balancing == "pcgrad":
            gradients = self._pcgrad_gradients(tape, {**losses, **auxiliary}, regularization, variables)
        else:
            gradients = self._densified(tape.gradient(replica_share, variables), variables)
        del tape
        self.optimizer.apply_gradients(zip(gradients, variables))
        return loss, regularization

    def test_step(self, inputs):
        loss = self.compute_loss(inputs, training=False)
        return self._step_metrics(loss, tf.add_n(self.losses) if self.losses else tf.constant(0.0))

    def _step_metrics(self, loss: tf.Tensor, regularization: tf.Tensor) -> dict:
        for name, value in (("loss", loss), ("regularization_loss", regularization),
                            ("total_loss", loss + regularization)):
            self.total_trackers[name].update_state(value)
        return {metric.name: metric.result() for metric in self.metrics}

    def _pcgrad_gradients(self, tape, losses: dict, regularization, variables: list) -> list:
        task_gradients = tf.stack([flatten_gradients(tape.gradient(loss, variables), variables)
                                   for loss in losses.values()])
        combined = pcgrad_combine(task_gradients, self.projection_order_noise)
        combined += flatten_gradients(tape.gradient(regularization, variables), variables)
        return unflatten_gradients(combined, variables)

    def _densified(self, gradients: list, variables: list) -> list:
        """Sparse embedding gradients of small tables made dense (see `dense_update_max_rows`).

        A dense gradient costs one scatter-add into the table's shape and lets
        the optimiser take its dense path; the sparse path de-duplicates ids
        with Unique, which dominates an XLA-compiled step on CPU. For tables
        beyond the limit the dense update itself would cost more, so those
        stay sparse.
        """
        return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices)
                and v.shape[0] <= self.dense_update_max_rows else g
                for g, v in zip(gradients, variables)]

    def learned_task_weights(self) -> dict[str, float]:
        """Under uncertainty weighting, the effective weight 0.5·exp(-s_k) of each task's loss."""
        return {name: float(0.5 * tf.exp(-s)) for name, s in self.log_variances.items()}

    def get_config(self):
        return dict(self._config)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def dummy_features(model_inputs: list[dict], batch: int = 1) -> dict[str, tf.Tensor]:
    """All-padding inputs of the right shapes, to create a model's weights before loading them."""
    features = {}
    for spec in model_inputs:
        if spec["kind"] == "numeric":
            features[spec["name"]] = tf.zeros([batch], tf.float32)
        elif spec["kind"] == "categorical":
            features[spec["name"]] = tf.zeros([batch], tf.int64)
        else:
            features[spec["name"]] = tf.zeros([batch, spec["length"]], tf.int64)
    return features


def build_ranker(config, model_inputs: list[dict], ssl: dict | None = None) -> MultiTaskRanker:
    """The ranker a config describes, with its weights created.

    `ssl` (see `recsys.models.self_supervised.ssl_task_config`) adds the
    self-supervised item task for training; without it the ranker is the plain
    one that evaluation and export use, and loads trained weights all the same.
    """
    model = config.model
    ranker = MultiTaskRanker(
        model_inputs=model_inputs, tasks=[t.model_dump() for t in config.tasks],
        structure=model.structure, esmm=model.esmm.model_dump() if model.esmm else None,
        backbone=model.backbone, experts=model.experts.model_dump(),
        loss_balancing=config.training.loss_balancing, bottom=model.bottom,
        metrics_on_train=config.training.metrics_on_train,
        dense_update_max_rows=config.training.effective_dense_update_max_rows,
        jit_compile=config.training.jit_compile,
        dtrn_attention_units=model.dtrn_attention_units,
        bottom_units=model.bottom_units, tower_units=model.tower_units, dropout=model.dropout,
        activation=model.activation, l2=model.l2, embedding_l2=model.embedding_l2, ssl=ssl,
        name=f"{config.name}_ranker")
    ranker(dummy_features(model_inputs))
    if ranker.self_supervised is not None:
        ranker.self_supervised(dummy_features(ssl["item_inputs"], batch=2), ranker.embedding)
    return ranker
