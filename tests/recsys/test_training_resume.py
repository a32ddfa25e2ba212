"""A killed `recsys train`, run again, publishes the bytes an uninterrupted run publishes.

Dropout and early stopping are on, and the config makes early stopping stop
before the last epoch and publish an earlier one, so every piece of resumed
state matters: weights, optimiser slots and step, dropout's generators, the
data order, and early stopping's best value, best epoch and patience count.
Each test SIGKILLs a child process at a named point (tests/recsys/resume_kill_points.py),
runs `recsys train` again and compares every variable of the published
checkpoint, and training.json's choice and history, with the uninterrupted
run's. benchmarks/resume_sweep.py sweeps every point at every epoch.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tests.conftest import SAMPLE_CONFIG

pytestmark = pytest.mark.slow  # each test trains in two child processes: 30-45 s on a loaded 2-core machine

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 5


def resume_config(workdir: Path, artifacts: Path, name: str, ssl: dict | None = None, **training) -> Path:
    """The tiny model with dropout, trained until early stopping ends it at epoch 4 of 5 (publishing epoch 2)."""
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    if ssl:
        raw["ssl"] = ssl
    raw["input"]["path"] = str(workdir / "logs.csv")
    raw["artifacts_dir"] = str(artifacts)
    raw["model"].update(tower_units=[16], dropout=0.1)
    raw["training"].update(dict(model_dir=str(workdir / name), epochs=EPOCHS, batch_size=64, learning_rate=0.01,
                                early_stopping_patience=2, shuffle_buffer=256), **training)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")


def run_training(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys.cli", "train", "--config", str(config), "--quiet"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)


def run_killed(config: Path, point: str, epoch: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.recsys.resume_kill_points", str(config), point, str(epoch)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)


def published(model_dir: Path) -> dict[str, np.ndarray]:
    """Every variable in the published checkpoint (weights, optimiser slots, generator states) by name."""
    reader = tf.train.load_checkpoint(str(model_dir / "weights" / "ranker"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def max_abs_difference(got: dict, expected: dict) -> float:
    """The largest absolute difference over all variables; inf when the names differ."""
    if got.keys() != expected.keys():
        return float("inf")
    return max((float(np.max(np.abs(got[k].astype(np.float64) - expected[k].astype(np.float64))))
                if got[k].size else 0.0) for k in expected)


@pytest.fixture(scope="module")
def reference(small_artifacts):
    """An uninterrupted run: (workdir, artifacts, published variables, training.json)."""
    workdir, artifacts = small_artifacts
    config = resume_config(workdir, artifacts, "uninterrupted")
    finished = run_training(config)
    assert finished.returncode == 0, finished.stderr[-3000:]
    summary = json.loads((workdir / "uninterrupted" / "training.json").read_text())
    # The config must make early stopping choose an epoch before the last one, or restoring it is not tested.
    assert summary["epochs_run"] < EPOCHS and summary["published_epoch"] < summary["epochs_run"], summary
    return workdir, artifacts, published(workdir / "uninterrupted"), summary


def _resume_and_compare(reference, name: str, point: str, epoch: int):
    workdir, artifacts, expected, expected_summary = reference
    config = resume_config(workdir, artifacts, name)
    killed = run_killed(config, point, epoch)
    assert killed.returncode == -9, f"not killed at {point}:{epoch}\n{killed.stderr[-3000:]}"
    resumed = run_training(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    model_dir = workdir / name
    summary = json.loads((model_dir / "training.json").read_text())
    assert (summary["published_epoch"], summary["published_because"]) == (
        expected_summary["published_epoch"], expected_summary["published_because"])
    assert summary["history"] == expected_summary["history"]
    assert max_abs_difference(published(model_dir), expected) == 0.0
    assert not (model_dir / "backup").exists()
    return summary


# (point, 0-based epoch, the 1-based epoch the re-run resumes at; None: after the last one).
# Mid-epoch 2 resumes at 2 (dropout's generators, optimiser state); while epoch 3's backup is
# written resumes at 3, after the best epoch, so early stopping's state must be restored; a kill
# while publishing only publishes.
KILLS = [("mid_epoch", 1, 2), ("backup_state", 2, 3), ("publishing", 0, None)]


@pytest.mark.parametrize("point, epoch, resumes_at", KILLS)
def test_a_run_killed_and_run_again_publishes_the_uninterrupted_runs_weights_bit_for_bit(reference, point, epoch,
                                                                                          resumes_at):
    summary = _resume_and_compare(reference, f"killed_{point}_{epoch}", point, epoch)
    assert summary["resumed_at_epoch"] == (resumes_at or reference[3]["epochs_run"] + 1)


def test_an_uninterrupted_run_publishes_the_best_epoch_says_why_and_leaves_no_backup(reference):
    workdir, _, expected, summary = reference
    best = int(np.argmin(summary["history"]["val_total_loss"]))
    assert summary["published_epoch"] == best + 1
    assert summary["published_because"].startswith("the best val_total_loss")
    assert "stopped after epoch" in summary["published_because"]
    epoch_checkpoint = tf.train.load_checkpoint(str(workdir / "uninterrupted" / "checkpoints" / f"epoch-{best + 1:03d}"))
    assert all(np.array_equal(epoch_checkpoint.get_tensor(name), value) for name, value in expected.items())
    assert not (workdir / "uninterrupted" / "backup").exists()


def test_early_stopping_null_trains_every_epoch_and_publishes_the_last(reference):
    workdir, artifacts, _, _ = reference
    config = resume_config(workdir, artifacts, "no_early_stopping", early_stopping_patience=None, epochs=3)
    finished = run_training(config)
    assert finished.returncode == 0, finished.stderr[-3000:]
    summary = json.loads((workdir / "no_early_stopping" / "training.json").read_text())
    assert summary["epochs_run"] == 3 and summary["published_epoch"] == 3
    assert "early stopping is off" in summary["published_because"]


def test_a_resume_whose_chosen_epoch_checkpoint_was_deleted_is_refused_naming_it(reference):
    workdir, artifacts, _, summary = reference
    config = resume_config(workdir, artifacts, "checkpoint_deleted")
    killed = run_killed(config, "publishing", 0)
    assert killed.returncode == -9, killed.stderr[-3000:]
    checkpoint = workdir / "checkpoint_deleted" / "checkpoints" / f"epoch-{summary['published_epoch']:03d}"
    for path in checkpoint.parent.glob(f"{checkpoint.name}.*"):
        path.unlink()
    resumed = run_training(config)
    assert resumed.returncode == 2
    assert f"{checkpoint}: epoch {summary['published_epoch']}'s checkpoint, whose weights training publishes, " \
           "is missing" in resumed.stderr + resumed.stdout
