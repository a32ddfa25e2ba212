"""What every recipe writes: one CSV per split, a ready config, and a summary.

Splits are gzip CSV files with a header, so the config names them as given
(`input: {train, eval, test}`) and needs no dialect options; gzip level 1
because the large datasets are written once and read a few times, and level 6
would triple the time `prepare` spends compressing.
"""
from __future__ import annotations

import csv
import gzip
import json
import time
from collections import Counter
from pathlib import Path

from features.config import load_config
from pipelines.recipes.source_files import RecipeError

TEMPLATES = Path(__file__).resolve().parents[2] / "data_samples" / "recipes"


def split_file_name(split: str) -> str:
    return f"{split}.csv.gz"


class SplitWriter:
    """Writes rows to `<out_dir>/<split>.csv.gz` under one header, counting rows per split.

    Rows go to `<split>.csv.gz.partial` files, renamed only when every split is
    complete, so a run that fails or is killed (Ali-CCP takes hours) never
    leaves a truncated file that looks finished.
    """

    def __init__(self, out_dir: Path, header: list[str], splits: list[str]):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.header = header
        self.rows = Counter({split: 0 for split in splits})
        self._paths = {split: out_dir / split_file_name(split) for split in splits}
        self._files = {split: gzip.open(self._partial(split), "wt", compresslevel=1, encoding="utf-8", newline="")
                       for split in splits}
        self._writers = {split: csv.writer(handle, lineterminator="\n") for split, handle in self._files.items()}
        for writer in self._writers.values():
            writer.writerow(header)

    def _partial(self, split: str) -> Path:
        return self._paths[split].with_name(self._paths[split].name + ".partial")

    def write(self, split: str, values: list) -> None:
        self._writers[split].writerow(values)
        self.rows[split] += 1

    def write_plain(self, split: str, values: list) -> None:
        """`write` without CSV quoting, for values known to hold no comma, quote or line break (ids): 2x faster."""
        self._files[split].write(",".join(map(str, values)) + "\n")
        self.rows[split] += 1

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        for handle in self._files.values():
            handle.close()
        for split, path in self._paths.items():
            if exc_type is None:
                self._partial(split).replace(path)
            else:
                self._partial(split).unlink(missing_ok=True)


def write_ready_config(template_name: str, out_dir: Path) -> Path:
    """Copies `data_samples/recipes/<template_name>` next to the split files, artifacts under `out_dir`.

    The template names the split files relatively, so the copy reads them from
    its own directory; it is loaded here once so a broken template fails now,
    not at `recsys run`.
    """
    template = TEMPLATES / template_name
    target = out_dir / template_name
    text = template.read_text()
    artifacts = (out_dir / "artifacts").resolve()
    target.write_text(f"{text.rstrip()}\n\n# added by `recsys datasets prepare`: outputs next to the data\n"
                      f"artifacts_dir: {json.dumps(str(artifacts))}\n")
    config = load_config(target)
    missing = [pattern for pattern in config.input.patterns.values() if not Path(pattern).is_file()]
    if missing:
        raise RecipeError(f"{template}: names input files the recipe did not write: {missing}")
    return target


def summary(dataset: str, writer: SplitWriter, rejected: Counter, config_path: Path, started: float,
            **extra) -> dict:
    """The recipe's result, printed for people and returned for callers and tests."""
    result = {"dataset": dataset, "rows": dict(writer.rows), "rejected": dict(rejected),
              "config": str(config_path), "seconds": round(time.monotonic() - started, 1), **extra}
    splits = ", ".join(f"{split} {count:,}" for split, count in writer.rows.items())
    reasons = f" ({', '.join(f'{r} {n:,}' for r, n in sorted(rejected.items()))})" if rejected else ""
    print(f"{dataset}: wrote {splits} rows in {result['seconds']}s; rejected {sum(rejected.values()):,}{reasons}; "
          f"config {config_path}")
    return result
