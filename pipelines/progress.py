"""A running job's progress in the log: rows done, the rate and, where a stage counts them, dead letters."""
from __future__ import annotations

import logging
import time

_LOG = logging.getLogger(__name__)


class Progress:
    """Logs a stage's rows and rate at most every `every_seconds`; `dead_letters=True` adds the dead letters met.

    Long jobs (preprocessing passes, batch predictions) say how far they are
    without a log line per batch.
    """

    def __init__(self, stage: str, every_seconds: float = 5.0, dead_letters: bool = False):
        self._stage, self._every, self._count_dead = stage, every_seconds, dead_letters
        self._started = self._last = time.monotonic()
        self.rows = self.dead_letters = 0

    def add(self, rows: int, dead_letters: int = 0):
        self.rows += rows
        self.dead_letters += dead_letters
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            _LOG.info("%s: %d rows (%.0f rows/s)%s", self._stage, self.rows, self.rows / (now - self._started),
                      f", {self.dead_letters} dead letters" if self._count_dead else "")
