"""Replacing a file or a directory so that a kill at any moment leaves the old one or the new one whole."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_atomically(path: Path, text: str):
    """Writes `text` through a temporary file renamed over `path` (a rename within a directory is atomic)."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(text)
    os.replace(staging, path)


def staging_directory(directory: Path) -> Path:
    """An empty sibling of `directory` to write its next version into, for `replace_directory`."""
    staging = directory.with_name(f".{directory.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def replace_directory(staging: Path, directory: Path):
    """Puts the complete `staging` directory in the place of `directory`.

    Two renames: the old version aside, the new one in. A kill between them
    leaves no `directory` but both versions whole; the next replacement
    cleans up. Readers never see a mix of old and new files, as they could
    if a multi-file TensorFlow checkpoint were overwritten in place.
    """
    retired = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    if directory.exists():
        directory.rename(retired)
    staging.rename(directory)
    shutil.rmtree(retired, ignore_errors=True)
