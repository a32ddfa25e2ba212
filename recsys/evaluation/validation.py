"""Model validation before publishing: bless a candidate only if no output regresses past its threshold.

As TFX's Evaluator does, the candidate and the currently published version
score the same eval rows, each output in its own sample space; the decision and
every check behind it are written as `blessing.json` next to the candidate.
Thresholds are absolute for AUC (a drop of 0.005 AUC means the same on any
task) and relative for log loss and RMSE (whose scale depends on the base rate
or the label's units).
"""
from __future__ import annotations

import math
from pathlib import Path

from features.config import Config, ValidationThresholds
from features.errors import RecsysError
from recsys.evaluation.jsonable import json_text

BLESSED, NOT_BLESSED = "BLESSED", "NOT_BLESSED"


class ModelNotBlessed(RecsysError):
    """The candidate regressed against the published model; it was not published."""


def _thresholds(config: Config, output: str) -> ValidationThresholds:
    """The global thresholds with the output's own entries (only those it sets) on top."""
    settings = config.evaluation.validation
    override = settings.tasks.get(output)
    if override is None:
        return settings
    return ValidationThresholds(**{**settings.model_dump(include=set(ValidationThresholds.model_fields)),
                                   **override.model_dump(exclude_unset=True)})


def _check(output: str, metric: str, candidate: float, baseline: float, limit: float, relative: bool) -> dict:
    """One threshold check; a metric undefined on either side cannot show a regression and passes."""
    if relative:
        change = (candidate - baseline) / abs(baseline) if baseline else float("nan")
    else:
        change = baseline - candidate  # an AUC drop
    passed = not (math.isfinite(change) and change > limit)
    kind = "relative increase" if relative else "drop"
    return {"output": output, "metric": metric, "candidate": candidate, "baseline": baseline,
            "change": change, "change_kind": kind, "threshold": limit, "passed": passed}


def decide(config: Config, comparison: dict, candidate: str, baseline: str) -> dict:
    """The blessing: checks of every output's candidate metrics against the baseline's, and the verdict."""
    checks = []
    for output, entry in comparison["outputs"].items():
        limits, ours, theirs = _thresholds(config, output), entry["models"][candidate], entry["models"][baseline]
        if entry["type"] == "binary":
            checks.append(_check(output, "auc", ours["auc"], theirs["auc"], limits.max_auc_drop, False))
            checks.append(_check(output, "logloss", ours["logloss"], theirs["logloss"],
                                 limits.max_logloss_increase, True))
        else:
            checks.append(_check(output, "rmse", ours["rmse"], theirs["rmse"], limits.max_rmse_increase, True))
        for check in checks[-2 if entry["type"] == "binary" else -1:]:
            delta = entry["deltas"].get(candidate, {}).get(check["metric"], {})
            check["interval"], check["significant"] = delta.get("interval"), delta.get("significant")
    failed = [c for c in checks if not c["passed"]]
    reasons = [f"{c['output']} {c['metric']}: {c['change_kind']} {c['change']:+.4f} exceeds {c['threshold']} "
               f"(candidate {c['candidate']:.4f}, published {c['baseline']:.4f})" for c in failed]
    return {"status": NOT_BLESSED if failed else BLESSED, "candidate": candidate, "baseline": baseline,
            "reasons": reasons or ["no output regressed beyond its threshold"], "checks": checks}


def first_model_blessing(candidate: str) -> dict:
    """Nothing is published yet: the first model is blessed by definition (and says so)."""
    return {"status": BLESSED, "candidate": candidate, "baseline": None,
            "reasons": ["no published version to compare with"], "checks": []}


def write_blessing(decision: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "blessing.json"
    path.write_text(json_text(decision))
    return path


def blessing_text(decision: dict) -> str:
    lines = [f"{decision['status']}: {decision['candidate']}"
             + (f" vs published {decision['baseline']}" if decision["baseline"] else "")]
    lines += [f"  {reason}" for reason in decision["reasons"]]
    return "\n".join(lines) + "\n"
