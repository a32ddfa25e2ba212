"""What both engines count while splitting, and the checks that a split can train and evaluate a model.

Counts are flat `{key: n}` so a Beam job can sum them per key and the
columnar engine can add them up in a Counter; the manifest is built from the
same keys either way. Rows are conserved: every row read is in exactly one
split, a dead letter, or dropped by `pipeline.sample_space_violations: drop`.
"""
from __future__ import annotations

from features.config import Config
from features.errors import RecsysError
from pipelines.split import EVAL, TRAIN
from pipelines.validation import DeadLetter, RowError

DEAD_LETTER = "dead_letter"
DROPPED = "dropped"
REPAIRED = "repaired"
UNKNOWN_FIELDS = "unknown_fields"  # slot fields ignored (input.slots.unknown_fields: ignore)
COUNTS = "counts"


class PipelineError(RecsysError, RuntimeError):
    """The job ran but its output must not be used (too many bad rows)."""


class SplitError(PipelineError):
    """A split cannot train or evaluate a model: empty, or a task's label has one class there."""


def dead_letter_json(error: RowError, row, path: str) -> dict:
    """A dead letter as written by both engines: reason, field, message, the raw row and its file."""
    return {**DeadLetter(error.reason, error.field, error.message, row).to_json_dict(), "file": path}


class LabelCounter:
    """Rows in each binary task's sample space and its positives, per split: `labels/<split>/<task>/...`."""

    def __init__(self, config: Config):
        self._tasks = [(t.name, t.label, config.task(t.sample_space).label if t.sample_space else None)
                       for t in config.tasks if t.type == "binary"]

    def add(self, counts, split: str, row: dict):
        for name, label, space_label in self._tasks:
            if space_label is None or row[space_label] == 1:
                counts[f"labels/{split}/{name}/rows"] += 1
                counts[f"labels/{split}/{name}/positives"] += int(row[label] == 1)

    def add_columns(self, counts, split: str, columns: dict):
        """The same for a batch of typed columns (NumPy arrays)."""
        for name, label, space_label in self._tasks:
            in_space = columns[space_label] == 1 if space_label else None
            labels = columns[label] if in_space is None else columns[label][in_space]
            counts[f"labels/{split}/{name}/rows"] += int(labels.size)
            counts[f"labels/{split}/{name}/positives"] += int((labels == 1).sum())

    @staticmethod
    def from_counts(config: Config, counts: dict) -> dict:
        """{split: {task: {rows, positives}}} for the manifest."""
        return {split: {t.name: {kind: counts.get(f"labels/{split}/{t.name}/{kind}", 0)
                                 for kind in ("rows", "positives")}
                        for t in config.tasks if t.type == "binary"}
                for split in config.split_names}


def _empty_split_cause(config: Config, split: str, rows: dict) -> str:
    given = config.input.patterns
    if split in given:
        return f"every row of input.{split} was rejected or dropped (see dead_letter/)"
    source = "input.path" if config.input.path else "input.train"
    if config.split.key:
        return (f"split.key '{config.split.key}' hashed every valid row of {source} elsewhere "
                f"({', '.join(f'{s} {rows[s]}' for s in config.split_names)}); a key with few distinct values "
                "puts whole groups on one side: use a key with many values, or give the split's files")
    return f"{source} has too few valid rows to hash any into {split}"


def split_problems(config: Config, rows: dict, labels: dict) -> list[str]:
    """Why the splits cannot train and evaluate a model; empty when they can."""
    problems = []
    for split in config.split_names:
        if rows[split] == 0:
            problems.append(f"the {split} split is empty: {_empty_split_cause(config, split, rows)}")
    for split in (TRAIN, EVAL):
        if rows[split] == 0:
            continue
        for task in config.tasks:
            found = labels[split].get(task.name)
            if found is None:
                continue
            space = f" in its sample space ({task.sample_space} positives)" if task.sample_space else ""
            if found["rows"] == 0:
                problems.append(f"task '{task.name}' has no rows{space} in the {split} split")
            elif found["positives"] in (0, found["rows"]):
                only = "1" if found["positives"] else "0"
                problems.append(f"task '{task.name}': label '{task.label}' is {only} on all {found['rows']} "
                                f"rows{space} of the {split} split (one class: nothing to learn or rank)")
    return problems

