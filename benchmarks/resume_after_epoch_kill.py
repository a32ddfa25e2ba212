"""Issue 21's measurement, runnable against any checkout: SIGKILL `recsys train` right after epoch k's backup, run it again, compare.

Only needs `recsys.training._callbacks` and `train`, so it runs on code from
before the resume fixes too (extract it with `git archive COMMIT | tar -x -C DIR`).
The config is the kill-point tests' (tests/recsys/test_training_resume.py),
with dropout 0.1 and 0; the largest absolute difference is over the published
ranker's trainable weights, as `load_trained_ranker` loads them.

    python benchmarks/resume_after_epoch_kill.py --code . --workdir /tmp/resume_probe --label after
    git archive e5f0657 | tar -x -C /tmp/before
    python benchmarks/resume_after_epoch_kill.py --code /tmp/before --workdir /tmp/resume_probe --label before
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.resume_sweep import prepare_artifacts  # noqa: E402
from tests.recsys.test_training_resume import resume_config  # noqa: E402

KILL_AFTER_BACKUP = """
import os, signal, sys
import tensorflow as tf
from features.config import load_config
from recsys import training

class KillAfterBackup(tf.keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

callbacks = training._callbacks
training._callbacks = lambda *args: callbacks(*args) + [KillAfterBackup()]
training.train(load_config(sys.argv[1]), verbose=False)
"""

SAVE_WEIGHTS = """
import sys
import numpy as np
from features.config import load_config
from recsys.training import load_trained_ranker
np.savez(sys.argv[2], *[w.numpy() for w in load_trained_ranker(load_config(sys.argv[1])).trainable_weights])
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, required=True, help="the checkout whose `recsys train` is measured")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--label", required=True)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    artifacts = prepare_artifacts(args.workdir)
    env = dict(os.environ, PYTHONPATH=str(args.code.resolve()), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")

    def python(*argv) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *map(str, argv)], cwd=args.code, env=env, capture_output=True,
                              text=True)

    def trained(name: str, dropout: float, kill_after: int | None = None) -> tuple[list, dict, bool]:
        shutil.rmtree(args.workdir / name, ignore_errors=True)
        config = resume_config(args.workdir, artifacts, name)
        raw = yaml.safe_load(config.read_text())
        raw["model"]["dropout"] = dropout
        config.write_text(yaml.safe_dump(raw))
        if kill_after is not None:
            assert python("-c", KILL_AFTER_BACKUP, config, kill_after).returncode == -9
        finished = python("-m", "recsys.cli", "train", "--config", config, "--quiet")
        assert finished.returncode == 0, finished.stderr[-3000:]
        saved = python("-c", SAVE_WEIGHTS, config, args.workdir / f"{name}.npz")
        assert saved.returncode == 0, saved.stderr[-3000:]
        arrays = np.load(args.workdir / f"{name}.npz")
        summary = json.loads((args.workdir / name / "training.json").read_text())
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))], summary, (args.workdir / name / "backup").exists()

    for dropout in (0.1, 0.0):
        expected, reference, _ = trained(f"{args.label}_uninterrupted_{dropout}", dropout)
        for kill_after in (0, 1):
            got, summary, backup_left = trained(f"{args.label}_killed{kill_after + 1}_{dropout}", dropout, kill_after)
            print(json.dumps(dict(
                code=args.label, dropout=dropout, killed_after_epoch=kill_after + 1, tensors=len(expected),
                max_abs_difference=max(float(np.max(np.abs(a - b))) for a, b in zip(got, expected)),
                epochs=[reference["epochs_run"], summary["epochs_run"] + kill_after + 1],
                published_epoch=[reference.get("published_epoch"), summary.get("published_epoch")],
                backup_left=backup_left)), flush=True)


if __name__ == "__main__":
    main()
