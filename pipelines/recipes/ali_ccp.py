"""Ali-CCP (Alibaba Click and Conversion Prediction) as the ESMM paper released it (Ma et al., SIGIR 2018).

Source layout (https://tianchi.aliyun.com/dataset/408), for each of train and
test (the release splits them by time), plain or gzip, in `--source` or its
`train/` and `test/` subdirectories:

- `sample_skeleton_{split}.csv`: one impression per line, six comma-separated
  values: sample id, click, conversion, the md5 index of the user's common
  features, the number of features, and the feature list;
- `common_features_{split}.csv`: three values: the md5 index, the number of
  features, the feature list (the user fields, shared by many impressions).

A feature list is `field\\x02id\\x03value` items separated by `\\x01`. The
fields are the paper's 23 (user 101-150_14, ad 205-216, user-ad combinations
508-853, position 301); the values after \\x03 (behaviour counts) are dropped,
as in the AITM authors' and NVIDIA Merlin's preprocessing, keeping the ids.

Output: one CSV per split with a header, one column per field, multi-valued
fields joined by '|'. The behaviour lists (109_14 ... 150_14) are multi-valued;
so are 210 and 853 here, since an item may sit under several intention nodes;
any other field that repeats in one impression is rejected
(`repeated_single_valued_field`), so the summary shows if that reading of the
release is wrong. Impressions with a conversion but no click are
rejected (`conversion_without_click`), as the public preprocessors drop them:
CVR lives on clicked impressions. The config (`ali_ccp.yaml`) trains ESMM:
CTR and CTCVR over all impressions, CVR measured on clicked ones.

Memory: neither file is held. The common features (one line per user context,
with long behaviour lists) go first into an on-disk
SQLite table keyed by md5 in `out_dir`, removed at the end; then the skeleton
(about 42M impressions per split) streams one line at a time with one lookup
per change of user. Resident memory stays near 100 MB (SQLite's 64 MB page
cache, one line, the interpreter): measured 105 MB peak on 410k generated
impressions of 20k users with 20-120 ids per behaviour list, written at about
17k impressions per second on one loaded core, so the full release takes
roughly an hour and a half per 84M impressions. Disk: the split files (every
impression carries its user's lists) plus the SQLite table.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Iterable

from pipelines.recipes.outputs import SplitWriter, summary, write_ready_config
from pipelines.recipes.source_files import (CONVERSION_WITHOUT_CLICK, RecipeError, Rejected, data_lines,
                                            find_source_file)
from pipelines.validation import INVALID_LABEL, WRONG_COLUMN_COUNT

NAME = "ali-ccp"
LAYOUT = ("the Ali-CCP release: sample_skeleton_{train,test}.csv and common_features_{train,test}.csv "
          "(https://tianchi.aliyun.com/dataset/408)")

# field id -> output column (ESMM paper, Table 'features of Ali-CCP'); LIST_FIELDS may hold several ids
FIELDS = {
    "101": "user_id", "121": "user_profile", "122": "user_group", "124": "user_gender", "125": "user_age",
    "126": "user_consumption_1", "127": "user_consumption_2", "128": "user_occupation", "129": "user_geography",
    "109_14": "user_categories", "110_14": "user_shops", "127_14": "user_brands", "150_14": "user_intentions",
    "205": "item_id", "206": "item_category", "207": "item_shop", "210": "item_intentions", "216": "item_brand",
    "508": "user_item_category", "509": "user_item_shop", "702": "user_item_brand",
    "853": "user_item_intentions", "301": "position",
}
LIST_FIELDS = {"109_14", "110_14", "127_14", "150_14", "210", "853"}
LABELS = ("click", "conversion")
HEADER = ["sample_id", *LABELS, *FIELDS.values()]
LIST_SEPARATOR = "|"

MALFORMED_FEATURE = "malformed_feature"
FEATURE_COUNT_MISMATCH = "feature_count_mismatch"
REPEATED_FIELD = "repeated_single_valued_field"
UNKNOWN_COMMON_INDEX = "unknown_common_feature_index"
QUOTE_IN_VALUE = "quote_in_value"


def parse_features(count: str, feature_list: str) -> dict[str, list[str]]:
    """{field id: [ids]} of the known fields in one feature list; checks the declared count."""
    items = feature_list.split("\x01") if feature_list else []
    if not count.isdigit() or int(count) != len(items):
        raise Rejected(FEATURE_COUNT_MISMATCH)
    fields: dict[str, list[str]] = {}
    for item in items:
        field, sep, rest = item.partition("\x02")
        feature_id, sep2, _value = rest.partition("\x03")
        if not (sep and sep2 and field and feature_id):
            raise Rejected(MALFORMED_FEATURE)
        if field in FIELDS:
            fields.setdefault(field, []).append(feature_id)
    return fields


def output_row(sample_id: str, click: str, conversion: str, fields: dict[str, list[str]],
               user: dict[str, str]) -> list:
    """The values to write: sample id, labels, then each field's ids ('|'-joined), the impression's then the user's."""
    if click not in ("0", "1") or conversion not in ("0", "1"):
        raise Rejected(INVALID_LABEL)
    if conversion == "1" and click == "0":
        raise Rejected(CONVERSION_WITHOUT_CLICK)
    values = []
    for field in FIELDS:
        joined = [LIST_SEPARATOR.join(fields[field])] if field in fields else []
        if field in user:
            joined.append(user[field])
        value = LIST_SEPARATOR.join(joined)
        if field not in LIST_FIELDS and LIST_SEPARATOR in value:
            raise Rejected(REPEATED_FIELD)
        values.append(value)
    return [sample_id, click, conversion, *values]


def _check_plain(line: str, count: int) -> None:
    """Six (skeleton) or three (common features) values, none that CSV would have to quote."""
    if line.count(",") != count - 1:
        raise Rejected(WRONG_COLUMN_COUNT)
    if '"' in line:
        raise Rejected(QUOTE_IN_VALUE)


class CommonFeatures:
    """md5 index -> the user's fields ({field: '|'-joined ids}), in an on-disk SQLite table.

    On disk so the full release fits any machine; joined once here because a
    user's long behaviour lists are copied into each of their impressions.
    """

    def __init__(self, path: Path):
        path.unlink(missing_ok=True)
        self._path = path
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("PRAGMA cache_size = -65536")  # KiB: 64 MB
        self._db.execute("CREATE TABLE common (md5 TEXT PRIMARY KEY, fields TEXT NOT NULL)")
        self._last = (None, None)  # consecutive impressions often share a user
        self.rejected = Counter()
        self.duplicates = 0

    def load(self, lines: Iterable[tuple[int, str]], batch: int = 10_000) -> int:
        pending, loaded = [], 0
        for _, line in lines:
            values = line.split(",")
            try:
                _check_plain(line, 3)
                fields = parse_features(values[1], values[2])
                pending.append((values[0], json.dumps({f: LIST_SEPARATOR.join(ids) for f, ids in fields.items()})))
            except Rejected as err:
                self.rejected[err.reason] += 1
            if len(pending) >= batch:
                loaded += self._insert(pending)
                pending = []
        loaded += self._insert(pending)
        self._db.commit()
        return loaded

    def _insert(self, pending: list) -> int:
        cursor = self._db.executemany("INSERT OR IGNORE INTO common VALUES (?, ?)", pending)
        self.duplicates += len(pending) - cursor.rowcount  # the first line of an index wins
        return cursor.rowcount

    def get(self, md5: str) -> dict[str, str]:
        if self._last[0] != md5:
            found = self._db.execute("SELECT fields FROM common WHERE md5 = ?", (md5,)).fetchone()
            if found is None:
                raise Rejected(UNKNOWN_COMMON_INDEX)
            self._last = (md5, json.loads(found[0]))
        return self._last[1]

    def close(self) -> None:
        self._db.close()
        self._path.unlink(missing_ok=True)


def _write_split(split: str, source_dir: Path, out_dir: Path, writer: SplitWriter, rejected: Counter) -> dict:
    skeleton = find_source_file(source_dir, f"sample_skeleton_{split}.csv", LAYOUT, ("", split))
    common_file = find_source_file(source_dir, f"common_features_{split}.csv", LAYOUT, ("", split))
    common = CommonFeatures(out_dir / f".common_features_{split}.sqlite")
    try:
        users = common.load(data_lines(common_file))
        for _, line in data_lines(skeleton):
            values = line.split(",")
            try:
                _check_plain(line, 6)
                sample_id, click, conversion, md5, count, feature_list = values
                fields = parse_features(count, feature_list)
                writer.write_plain(split, output_row(sample_id, click, conversion, fields, common.get(md5)))
            except Rejected as err:
                rejected[err.reason] += 1
    finally:
        common.close()
    return {"users": users, "rejected": dict(common.rejected), "duplicate_indexes": common.duplicates}


def prepare(source_dir, out_dir) -> dict:
    """Writes train/test CSVs and `ali_ccp.yaml` into `out_dir`; returns the summary."""
    started = time.monotonic()
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    for split in ("train", "test"):  # every file checked before hours of work start
        for name in (f"sample_skeleton_{split}.csv", f"common_features_{split}.csv"):
            find_source_file(source_dir, name, LAYOUT, ("", split))
    rejected = Counter()
    with SplitWriter(out_dir, HEADER, ["train", "test"]) as writer:
        common = {split: _write_split(split, source_dir, out_dir, writer, rejected) for split in ("train", "test")}
    if not writer.rows["train"]:
        raise RecipeError(f"--source {source_dir}: no usable impression in sample_skeleton_train.csv "
                          f"(rejected: {dict(rejected)}); expected {LAYOUT}")
    config_path = write_ready_config("ali_ccp.yaml", out_dir)
    return summary(NAME, writer, rejected, config_path, started, common_features=common)
