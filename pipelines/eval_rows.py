"""A split's raw, validated rows: what exported models are compared, validated and tested on.

Exported models take raw `tf.Example`s and carry their own transform graph, so
two versions trained on different data (different vocabularies) are compared
fairly only on raw rows, each through its own transform. The rows are the ones
`recsys preprocess` put in the split: the same parsing and validation, the
same files or hashed split key; invalid rows are skipped as they were
dead-lettered there.
"""
from __future__ import annotations

import logging

from features.config import Config
from pipelines.sources import iter_split_rows
from pipelines.split import EVAL

_LOG = logging.getLogger(__name__)
_LOG_EVERY = 50_000


def read_eval_rows(config: Config, limit: int | None = None, split: str = EVAL) -> list[dict]:
    """The validated rows of `split` (eval by default), at most `limit` of them."""
    rows = []
    for row in iter_split_rows(config, split, limit):
        rows.append(row)
        if len(rows) % _LOG_EVERY == 0:
            _LOG.info("read %d %s rows", len(rows), split)
    return rows
