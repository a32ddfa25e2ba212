"""Kills `recsys train` at every named point of every epoch and checks the re-run publishes the uninterrupted bytes.

The kill points are tests/recsys/resume_kill_points.py's; the config is the
kill-point tests' (dropout 0.1, early stopping that stops at epoch 4 of 5 and
publishes epoch 2). `--variant ssl_pcgrad` adds the self-supervised item task
(correlated feature masking, catalogue item sampling) and PCGrad, so their
random streams are resumed too. For each kill: whether the process died
there, the epoch it resumed at, the published epoch, and the largest absolute
difference over every variable of the published checkpoint (weights,
optimiser slots, generator states) from the uninterrupted run's.

    python benchmarks/resume_sweep.py --workdir /tmp/resume_sweep [--variant ssl_pcgrad] [--epochs 2,3]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.recsys.resume_kill_points import POINTS  # noqa: E402
from tests.recsys.test_training_resume import (EPOCHS, max_abs_difference, published, resume_config,  # noqa: E402
                                               run_killed, run_training)

SSL = {"enabled": True, "strategy": "cfm", "item_sampling": "catalogue", "alpha": 0.1}
VARIANTS = {"dropout": dict(ssl=None), "ssl_pcgrad": dict(ssl=SSL, loss_balancing="pcgrad")}


def prepare_artifacts(workdir: Path) -> Path:
    """1,200 generated rows through the Beam job, with the item corpus and mutual information SSL needs."""
    from features.config import parse_config
    from pipelines import synthetic
    from pipelines.preprocess import run_preprocess
    from tests.conftest import SAMPLE_CONFIG

    artifacts = workdir / "artifacts"
    if (artifacts / "manifest.json").exists():
        return artifacts
    synthetic.write(synthetic.SyntheticSpec(rows=1200, seed=5, num_users=100, num_items=80), str(workdir / "logs.csv"))
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    raw["input"]["path"], raw["artifacts_dir"], raw["ssl"] = str(workdir / "logs.csv"), str(artifacts), SSL
    config = parse_config(raw)
    run_preprocess(config, config.artifacts)
    return artifacts


def kills(epochs: list[int], points: list[str]) -> list[tuple[str, int]]:
    """Each per-epoch point at each of `epochs` (0-based), then the publishing points among `points`."""
    once = ("publishing", "training_json")
    return ([(p, e) for e in epochs for p in points if p not in once] + [(p, 0) for p in points if p in once])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="dropout")
    parser.add_argument("--epochs", default=None, help="1-based epochs to kill in, e.g. 2,3 (default: every epoch run)")
    parser.add_argument("--points", default=",".join(POINTS), help=f"comma-separated, of {POINTS}")
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/resume_sweep_<variant>")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    out = args.out or ROOT / "benchmarks" / "results" / f"resume_sweep_{args.variant}"
    artifacts = prepare_artifacts(args.workdir)
    options = VARIANTS[args.variant]

    shutil.rmtree(args.workdir / f"{args.variant}_uninterrupted", ignore_errors=True)
    reference_config = resume_config(args.workdir, artifacts, f"{args.variant}_uninterrupted", **options)
    finished = run_training(reference_config)
    assert finished.returncode == 0, finished.stderr[-3000:]
    reference_dir = args.workdir / f"{args.variant}_uninterrupted"
    reference = json.loads((reference_dir / "training.json").read_text())
    expected = published(reference_dir)

    rows = []
    epochs = ([int(e) - 1 for e in args.epochs.split(",")] if args.epochs else list(range(reference["epochs_run"])))
    for point, epoch in kills(epochs, args.points.split(",")):
        name = f"{args.variant}_{point}_{epoch}"
        shutil.rmtree(args.workdir / name, ignore_errors=True)  # a backup left by an earlier sweep would resume
        config = resume_config(args.workdir, artifacts, name, **options)
        started = time.monotonic()
        killed = run_killed(config, point, epoch)
        resumed = run_training(config)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        summary = json.loads((args.workdir / name / "training.json").read_text())
        rows.append(dict(point=point, epoch=epoch + 1, killed=killed.returncode == -9,
                         resumed_at_epoch=summary["resumed_at_epoch"], published_epoch=summary["published_epoch"],
                         same_history=summary["history"] == reference["history"],
                         backup_left=(args.workdir / name / "backup").exists(),
                         max_abs_difference=max_abs_difference(published(args.workdir / name), expected),
                         seconds=round(time.monotonic() - started, 1)))
        print(json.dumps(rows[-1]), flush=True)

    result = dict(variant=args.variant, epochs=EPOCHS, uninterrupted=dict(
        epochs_run=reference["epochs_run"], published_epoch=reference["published_epoch"],
        published_because=reference["published_because"]), kills=rows)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Resume sweep: {args.variant}", "",
             f"Uninterrupted: {reference['epochs_run']} of {EPOCHS} epochs, published epoch "
             f"{reference['published_epoch']} ({reference['published_because']}).", "",
             "| kill point | epoch | killed | resumed at | published | same history | backup left | max abs diff |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['point']} | {r['epoch'] if r['point'] not in ('publishing', 'training_json') else '-'} | "
              f"{r['killed']} | {r['resumed_at_epoch']} | {r['published_epoch']} | {r['same_history']} | "
              f"{r['backup_left']} | {r['max_abs_difference']} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
