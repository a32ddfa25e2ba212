"""AliExpress (Li et al., CIKM 2020) per country, as MTReclib publishes and reads it.

Source layout: one country's directory (`AliExpress_NL`, `_ES`, `_FR`, `_US`,
`_RU`) holding `train.csv` and `test.csv` (plain or gzip), each with MTReclib's
header: `search_id`, `categorical_1`..`categorical_16`, `numerical_1`..
`numerical_63`, `click`, `conversion`; `--source` may be that directory, or
its parent with `country` naming it. These are the files MTReclib's
`data/preprocess.py` writes from the Tianchi release (dataset 74690), mapping
the original purchase-funnel label to two binary labels: 0 -> (click 0,
conversion 0), 1 -> (1, 0), 2 -> (1, 1). So `conversion` already means click
and purchase (CTCVR over all impressions), and a row with conversion but no
click cannot come from that mapping: it is rejected
(`conversion_without_click`), as are labels other than 0 and 1.

Output: the same columns (labels as integers), train and test kept as given;
eval is hashed out of train by search id, so a search's impressions stay
together. The config (`aliexpress.yaml`) trains MMoE on CTR and CTCVR over all
impressions with MTReclib's sizes, as its benchmark table reports them.

Memory: both files stream one line at a time.
"""
from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path

from pipelines.recipes.outputs import SplitWriter, summary, write_ready_config
from pipelines.recipes.source_files import (CONVERSION_WITHOUT_CLICK, RecipeError, Rejected, find_source_file,
                                            open_text)
from pipelines.validation import INVALID_LABEL, WRONG_COLUMN_COUNT

NAME = "aliexpress"
LAYOUT = ("MTReclib's AliExpress country directory (e.g. AliExpress_NL/) with train.csv and test.csv "
          "(https://github.com/easezyc/Multitask-Recommendation-Library)")
CATEGORICAL = [f"categorical_{i}" for i in range(1, 17)]
NUMERICAL = [f"numerical_{i}" for i in range(1, 64)]
LABELS = ("click", "conversion")
HEADER = ["search_id", *CATEGORICAL, *NUMERICAL, *LABELS]
# (click, conversion) pairs MTReclib's mapping of the original label 0/1/2 can produce
MAPPED_LABELS = {(0, 0), (1, 0), (1, 1)}



def _label(text: str) -> int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number in (0.0, 1.0) else None


def output_row(values: list[str]) -> list:
    """The row to write; raises Rejected with the reason it cannot be."""
    if len(values) != len(HEADER):
        raise Rejected(WRONG_COLUMN_COUNT)
    click, conversion = _label(values[-2]), _label(values[-1])
    if click is None or conversion is None:
        raise Rejected(INVALID_LABEL)
    if (click, conversion) not in MAPPED_LABELS:
        raise Rejected(CONVERSION_WITHOUT_CLICK)
    return [*values[:-2], click, conversion]


def _write_split(path: Path, split: str, writer: SplitWriter, rejected: Counter) -> None:
    with open_text(path) as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header != HEADER:
            shown = ", ".join(header[:4] + ["..."] + header[-2:]) if header else "an empty file"
            raise RecipeError(f"{path}: the header is not MTReclib's (search_id, categorical_1..16, "
                              f"numerical_1..63, click, conversion): got {shown}; expected {LAYOUT}")
        for values in rows:
            if not values:
                continue
            try:
                writer.write(split, output_row(values))
            except Rejected as err:
                rejected[err.reason] += 1


def prepare(source_dir, out_dir, country: str | None = None) -> dict:
    """Writes train/test CSVs and `aliexpress.yaml` into `out_dir`; returns the summary."""
    started = time.monotonic()
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if country:
        source_dir = source_dir / f"AliExpress_{country.upper()}"
    files = {split: find_source_file(source_dir, f"{split}.csv", LAYOUT) for split in ("train", "test")}
    rejected = Counter()
    with SplitWriter(out_dir, HEADER, list(files)) as writer:
        for split, path in files.items():
            _write_split(path, split, writer, rejected)
    config_path = write_ready_config("aliexpress.yaml", out_dir)
    return summary(NAME, writer, rejected, config_path, started, source=str(source_dir))
