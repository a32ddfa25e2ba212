"""Early stopping whose whole state follows from the monitored values of the epochs so far.

Keras's EarlyStopping keeps its best value, patience counter and best weights
in memory, so a run resumed from a backup forgets them: it stops later and
publishes another epoch's weights than an uninterrupted run. Here the state
is rebuilt by replaying the logged values of the epochs before the resume,
and the published weights are read back from the chosen epoch's checkpoint
instead of being held in memory, so a resumed run chooses what an
uninterrupted one chooses.

The rule is Keras's: a value improves on the best when strictly better; after
`patience` epochs in a row without improvement training stops (0 and 1 both
stop at the first such epoch, never on the first epoch); `patience=None` never
stops.
"""
from __future__ import annotations

import math

import tensorflow as tf

from features.errors import RecsysError


class BestEpochEarlyStopping(tf.keras.callbacks.Callback):
    """Tracks the best epoch by `monitor` and stops training after `patience` epochs without improvement.

    Args:
      monitor: the logged value to watch, e.g. "val_total_loss"; "max" mode maximises it.
      patience: epochs without improvement before stopping; None: never stop, publish the last epoch.
      past_epochs: the logs of epochs 0 .. k-1 when resuming at epoch k (empty for a fresh run).
    """

    def __init__(self, monitor: str, mode: str, patience: int | None, past_epochs: list[dict]):
        super().__init__()
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.last_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._without_improvement = 0
        for epoch, logs in enumerate(past_epochs):
            self._observe(epoch, logs)

    def _is_improvement(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def _observe(self, epoch: int, logs: dict):
        if self.monitor not in logs:
            raise RecsysError(f"training.monitor: '{self.monitor}' is not among the logged values "
                              f"{sorted(logs)}; pick one of those")
        value = float(logs[self.monitor])
        self.last_epoch = epoch
        if self.best_epoch is None:  # as Keras: the first epoch is the fallback if none ever improves
            self.best_epoch = epoch
        if self._is_improvement(value):
            self.best_value, self.best_epoch, self._without_improvement = value, epoch, 0
            return
        self._without_improvement += 1
        if self.patience is not None and epoch > 0 and self._without_improvement >= max(self.patience, 1):
            self.stopped_epoch = epoch

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch is not None

    def on_epoch_end(self, epoch, logs=None):
        self._observe(epoch, logs or {})
        if self.stopped:
            self.model.stop_training = True

    def published_epoch(self) -> tuple[int, str]:
        """(0-based epoch whose weights to publish, why); call after at least one epoch."""
        if self.patience is None:
            return self.last_epoch, "early stopping is off (early_stopping_patience: null): the last epoch"
        best = f"the best {self.monitor} ({self.best_value}) of epochs 1-{self.last_epoch + 1}"
        if self.stopped:
            return self.best_epoch, (f"{best}; stopped after epoch {self.stopped_epoch + 1}, "
                                     f"{self._without_improvement} epoch(s) without improvement")
        return self.best_epoch, best
