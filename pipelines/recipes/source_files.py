"""Finding and reading a public dataset's files as they were published.

The datasets cannot be downloaded by the project (their licences ask users to
fetch them), so the first thing a recipe checks is that the user's directory
holds the published layout, and says which file is missing and where to get it.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO, Iterator

from features.errors import RecsysError


class RecipeError(RecsysError):
    """A source directory that does not hold the published layout, or a recipe used wrongly."""


CONVERSION_WITHOUT_CLICK = "conversion_without_click"  # a funnel row no public preprocessor keeps


class Rejected(ValueError):
    """A source row a recipe cannot use; `reason` is counted in the summary (nothing is dropped silently)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def find_source_file(source_dir: Path, name: str, layout: str, subdirs: tuple[str, ...] = ("",)) -> Path:
    """`name` or its gzip copy `name.gz` in `source_dir` (or one of its `subdirs`, as some archives unpack).

    Otherwise one error naming the missing file and the layout expected.
    """
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise RecipeError(f"--source {source_dir}: not a directory (expected {layout})")
    for subdir in subdirs:
        for candidate in (source_dir / subdir / name, source_dir / subdir / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise RecipeError(f"--source {source_dir}: missing {name} (or {name}.gz); expected {layout}")


def open_text(path: Path) -> IO[str]:
    """A published file as text, decompressing `.gz`. Lines end with '\\n' only (the files are Unix text)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def data_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) for every non-blank line; one line in memory at a time."""
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line
