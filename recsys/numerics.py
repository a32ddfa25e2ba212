"""Stopping training at the first non-finite loss, naming the step and the task(s) at fault.

Keras's TerminateOnNaN only says "Batch 37: Invalid loss"; with several tasks
the useful facts are which task went first and when. The ranker logs each
task's running mean loss as `<task>_loss`, so once a task's loss is NaN or
infinite its mean is too, from that batch on.
"""
from __future__ import annotations

import math

import tensorflow as tf

from features.errors import RecsysError

_COMBINED = ("loss", "total_loss", "regularization_loss")


class NonFiniteLossError(RecsysError, ArithmeticError):
    """A training loss became NaN or infinite; the message names the epoch, the batch and the tasks."""


def _non_finite(logs: dict, keys) -> dict[str, float]:
    return {key: float(logs[key]) for key in keys if key in logs and not math.isfinite(float(logs[key]))}


class StopOnNonFiniteEpochLoss(tf.keras.callbacks.Callback):
    """Raises NonFiniteLossError at the end of the first epoch whose training or validation loss is not finite.

    For ParameterServerStrategy, which allows no batch-level callbacks; elsewhere
    `StopOnNonFiniteLoss` stops at the batch instead.

    Args:
      outputs: the model's scored outputs (task names); `<output>_loss` is each one's logged loss.
    """

    def __init__(self, outputs: list[str]):
        super().__init__()
        self._task_keys = [f"{name}_loss" for name in outputs]

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs or {}, f"epoch {epoch + 1}", prefix="")
        self._check(logs or {}, f"epoch {epoch + 1}, validation", prefix="val_")

    def _check(self, logs: dict, step: str, prefix: str):
        combined = _non_finite(logs, [prefix + key for key in _COMBINED])
        tasks = _non_finite(logs, [prefix + key for key in self._task_keys])
        if not combined and not tasks:
            return
        if tasks:
            culprits = ", ".join(f"{key[len(prefix):-len('_loss')]} ({value})" for key, value in tasks.items())
            where = f"task loss not finite: {culprits}"
        else:  # every task is finite, so the combination or the regularisation overflowed
            where = "combined loss not finite: " + ", ".join(f"{k} ({v})" for k, v in combined.items())
        raise NonFiniteLossError(
            f"training stopped at {step}: {where}. Check the input for extreme values, "
            "or lower training.learning_rate")


class StopOnNonFiniteLoss(StopOnNonFiniteEpochLoss):
    """Raises NonFiniteLossError at the first training batch (or validation) whose loss is not finite."""

    def __init__(self, outputs: list[str]):
        super().__init__(outputs)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs or {}, f"epoch {self._epoch + 1}, batch {batch + 1}", prefix="")
