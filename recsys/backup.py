"""What a killed `recsys train` resumes from: `<model_dir>/backup/`.

Two parts, written at every epoch end in this order:

- `epochs.json`: every finished epoch's logged values, from which early
  stopping's state is rebuilt (recsys.early_stopping);
- `chief/`: Keras's BackupAndRestore checkpoint of the model (weights, the
  optimiser's slots and step, the random generators of recsys.random_streams)
  and the epoch number.

Each part is replaced atomically (a renamed file; TensorFlow's checkpoint
state file), and a resume reads only the epochs the checkpoint has, so a
kill at any moment leaves a consistent backup of the last finished epoch. The
backup outlives `fit`: it is removed only once the final weights and
training.json are published, so a kill while publishing is resumed too.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import tensorflow as tf

from features.errors import RecsysError
from features.atomic_files import write_atomically

EPOCHS_FILE = "epochs.json"


def resumed_epoch(backup_dir: Path) -> int:
    """The first epoch (0-based) a run with this backup continues from; 0 without one.

    Read from the BackupAndRestore checkpoint before training so the input can
    start at that epoch's order; `fit` reads the same value when it restores.
    """
    latest = tf.train.latest_checkpoint(str(backup_dir / "chief"))
    if latest is None:
        return 0
    return int(tf.train.load_variable(latest, "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")) + 1


def past_epochs(backup_dir: Path, first_epoch: int) -> list[dict]:
    """The logged values of epochs 0 .. `first_epoch` - 1, as the killed run recorded them."""
    if first_epoch == 0:
        return []
    path = backup_dir / EPOCHS_FILE
    logged = json.loads(path.read_text()) if path.exists() else []
    if len(logged) < first_epoch:
        raise RecsysError(f"{path}: the backup's checkpoint is at epoch {first_epoch} but this file logs "
                          f"{len(logged)} epochs; delete {backup_dir} to train from the start")
    return logged[:first_epoch]


class EpochLog(tf.keras.callbacks.Callback):
    """Appends each finished epoch's logs to `<backup>/epochs.json`; placed just before BackupAndRestore."""

    def __init__(self, backup_dir: Path, past: list[dict], chief: bool):
        super().__init__()
        self.path, self.epochs, self.chief = backup_dir / EPOCHS_FILE, list(past), chief

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append({name: float(value) for name, value in (logs or {}).items()})
        if self.chief:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, json.dumps(self.epochs, indent=1) + "\n")


def remove_backup(backup_dir: Path):
    """Deletes the whole backup directory, once what it protects is published."""
    shutil.rmtree(backup_dir, ignore_errors=True)
