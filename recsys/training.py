"""Training a ranker on the pipeline's artifacts: checkpoints, early stopping, TensorBoard.

Reproducible with the config's seed: Python, NumPy and TensorFlow are seeded,
op determinism is on, each epoch's input order (and catalogue item draw) is a
function of the seed and the epoch number only, and every random op in the
model draws from a generator the checkpoints carry (recsys.random_streams).
That is what lets a killed run resume bit-identically: the backup
(recsys.backup) keeps the model, optimiser, generators and the logged values
of every finished epoch under `<model_dir>/backup`; a restarted `recsys train`
rebuilds early stopping's state from those values (recsys.early_stopping) and
continues from the next epoch with the data an uninterrupted run would see.
The published weights are always read back from the chosen epoch's
checkpoint, and the backup is removed only after they and training.json are
written, so a kill while publishing is resumed as well.

Under a distribution strategy (`training.distribution`, see recsys.distribution)
the data is sharded by element, so the workers together see exactly the
global batches one process would.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from features.artifacts import Artifacts
from features.config import Config, write_model_config
from features.errors import RecsysError
from features.atomic_files import replace_directory, staging_directory, write_atomically
from recsys.backup import EpochLog, past_epochs, remove_backup, resumed_epoch
from recsys.data import (corrupt_shard_error, in_memory_epochs, item_epochs, make_dataset, shard_by_element,
                         split_files, training_epochs, transformed_feature_spec, with_item_batches, with_known_steps)
from recsys.distribution import (DistributionError, is_chief, make_strategy, resolve_mode,
                                 serve_if_parameter_server_task)
from recsys.early_stopping import BestEpochEarlyStopping
from recsys.models.ranker import MultiTaskRanker, build_ranker
from recsys.models.self_supervised import ITEM_BATCH_KEY, ssl_task_config
from recsys.numerics import StopOnNonFiniteEpochLoss, StopOnNonFiniteLoss
from recsys.optimizers import make_optimizer

_LOG = logging.getLogger(__name__)


class _TrainingClock(tf.keras.callbacks.Callback):
    """Seconds spent in training batches of each epoch, so throughput excludes validation.

    The first epoch includes tracing and XLA compilation; later ones show the steady state.
    """

    def __init__(self):
        super().__init__()
        self.epoch_seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_test_begin(self, logs=None):
        self.epoch_seconds.append(time.monotonic() - self._started)


class _StopOnShortInput(tf.keras.callbacks.Callback):
    """Fails an epoch that ran out of training batches before `steps_per_epoch`.

    Keras only warns when the input ends early, and a shard truncated at a
    record boundary ends early without any read error; training on part of
    the data must not pass for success. Placed first, so neither a checkpoint
    nor a backup records the short epoch.
    """

    def __init__(self, steps_per_epoch: int, files: list[str]):
        super().__init__()
        self.steps_per_epoch, self.files = steps_per_epoch, files

    def on_epoch_begin(self, epoch, logs=None):
        self._first_step = int(self.model.optimizer.iterations.numpy())

    def on_epoch_end(self, epoch, logs=None):
        steps = int(self.model.optimizer.iterations.numpy()) - self._first_step
        if steps < self.steps_per_epoch:
            raise corrupt_shard_error(self.files, f"the training input ended after {steps} of "
                                                  f"{self.steps_per_epoch} batches in epoch {epoch + 1}")


def _backup_dir(artifacts: Artifacts) -> Path:
    return artifacts.model_dir / "backup"


_CHECKPOINT_NAME = "epoch-{epoch:03d}"  # ModelCheckpoint's pattern; it counts epochs from 1


def _epoch_checkpoint(artifacts: Artifacts, epoch: int) -> Path:
    """Where ModelCheckpoint saved the weights of 0-based `epoch`."""
    return artifacts.model_dir / "checkpoints" / _CHECKPOINT_NAME.format(epoch=epoch + 1)


def _early_stopping(config: Config, past: list[dict]) -> BestEpochEarlyStopping:
    """Early stopping in the state the `past` epochs (those before a resume) left it."""
    monitor = config.training.monitor
    return BestEpochEarlyStopping(monitor, "max" if monitor.endswith("auc") else "min",
                                  config.training.early_stopping_patience, past)


def _callbacks(config: Config, artifacts: Artifacts, steps_per_epoch: int, early_stopping: BestEpochEarlyStopping,
               epoch_log: EpochLog, batch_hooks: bool = True) -> list:
    """Keras callbacks; `batch_hooks=False` under ParameterServerStrategy, which allows only epoch-level ones.

    The backup (recsys.backup: the epoch log, then Keras's checkpoint) comes
    last, so an epoch is backed up only after every other callback accepted it
    and its checkpoint is whole. Keras would delete its checkpoint when `fit`
    ends; `train` removes the backup itself once the weights are published.
    """
    return [
        _StopOnShortInput(steps_per_epoch, split_files(artifacts.root, "train")),
        (StopOnNonFiniteLoss if batch_hooks else StopOnNonFiniteEpochLoss)(config.output_names),
        tf.keras.callbacks.ModelCheckpoint(str(artifacts.model_dir / "checkpoints" / _CHECKPOINT_NAME),
                                           save_weights_only=True),
        early_stopping,
        tf.keras.callbacks.TensorBoard(str(artifacts.model_dir / "logs"), update_freq="epoch"),
        epoch_log,
        tf.keras.callbacks.BackupAndRestore(str(_backup_dir(artifacts)), delete_checkpoint=False),
    ]


def ssl_task_from_artifacts(config: Config, artifacts: Artifacts, manifest: dict) -> dict:
    """The self-supervised task's arguments, checked against what the pipeline wrote for it.

    CFM needs the stored mutual information and catalogue sampling the item
    corpus; RFM over impression items needs nothing from the pipeline.
    """
    written = manifest.get("ssl")
    needs_pipeline = config.ssl.strategy == "cfm" or config.ssl.item_sampling == "catalogue"
    if needs_pipeline and (written is None or written["item_features"] != config.ssl_item_features):
        raise RecsysError(f"{artifacts.manifest_path}: the artifacts have no item corpus and mutual information "
                          f"for ssl.item_features {config.ssl_item_features}; run `recsys preprocess` "
                          "with this config (ssl.enabled: true)")
    names = config.ssl_item_features
    mutual_information = artifacts.item_feature_mi(names) if config.ssl.strategy == "cfm" else None
    return ssl_task_config(config, manifest["model_inputs"], mutual_information)


def _catalogue_items(config: Config, artifacts: Artifacts, manifest: dict, spec: dict, first_epoch: int,
                     steps_per_epoch: int):
    """Uniform draws from the item corpus, one batch per training step, parsing only the item features."""
    files = sorted(str(p) for p in artifacts.item_corpus_dir.glob("*.tfrecord.gz"))
    if not files:
        raise FileNotFoundError(f"no item corpus in {artifacts.item_corpus_dir}; run `recsys preprocess` "
                                "with ssl.enabled: true")
    item_spec = {name: spec[name] for name in config.ssl_item_features}
    return item_epochs(files, item_spec, config.ssl.batch_size or config.training.batch_size, seed=config.seed,
                       shuffle_buffer=max(manifest["ssl"]["items"], 1), first_epoch=first_epoch,
                       epochs=config.training.epochs, steps_per_epoch=steps_per_epoch)


def _publish_weights(ranker: MultiTaskRanker, artifacts: Artifacts, epoch: int, chief: bool):
    """Saves `epoch`'s weights, read back from its checkpoint, as `<model_dir>/weights/ranker`.

    Reading them back, rather than holding the best weights in memory, makes
    an uninterrupted run and a resumed one publish the same bytes. Every
    worker must save (variables may need a collective read); only the chief
    keeps its copy, written aside and swapped in whole.
    """
    if chief:
        checkpoint = _epoch_checkpoint(artifacts, epoch)
        if not Path(f"{checkpoint}.index").exists():
            raise RecsysError(f"{checkpoint}: epoch {epoch + 1}'s checkpoint, whose weights training publishes, "
                              f"is missing; delete {_backup_dir(artifacts)} to train from the start")
        ranker.load_weights(str(checkpoint)).expect_partial()
        staging = staging_directory(artifacts.weights_path.parent)
        ranker.save_weights(str(staging / artifacts.weights_path.name))
        replace_directory(staging, artifacts.weights_path.parent)
        return
    scratch = tempfile.mkdtemp(prefix="recsys-worker-weights-")
    ranker.save_weights(str(Path(scratch) / "ranker"))
    shutil.rmtree(scratch, ignore_errors=True)


def _inputs(config: Config, artifacts: Artifacts, strategy: tf.distribute.Strategy, first_epoch: int,
            steps_per_epoch: int, drop_remainder: bool, ssl: dict | None):
    """(training batches from `first_epoch` on, eval batches, validation steps), sharded by element across workers.

    Validation steps are None (one pass) except under ParameterServerStrategy,
    whose workers read a fixed number of batches from an endless eval dataset.
    """
    training, spec, manifest = config.training, transformed_feature_spec(artifacts.root), artifacts.manifest()
    epochs = dict(seed=config.seed, first_epoch=first_epoch, epochs=training.epochs, drop_remainder=drop_remainder)

    def train_input(context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        files = split_files(artifacts.root, "train")
        dataset = (in_memory_epochs(files, spec, training.batch_size, **epochs) if training.in_memory else
                   training_epochs(files, spec, training.batch_size, shuffle_buffer=training.shuffle_buffer,
                                   **epochs))
        if ssl and config.ssl.item_sampling == "catalogue":
            items = _catalogue_items(config, artifacts, manifest, spec, first_epoch, steps_per_epoch)
            dataset = with_item_batches(dataset, items, ITEM_BATCH_KEY)
        return shard_by_element(dataset)

    # Under ParameterServerStrategy each worker builds its own input from the function.
    train_data = (tf.keras.utils.experimental.DatasetCreator(train_input)
                  if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy) else train_input())
    eval_data = with_known_steps(make_dataset(split_files(artifacts.root, "eval"), spec, training.batch_size),
                                 manifest["rows"]["eval"], training.batch_size)
    if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
        return train_data, eval_data.repeat(), math.ceil(manifest["rows"]["eval"] / training.batch_size)
    return train_data, shard_by_element(eval_data), None


def train(config: Config, verbose: bool = True) -> dict:
    """Trains the configured ranker, publishes the weights early stopping chose and returns a training summary.

    Progress: a live bar on a terminal, one line per epoch otherwise, nothing if not `verbose`.
    On a parameter-server cluster's "worker" or "ps" task it serves until the job ends instead.
    """
    training = config.training
    if serve_if_parameter_server_task(training.distribution):
        return {}
    strategy = make_strategy(training.distribution)  # before any other TensorFlow work
    _check_strategy(config, strategy)
    artifacts = Artifacts.of(config)
    manifest = artifacts.trainable_manifest()
    tf.keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    first_epoch = resumed_epoch(_backup_dir(artifacts))
    past = past_epochs(_backup_dir(artifacts), first_epoch)
    early_stopping = _early_stopping(config, past)
    if first_epoch:
        _LOG.info("resuming from the backup in %s at epoch %d", _backup_dir(artifacts), first_epoch + 1)
    train_rows = manifest["rows"]["train"]
    # An XLA step compiles once per batch shape: a last, smaller batch would cost a second compilation.
    drop_remainder = training.jit_compile and train_rows >= training.batch_size
    steps_per_epoch = train_rows // training.batch_size if drop_remainder else math.ceil(
        train_rows / training.batch_size)
    epoch_rows = steps_per_epoch * training.batch_size if drop_remainder else train_rows
    ssl = ssl_task_from_artifacts(config, artifacts, manifest) if config.ssl.enabled else None
    with strategy.scope():
        ranker = build_ranker(config, manifest["model_inputs"], ssl)
        ranker.compile(optimizer=make_optimizer(training.optimizer, training.learning_rate),
                       steps_per_execution=training.steps_per_execution)
        ranker.optimizer.build(ranker.trainable_variables)
    chief = is_chief(strategy)
    epoch_log = EpochLog(_backup_dir(artifacts), past, chief)
    clock = _TrainingClock()
    started = time.monotonic()
    # A run killed after its last epoch, or after early stopping, only has to publish.
    if first_epoch < training.epochs and not early_stopping.stopped:
        train_data, eval_data, validation_steps = _inputs(config, artifacts, strategy, first_epoch, steps_per_epoch,
                                                          drop_remainder, ssl)
        batch_hooks = not isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy)
        callbacks = _callbacks(config, artifacts, steps_per_epoch, early_stopping, epoch_log, batch_hooks) + [clock]
        try:
            ranker.fit(train_data, steps_per_epoch=steps_per_epoch, validation_data=eval_data,
                       validation_steps=validation_steps, epochs=training.epochs, callbacks=callbacks,
                       verbose=(1 if sys.stdout.isatty() else 2) if verbose else 0)
        except tf.errors.DataLossError as err:
            raise corrupt_shard_error(split_files(artifacts.root, "train") + split_files(artifacts.root, "eval"),
                                      err) from None
    seconds = time.monotonic() - started
    published_epoch, reason = early_stopping.published_epoch()
    _publish_weights(ranker, artifacts, published_epoch, chief)
    logged = epoch_log.epochs
    epochs_run = len(logged) - len(past)
    summary = {
        "epochs_run": epochs_run,
        "resumed_at_epoch": first_epoch + 1 if first_epoch else None,
        "published_epoch": published_epoch + 1,
        "published_because": reason,
        "distribution": resolve_mode(training.distribution),
        "replicas": strategy.num_replicas_in_sync,
        "seconds": round(seconds, 2),
        "train_examples_per_second": round(epoch_rows * epochs_run / max(sum(clock.epoch_seconds), 1e-9), 1),
        "epoch_train_seconds": [round(s, 2) for s in clock.epoch_seconds],
        # Every epoch's values, those before a resume included (from the backup).
        "history": {name: [epoch[name] for epoch in logged] for name in logged[0]},
    }
    if config.training.loss_balancing == "uncertainty":
        summary["learned_task_weights"] = ranker.learned_task_weights()
    if chief:
        write_atomically(artifacts.model_dir / "training.json", json.dumps(summary, indent=2) + "\n")
        write_model_config(config, artifacts.model_dir)
        remove_backup(_backup_dir(artifacts))
    _LOG.info("trained %d epochs in %.1fs (%.0f examples/s); published epoch %d: %s", epochs_run, seconds,
              summary["train_examples_per_second"], published_epoch + 1, reason)
    return summary


def _check_strategy(config: Config, strategy: tf.distribute.Strategy):
    """Refuses the training options that run on one replica only when the strategy gives more."""
    training = config.training
    if training.loss_balancing != "fixed" and strategy.num_replicas_in_sync > 1:
        # PCGrad's projections are not linear, so per-replica ones do not add up to the global one;
        # uncertainty weighting fails TensorFlow's gradient all-reduce (mismatched shapes), not yet solved.
        raise DistributionError(
            f"training.loss_balancing: '{training.loss_balancing}' runs on one replica only, but "
            f"training.distribution gives {strategy.num_replicas_in_sync}; use 'fixed'")
    if training.jit_compile and strategy.num_replicas_in_sync > 1:
        # The gradient all-reduce happens inside the optimiser step, which XLA would have to compile on CPU.
        raise DistributionError(f"training.jit_compile runs on one replica only, but training.distribution "
                                f"gives {strategy.num_replicas_in_sync}; set jit_compile: false")


def load_trained_ranker(config: Config) -> MultiTaskRanker:
    """Rebuilds the configured ranker and restores the weights `train` saved.

    Always the plain ranker: the self-supervised item task only shapes training,
    so its weights stay in the checkpoint and out of evaluation and export.
    """
    artifacts = Artifacts.of(config)
    ranker = build_ranker(config, artifacts.manifest()["model_inputs"])
    ranker.load_weights(str(artifacts.weights_path)).expect_partial()
    return ranker
