"""Runs `recsys train` in this process and SIGKILLs it at a named point: `python -m tests.recsys.resume_kill_points CONFIG POINT EPOCH`.

The kill points, each at 0-based epoch EPOCH:

- mid_epoch: after the first training steps of the epoch (the first batch-end hook);
- checkpoint_state: the epoch's checkpoint data written, its `checkpoint` state file not yet;
- epoch_log: the backup's epochs.json updated, its checkpoint not yet written;
- backup_state: the backup checkpoint's data written, its state file not yet;
- publishing: the final weights staged, not yet swapped in (EPOCH unused);
- training_json: training.json written, the backup not yet removed (EPOCH unused).

A point that is never reached (the run stopped early before EPOCH) lets the
run finish and exit 0, which the caller sees as "not killed".
"""
from __future__ import annotations

import os
import signal
import sys

import tensorflow as tf
from tensorflow.python.lib.io import file_io

from features.config import load_config
from recsys import backup, training

POINTS = ("mid_epoch", "checkpoint_state", "epoch_log", "backup_state", "publishing", "training_json")


def _kill():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _EpochCounter(tf.keras.callbacks.Callback):
    """The epoch `fit` is in, for the hooks that have no epoch argument; first in the callback list."""

    epoch = -1

    def on_epoch_begin(self, epoch, logs=None):
        _EpochCounter.epoch = epoch


class _KillMidEpoch(tf.keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if _EpochCounter.epoch == self.epoch:
            _kill()


def _kill_before_state_file(directory_name: str, epoch: int):
    """Kills when the `checkpoint` state file in a `directory_name` directory is about to be written at `epoch`.

    Both ModelCheckpoint and BackupAndRestore write the checkpoint's data
    files first and this small file naming them last.
    """
    write = file_io.atomic_write_string_to_file

    def write_or_kill(filename, contents, overwrite=True):
        if f"/{directory_name}/" in str(filename) and _EpochCounter.epoch == epoch:
            _kill()
        return write(filename, contents, overwrite)

    file_io.atomic_write_string_to_file = write_or_kill


def _kill_after(module, name: str, epoch: int | None = None):
    """Kills right after `module.name` returns (at `epoch` when given)."""
    function = getattr(module, name)

    def call_then_kill(*args, **kwargs):
        result = function(*args, **kwargs)
        if epoch is None or _EpochCounter.epoch == epoch:
            _kill()
        return result

    setattr(module, name, call_then_kill)


def _kill_before(module, name: str):
    function = getattr(module, name)

    def kill(*args, **kwargs):
        _kill()
        return function(*args, **kwargs)

    setattr(module, name, kill)


def arm(point: str, epoch: int):
    """Patches the training code so this process dies at `point`."""
    callbacks = training._callbacks
    extra = [_KillMidEpoch(epoch)] if point == "mid_epoch" else []
    training._callbacks = lambda *args, **kwargs: [_EpochCounter()] + callbacks(*args, **kwargs) + extra
    if point == "checkpoint_state":
        _kill_before_state_file("checkpoints", epoch)
    elif point == "backup_state":
        _kill_before_state_file("chief", epoch)
    elif point == "epoch_log":
        _kill_after(backup, "write_atomically", epoch)
    elif point == "publishing":
        _kill_before(training, "replace_directory")
    elif point == "training_json":
        _kill_before(training, "remove_backup")
    elif point != "mid_epoch":
        raise ValueError(f"unknown kill point {point!r}; one of {POINTS}")


if __name__ == "__main__":
    config_path, point, epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    arm(point, epoch)
    training.train(load_config(config_path), verbose=False)
