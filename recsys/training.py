"""Training a ranker on the pipeline's artifacts: checkpoints, early stopping, TensorBoard.

Reproducible with the config's seed: Python, NumPy and TensorFlow are seeded,
op determinism is on, and the input order is a function of the seed.
"""
from __future__ import annotations

import json
import logging
import sys
import time

import tensorflow as tf

from features.artifacts import Artifacts
from features.config import Config
from features.errors import RecsysError
from recsys.data import (in_memory_dataset, make_dataset, make_item_dataset, split_files, transformed_feature_spec,
                         with_item_batches, with_known_steps)
from recsys.models.ranker import MultiTaskRanker, build_ranker
from recsys.models.self_supervised import ITEM_BATCH_KEY, ssl_task_config

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


def _callbacks(config: Config, artifacts: Artifacts, verbose: bool) -> list:
    monitor = config.training.monitor
    mode = "max" if monitor.endswith("auc") else "min"
    callbacks = [
        tf.keras.callbacks.ModelCheckpoint(
            str(artifacts.model_dir / "checkpoints" / "epoch-{epoch:03d}"), save_weights_only=True,
            monitor=monitor, mode=mode),
        tf.keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=config.training.early_stopping_patience,
            restore_best_weights=True, verbose=int(verbose)),
        tf.keras.callbacks.TensorBoard(str(artifacts.model_dir / "logs"), update_freq="epoch"),
        tf.keras.callbacks.TerminateOnNaN(),
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


def train(config: Config, verbose: bool = True) -> dict:
    """Trains the configured ranker, saves its best weights and returns a training summary.

    Progress: a live bar on a terminal, one line per epoch otherwise, nothing if not `verbose`.
    """
    artifacts = Artifacts.of(config)
    manifest = artifacts.manifest()
    tf.keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    spec = transformed_feature_spec(artifacts.root)
    training = config.training
    train_files, train_rows = split_files(artifacts.root, "train"), manifest["rows"]["train"]
    # An XLA step compiles once per batch shape: a last, smaller batch would cost a second compilation.
    drop_remainder = training.jit_compile and train_rows >= training.batch_size
    epoch_rows = train_rows - train_rows % training.batch_size if drop_remainder else train_rows
    if training.in_memory:
        train_data = in_memory_dataset(train_files, spec, training.batch_size, config.seed, drop_remainder)
    else:
        train_data = with_known_steps(
            make_dataset(train_files, spec, training.batch_size, shuffle=True, seed=config.seed,
                         shuffle_buffer=training.shuffle_buffer, drop_remainder=drop_remainder),
            train_rows, training.batch_size, drop_remainder)
    eval_data = with_known_steps(make_dataset(split_files(artifacts.root, "eval"), spec, training.batch_size),
                                 manifest["rows"]["eval"], training.batch_size)
    ssl = ssl_task_from_artifacts(config, artifacts, manifest) if config.ssl.enabled else None
    if ssl and config.ssl.item_sampling == "catalogue":
        train_data = with_item_batches(train_data, _catalogue_items(config, artifacts, manifest, spec),
                                       ITEM_BATCH_KEY)
    ranker = build_ranker(config, manifest["model_inputs"], ssl)
    ranker.compile(optimizer=tf.keras.optimizers.Adam(training.learning_rate),
                   steps_per_execution=training.steps_per_execution)
    ranker.optimizer.build(ranker.trainable_variables)
    clock = _TrainingClock()
    started = time.monotonic()
    history = ranker.fit(train_data, validation_data=eval_data, epochs=training.epochs,
                         callbacks=_callbacks(config, artifacts, verbose) + [clock],
                         verbose=(1 if sys.stdout.isatty() else 2) if verbose else 0)
    seconds = time.monotonic() - started
    ranker.save_weights(str(artifacts.weights_path))
    epochs_run = len(history.history["loss"])
    summary = {
        "epochs_run": epochs_run,
        "seconds": round(seconds, 2),
        "train_examples_per_second": round(epoch_rows * epochs_run / sum(clock.epoch_seconds), 1),
        "epoch_train_seconds": [round(s, 2) for s in clock.epoch_seconds],
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
    }
    if config.training.loss_balancing == "uncertainty":
        summary["learned_task_weights"] = ranker.learned_task_weights()
    (artifacts.model_dir / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
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
