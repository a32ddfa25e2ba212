"""The item corpus: one transformed row per distinct item of the training split.

The self-supervised item task draws its items uniformly from the catalogue,
not from the impression stream, where a few head items fill most batches
(Yao et al., CIKM 2021). The corpus is the catalogue as the training split
knows it, encoded by the same transform graph as every other example.
"""
from __future__ import annotations

import json

import apache_beam as beam


def _representative(rows) -> dict:
    """The same row for an item whichever worker saw which: the smallest by its sorted JSON."""
    return min(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


class DistinctItems(beam.PTransform):
    """Validated raw rows → one raw row per distinct value of `key_column` (the item id)."""

    def __init__(self, key_column: str):
        super().__init__()
        self._key_column = key_column

    def expand(self, rows):
        return (rows
                | "KeyByItem" >> beam.Map(lambda row, key=self._key_column: (row[key], row))
                | "OneRowPerItem" >> beam.CombinePerKey(_representative)
                | "DropItemKey" >> beam.Values())
