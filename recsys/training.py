"""Training a ranker on the pipeline's artifacts: checkpoints, early stopping, TensorBoard.

Reproducible with the config's seed: Python, NumPy and TensorFlow are seeded,
op determinism is on, and each epoch's input order is a function of the seed
and the epoch number only. That is what lets a killed run resume: the
BackupAndRestore callback keeps the model and optimiser at every epoch end
under `<model_dir>/backup`, and a restarted `recsys train` continues from the
next epoch with the same data order an uninterrupted run would have seen.
The backup is removed when training finishes.

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
from recsys.data import (corrupt_shard_error, in_memory_epochs, make_dataset, make_item_dataset, shard_by_element,
                         split_files, training_epochs, transformed_feature_spec, with_item_batches, with_known_steps)
from recsys.distribution import (DistributionError, is_chief, make_strategy, resolve_mode,
                                 serve_if_parameter_server_task)
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


def resumed_epoch(backup_dir: Path) -> int:
    """The first epoch (0-based) a run with this backup continues from; 0 without one.

    Read from the BackupAndRestore checkpoint before training so the input can
    start at that epoch's order; `fit` reads the same value when it restores.
    """
    latest = tf.train.latest_checkpoint(str(backup_dir / "chief"))
    if latest is None:
        return 0
    return int(tf.train.load_variable(latest, "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")) + 1


def _callbacks(config: Config, artifacts: Artifacts, steps_per_epoch: int, verbose: bool,
               batch_hooks: bool = True) -> list:
    """Keras callbacks; `batch_hooks=False` under ParameterServerStrategy, which allows only epoch-level ones."""
    monitor = config.training.monitor
    mode = "max" if monitor.endswith("auc") else "min"
    callbacks = [
        _StopOnShortInput(steps_per_epoch, split_files(artifacts.root, "train")),
        (StopOnNonFiniteLoss if batch_hooks else StopOnNonFiniteEpochLoss)(config.output_names),
        tf.keras.callbacks.ModelCheckpoint(
            str(artifacts.model_dir / "checkpoints" / "epoch-{epoch:03d}"), save_weights_only=True,
            monitor=monitor, mode=mode),
        tf.keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=config.training.early_stopping_patience,
            restore_best_weights=True, verbose=int(verbose)),
        tf.keras.callbacks.TensorBoard(str(artifacts.model_dir / "logs"), update_freq="epoch"),
        # Last, so an epoch's backup is written only after every other callback accepted the epoch.
        tf.keras.callbacks.BackupAndRestore(str(_backup_dir(artifacts))),
    ]
    return callbacks


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


def _catalogue_items(config: Config, artifacts: Artifacts, manifest: dict, spec: dict):
    """Endless uniform draws from the item corpus, parsing only the item features."""
    files = sorted(str(p) for p in artifacts.item_corpus_dir.glob("*.tfrecord.gz"))
    if not files:
        raise FileNotFoundError(f"no item corpus in {artifacts.item_corpus_dir}; run `recsys preprocess` "
                                "with ssl.enabled: true")
    item_spec = {name: spec[name] for name in config.ssl_item_features}
    return make_item_dataset(files, item_spec, config.ssl.batch_size or config.training.batch_size,
                             seed=config.seed, shuffle_buffer=max(manifest["ssl"]["items"], 1))


def _save_final_weights(ranker: MultiTaskRanker, artifacts: Artifacts, chief: bool):
    """Every worker must save (variables may need a collective read); only the chief keeps its copy."""
    if chief:
        ranker.save_weights(str(artifacts.weights_path))
        return
    scratch = tempfile.mkdtemp(prefix="recsys-worker-weights-")
    ranker.save_weights(str(Path(scratch) / "ranker"))
    shutil.rmtree(scratch, ignore_errors=True)


def _inputs(config: Config, artifacts: Artifacts, strategy: tf.distribute.Strategy, first_epoch: int,
            drop_remainder: bool, ssl: dict | None):
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
            dataset = with_item_batches(dataset, _catalogue_items(config, artifacts, manifest, spec), ITEM_BATCH_KEY)
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
    """Trains the configured ranker, saves its best weights and returns a training summary.

    Progress: a live bar on a terminal, one line per epoch otherwise, nothing if not `verbose`.
    On a parameter-server cluster's "worker" or "ps" task it serves until the job ends instead.
    """
    training = config.training
    if serve_if_parameter_server_task(training.distribution):
        return {}
    strategy = make_strategy(training.distribution)  # before any other TensorFlow work
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
    artifacts = Artifacts.of(config)
    manifest = artifacts.trainable_manifest()
    tf.keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    first_epoch = resumed_epoch(_backup_dir(artifacts))
    if first_epoch:
        _LOG.info("resuming from the backup in %s at epoch %d", _backup_dir(artifacts), first_epoch + 1)
    train_rows = manifest["rows"]["train"]
    # An XLA step compiles once per batch shape: a last, smaller batch would cost a second compilation.
    drop_remainder = training.jit_compile and train_rows >= training.batch_size
    steps_per_epoch = train_rows // training.batch_size if drop_remainder else math.ceil(
        train_rows / training.batch_size)
    epoch_rows = steps_per_epoch * training.batch_size if drop_remainder else train_rows
    ssl = ssl_task_from_artifacts(config, artifacts, manifest) if config.ssl.enabled else None
    train_data, eval_data, validation_steps = _inputs(config, artifacts, strategy, first_epoch, drop_remainder, ssl)
    with strategy.scope():
        ranker = build_ranker(config, manifest["model_inputs"], ssl)
        ranker.compile(optimizer=make_optimizer(training.optimizer, training.learning_rate),
                       steps_per_execution=training.steps_per_execution)
        ranker.optimizer.build(ranker.trainable_variables)
    clock = _TrainingClock()
    batch_hooks = not isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy)
    started = time.monotonic()
    try:
        history = ranker.fit(train_data, steps_per_epoch=steps_per_epoch, validation_data=eval_data,
                             validation_steps=validation_steps,
                             epochs=training.epochs,
                             callbacks=_callbacks(config, artifacts, steps_per_epoch, verbose, batch_hooks) + [clock],
                             verbose=(1 if sys.stdout.isatty() else 2) if verbose else 0)
    except tf.errors.DataLossError as err:
        raise corrupt_shard_error(split_files(artifacts.root, "train") + split_files(artifacts.root, "eval"),
                                  err) from None
    seconds = time.monotonic() - started
    chief = is_chief(strategy)
    _save_final_weights(ranker, artifacts, chief)
    epochs_run = len(history.history["loss"])
    summary = {
        "epochs_run": epochs_run,
        "resumed_at_epoch": first_epoch + 1 if first_epoch else None,
        "distribution": resolve_mode(training.distribution),
        "replicas": strategy.num_replicas_in_sync,
        "seconds": round(seconds, 2),
        "train_examples_per_second": round(epoch_rows * epochs_run / max(sum(clock.epoch_seconds), 1e-9), 1),
        "epoch_train_seconds": [round(s, 2) for s in clock.epoch_seconds],
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
    }
    if config.training.loss_balancing == "uncertainty":
        summary["learned_task_weights"] = ranker.learned_task_weights()
    if chief:
        (artifacts.model_dir / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_model_config(config, artifacts.model_dir)
    _LOG.info("trained %d epochs in %.1fs (%.0f examples/s)", epochs_run, seconds,
              summary["train_examples_per_second"])
    return summary


def load_trained_ranker(config: Config) -> MultiTaskRanker:
    """Rebuilds the configured ranker and restores the weights `train` saved.

    Always the plain ranker: the self-supervised item task only shapes training,
    so its weights stay in the checkpoint and out of evaluation and export.
    """
    artifacts = Artifacts.of(config)
    ranker = build_ranker(config, artifacts.manifest()["model_inputs"])
    ranker.load_weights(str(artifacts.weights_path)).expect_partial()
    return ranker
