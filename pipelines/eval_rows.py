"""The eval split as raw, validated rows: what exported models are compared and validated on.

Exported models take raw `tf.Example`s and carry their own transform graph, so
two versions trained on different data (different vocabularies) are compared
fairly only on raw rows, each through its own transform. The rows are the ones
`recsys preprocess` put in the eval split: the same validation, the same hashed
split key; invalid rows are skipped as they were dead-lettered there.
"""
from __future__ import annotations

import logging
from typing import Iterator

import pandas as pd
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from features.config import Config
from pipelines.sources import _matched_files, input_columns
from pipelines.split import EVAL, split_of
from pipelines.validation import RowError, RowValidator

_LOG = logging.getLogger(__name__)
_CHUNK_ROWS = 50_000


def _raw_chunks(config: Config) -> Iterator[pd.DataFrame]:
    for path in _matched_files(config.input.path):
        with FileSystems.open(path) as handle:  # decompresses .gz by extension
            if config.input_format == "parquet":
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=_CHUNK_ROWS):
                    yield batch.to_pandas()
            else:
                yield from pd.read_csv(handle, dtype=str, keep_default_na=False, chunksize=_CHUNK_ROWS)


def read_eval_rows(config: Config, limit: int | None = None) -> tuple[list[dict], int]:
    """(validated eval-split rows, how many invalid rows were skipped), at most `limit` rows."""
    input_columns(config)  # a missing required column is one clear error, not a skipped row per line
    validate, rows, invalid, seen = RowValidator(config), [], 0, 0
    key, fraction = config.split.key, config.split.eval_fraction
    for chunk in _raw_chunks(config):
        for raw in chunk.to_dict(orient="records"):
            if split_of(raw.get(key), fraction) != EVAL:
                continue
            try:
                rows.append(validate(raw))
            except RowError:
                invalid += 1
                continue
            if limit is not None and len(rows) >= limit:
                return rows, invalid
        seen += len(chunk)
        _LOG.info("read %d raw rows, %d in the eval split", seen, len(rows))
    return rows, invalid
