"""What a report describes: which model, trained when, on which data, by which code and config.

A report without this is a number nobody can trace back; the HTML report shows it
first, `evaluation.json` keeps it under `about`.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import subprocess
from pathlib import Path

from features.artifacts import Artifacts
from features.config import Config


def code_version() -> str:
    """The package version, and the git commit when run from a checkout (with '+dirty' for local changes)."""
    version = importlib.metadata.version("recsys-multitask")
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty=+dirty"],
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} ({commit})" if commit else version


def _trained_at(model_dir: Path) -> str | None:
    training = model_dir / "training.json"
    if not training.exists():
        return None
    return datetime.datetime.fromtimestamp(training.stat().st_mtime, datetime.timezone.utc).isoformat(
        timespec="seconds")


def provenance(config: Config, split: str, config_file: str | None = None, model: str | None = None) -> dict:
    """The report's `about` block; `model` names an exported version when that is what was scored."""
    artifacts = Artifacts.of(config)
    manifest = artifacts.manifest()
    return {
        "config_name": config.name,
        "config_file": str(Path(config_file).resolve()) if config_file else None,
        "model": model or str(config.model_dir.resolve()),
        "trained_at": _trained_at(config.model_dir),
        "split": split,
        "data": {"input": manifest["input"], "artifacts": str(artifacts.root.resolve()),
                 "rows": {name: manifest["rows"][name] for name in config.split_names}},
        "evaluated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
    }
