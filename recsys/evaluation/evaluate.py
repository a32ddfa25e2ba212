"""`recsys evaluate`: a trained ranker scored on the eval split, each task in its own sample space.

Besides per-task AUC, log loss and calibration it reports the funnel metrics
ranking teams look at (CVR AUC on clicked impressions, CTCVR AUC on all),
GAUC grouped by user, an item-popularity baseline to beat, and, on synthetic
data, the error against the true probabilities.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from features.artifacts import Artifacts
from features.config import Config
from recsys.data import make_dataset, split_files, transformed_feature_spec
from recsys.evaluation import metrics
from recsys.evaluation.gates import UtilisationMeter, plot_expert_utilisation

_POPULARITY_SMOOTHING = 20.0  # pseudo-impressions at the global CTR for items seen rarely


def funnel(config: Config) -> tuple[str, str, str] | None:
    """(ctr task, cvr task, ctcvr name): the first binary task living on another's positives."""
    if config.model.esmm is not None:
        return config.model.esmm.ctr_task, config.model.esmm.cvr_task, config.model.esmm.ctcvr_name
    for task in config.tasks:
        if task.sample_space and task.type == "binary":
            return task.sample_space, task.name, "ctcvr"
    return None


def click_task(config: Config):
    """The first binary task over all impressions: the one the popularity baseline predicts."""
    return next((t for t in config.tasks if t.type == "binary" and not t.sample_space), None)


def popularity_feature(config: Config) -> str | None:
    """The item id feature: the one behaviour sequences share, else the first item categorical."""
    if config.sequences:
        return config.sequences[0].item_feature
    return next((f.name for f in config.features if f.group == "item" and f.is_categorical), None)


def _columns_needed(config: Config) -> list[str]:
    extra = [config.evaluation.group_by, popularity_feature(config)]
    return list(dict.fromkeys(config.label_columns + config.passthrough_columns + [c for c in extra if c]))


def predict(ranker: tf.keras.Model, dataset: tf.data.Dataset, columns: list[str]) -> tuple[dict, dict, dict]:
    """One pass of the ranker over a dataset: (outputs, columns) as NumPy arrays, and expert utilisation."""
    outputs, values = {}, {c: [] for c in columns}
    meter = UtilisationMeter(ranker.expert_names())
    for batch in dataset:
        scores_by_output, gates = ranker.call_with_gates(batch, training=False)
        for name, scores in scores_by_output.items():
            outputs.setdefault(name, []).append(scores.numpy())
        for column in columns:
            values[column].append(batch[column].numpy())
        meter.update(gates)
    return ({k: np.concatenate(v) for k, v in outputs.items()},
            {k: np.concatenate(v) for k, v in values.items()}, meter.result())


def _binary_metrics(labels, scores, weights) -> dict:
    mask = weights > 0
    return {"rows": int(mask.sum()), "positives": int(labels[mask].sum()),
            "auc": metrics.auc(labels[mask], scores[mask]),
            "logloss": metrics.logloss(labels[mask], scores[mask]),
            "calibration": metrics.calibration(labels[mask], scores[mask])}


def _task_metrics(config: Config, outputs: dict, columns: dict) -> dict:
    rows = len(next(iter(columns.values())))
    result = {}
    for task in config.tasks:
        space = columns[config.task(task.sample_space).label] if task.sample_space else np.ones(rows)
        labels, scores = columns[task.label], outputs[task.name]
        if task.type == "binary":
            result[task.name] = {"sample_space": task.sample_space or "all", **_binary_metrics(labels, scores, space)}
            if config.evaluation.group_by and not task.sample_space:
                result[task.name]["gauc"] = metrics.gauc(labels, scores, columns[config.evaluation.group_by])
        else:
            mask = space > 0
            result[task.name] = {"sample_space": task.sample_space or "all", "rows": int(mask.sum()),
                                 "rmse": metrics.rmse(labels[mask], scores[mask]),
                                 "mae": metrics.mae(labels[mask], scores[mask])}
    chain = funnel(config)
    if chain:
        ctr, cvr, ctcvr = chain
        labels = columns[config.task(ctr).label] * columns[config.task(cvr).label]
        scores = _scores(config, outputs, ctcvr)
        result[ctcvr] = {"sample_space": "all", **_binary_metrics(labels, scores, np.ones(rows))}
    return result


def _popularity_scores(config: Config, artifacts: Artifacts, spec: dict, item_ids: np.ndarray) -> np.ndarray:
    """Smoothed click-through rate of each item on the train split: the baseline to beat."""
    item, label = popularity_feature(config), click_task(config).label
    data = make_dataset(split_files(artifacts.root, "train"), {item: spec[item], label: spec[label]}, 4096)
    impressions, clicks = {}, {}
    for batch in data:
        ids, labels = batch[item].numpy(), batch[label].numpy()
        for key, count in zip(*np.unique(ids, return_counts=True)):
            impressions[key] = impressions.get(key, 0) + count
        for key, count in zip(*np.unique(ids[labels > 0], return_counts=True)):
            clicks[key] = clicks.get(key, 0) + count
    prior = sum(clicks.values()) / max(sum(impressions.values()), 1)
    return np.array([(clicks.get(i, 0) + prior * _POPULARITY_SMOOTHING)
                     / (impressions.get(i, 0) + _POPULARITY_SMOOTHING) for i in item_ids])


def evaluate(config: Config, ranker: tf.keras.Model) -> dict:
    """Scores the eval split and returns the report (also written as JSON and text)."""
    artifacts = Artifacts.of(config)
    spec = transformed_feature_spec(artifacts.root)
    dataset = make_dataset(split_files(artifacts.root, "eval"), spec, 4096)
    outputs, columns, utilisation = predict(ranker, dataset, _columns_needed(config))
    report = {"rows": int(len(next(iter(columns.values())))), "tasks": _task_metrics(config, outputs, columns)}
    item = popularity_feature(config)
    if item and click_task(config):
        baseline = _popularity_scores(config, artifacts, spec, columns[item])
        report["baselines"] = {"item_popularity": {
            "ctr_auc": metrics.auc(columns[click_task(config).label], baseline)}}
    if config.evaluation.truth:
        report["truth"] = {name: metrics.truth_error(columns[column], _scores(config, outputs, name))
                           for name, column in config.evaluation.truth.items()}
    if utilisation:
        report["expert_utilisation"] = utilisation
    write_report(report, artifacts.evaluation_dir)
    if utilisation:
        plot_expert_utilisation(utilisation, artifacts.evaluation_dir / "expert_utilisation.png")
    return report


def _scores(config: Config, outputs: dict, name: str) -> np.ndarray:
    """A model output, or for a non-ESMM model the funnel product pCTR × pCVR named like ESMM's."""
    if name in outputs:
        return outputs[name]
    ctr, cvr, _ = funnel(config)
    return outputs[ctr] * outputs[cvr]


def summary_text(report: dict) -> str:
    """A fixed-width table a person can read in a terminal."""
    lines = [f"evaluated {report['rows']} eval rows", "",
             f"{'output':<10}{'space':<8}{'rows':>8}{'AUC':>8}{'GAUC':>8}{'logloss':>9}{'calib':>7}{'RMSE':>8}"]
    for name, m in report["tasks"].items():
        gauc = m.get("gauc", {}).get("gauc", float("nan"))
        lines.append(f"{name:<10}{m['sample_space']:<8}{m['rows']:>8}{m.get('auc', float('nan')):>8.4f}"
                     f"{gauc:>8.4f}{m.get('logloss', float('nan')):>9.4f}{m.get('calibration', float('nan')):>7.3f}"
                     f"{m.get('rmse', float('nan')):>8.3f}")
    for name, m in report["tasks"].items():
        if "gauc" in m:
            lines.append(f"GAUC of {name}: {m['gauc']['groups']} groups with both classes, "
                         f"{m['gauc']['groups_skipped']} single-class groups skipped")
    for name, baseline in report.get("baselines", {}).items():
        lines += ["", f"baseline {name}: CTR AUC {baseline['ctr_auc']:.4f}"]
    for gate, weights in report.get("expert_utilisation", {}).items():
        lines.append(f"gate {gate}: " + ", ".join(f"{e} {w:.2f}" for e, w in weights.items()))
    if "truth" in report:
        lines += ["", "error against the true probabilities (all eval impressions):"]
        lines += [f"  {name:<8} MAE {e['mae']:.4f}  RMSE {e['rmse']:.4f}  bias {e['bias']:+.4f}"
                  for name, e in report["truth"].items()]
    return "\n".join(lines) + "\n"


def write_report(report: dict, directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    (directory / "summary.txt").write_text(summary_text(report))
