"""`recsys evaluate`: a trained ranker scored on the eval split, each task in its own sample space.

Besides per-task AUC, log loss, normalised entropy and calibration (ratio,
ECE, reliability curve) it reports the funnel metrics ranking teams look at
(CVR AUC on clicked impressions, CTCVR AUC on all), GAUC grouped by user,
precision/recall at thresholds, bootstrap intervals for the headline metrics,
metrics by slice, an item-popularity baseline to beat, and, on synthetic data,
the error against the true probabilities. The model runs once; everything else
is computed from that one set of predictions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from features.artifacts import Artifacts
from features.config import Config
from recsys.data import make_dataset, split_files, transformed_feature_spec
from recsys.evaluation import bootstrap, metrics, slices
from recsys.evaluation.gates import UtilisationMeter, plot_expert_utilisation
from recsys.evaluation.jsonable import json_text

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
    extra += [spec.feature for spec in config.evaluation.slices if spec.feature]
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


def evaluated_outputs(config: Config, outputs: dict, columns: dict) -> list[dict]:
    """Every scored output with its labels and sample space: each task, plus the funnel's CTCVR.

    Each entry is {name, type, labels, scores, space (bool mask over eval rows),
    sample_space (its name), truth (true probabilities or None)}.
    """
    rows = len(next(iter(columns.values())))
    truth = {name: columns[column] for name, column in config.evaluation.truth.items() if column in columns}
    found = []
    for task in config.tasks:
        space = columns[config.task(task.sample_space).label] > 0 if task.sample_space else np.ones(rows, bool)
        found.append({"name": task.name, "type": task.type, "labels": columns[task.label],
                      "scores": outputs[task.name], "space": space, "sample_space": task.sample_space or "all",
                      "truth": truth.get(task.name)})
    chain = funnel(config)
    if chain:
        ctr, cvr, ctcvr = chain
        found.append({"name": ctcvr, "type": "binary",
                      "labels": columns[config.task(ctr).label] * columns[config.task(cvr).label],
                      "scores": _scores(config, outputs, ctcvr), "space": np.ones(rows, bool),
                      "sample_space": "all", "truth": truth.get(ctcvr)})
    return found


def output_metrics(config: Config, output: dict, groups: np.ndarray | None = None) -> dict:
    """All metrics of one output in its sample space, with bootstrap intervals for the headline ones."""
    space = output["space"]
    labels, scores = output["labels"][space], output["scores"][space]
    settings = config.evaluation
    found = {"sample_space": output["sample_space"], "rows": int(space.sum())}
    if output["type"] == "binary":
        found.update(positives=int(labels.sum()), auc=metrics.auc(labels, scores),
                     logloss=metrics.logloss(labels, scores), normalized_entropy=metrics.normalized_entropy(
                         labels, scores), calibration=metrics.calibration(labels, scores),
                     ece=metrics.expected_calibration_error(labels, scores, settings.calibration_bins),
                     reliability=metrics.reliability_curve(labels, scores, settings.calibration_bins),
                     precision_recall=metrics.precision_recall_at(labels, scores, settings.thresholds),
                     roc=metrics.roc_points(labels, scores))
        if groups is not None:
            found["gauc"] = metrics.gauc(labels, scores, groups[space])
    else:
        found.update(rmse=metrics.rmse(labels, scores) if len(labels) else float("nan"),
                     mae=metrics.mae(labels, scores) if len(labels) else float("nan"))
    if settings.bootstrap.resamples:
        found["intervals"] = {"confidence": settings.bootstrap.confidence, **bootstrap.metric_intervals(
            labels, scores, output["type"], settings.bootstrap.resamples, settings.bootstrap.confidence,
            settings.bootstrap.seed)}
    return found


def _task_metrics(config: Config, evaluated: list[dict], columns: dict) -> dict:
    group_by = config.evaluation.group_by
    return {output["name"]: output_metrics(config, output, columns[group_by] if group_by else None)
            for output in evaluated}


def _train_counts(artifacts: Artifacts, spec: dict, features: list[str], click_label: str | None) -> dict:
    """Impressions per id of each feature in `features` on the train split, and clicks per id of the first.

    One pass over the train split serves the popularity baseline and the
    popularity and new-user slices.
    """
    wanted = {name: spec[name] for name in features + ([click_label] if click_label else [])}
    counts = {name: {} for name in features}
    clicks = {}
    for batch in make_dataset(split_files(artifacts.root, "train"), wanted, 8192):
        for name in features:
            _add_counts(counts[name], batch[name].numpy())
        if click_label and features:
            ids = batch[features[0]].numpy()
            _add_counts(clicks, ids[batch[click_label].numpy() > 0])
    return {"impressions": counts, "clicks": clicks}


def _add_counts(totals: dict, ids: np.ndarray):
    for key, count in zip(*np.unique(ids, return_counts=True)):
        totals[key] = totals.get(key, 0) + int(count)


def _lookup(counts: dict, ids: np.ndarray) -> np.ndarray:
    return np.array([counts.get(i, 0) for i in ids], dtype=float)


def _slice_metrics(config: Config, artifacts: Artifacts, evaluated: list[dict], columns: dict,
                   train: dict) -> dict:
    import tensorflow_transform as tft

    transform = tft.TFTransformOutput(str(artifacts.root))
    found = {}
    for spec in config.evaluation.slices:
        if spec.derived == "item_popularity":
            item = popularity_feature(config)
            labels = slices.popularity_labels(_lookup(train["impressions"][item], columns[item]))
        elif spec.derived == "user_history":
            user = config.evaluation.group_by
            labels = slices.history_labels(_lookup(train["impressions"][user], columns[user]))
        else:
            feature = config.feature(spec.feature)
            vocabulary = ([v.decode("utf-8", "replace") for v in transform.vocabulary_by_name(feature.name)]
                          if feature.transform == "vocabulary" else None)
            labels = slices.feature_labels(config, spec, columns[spec.feature], vocabulary)
        found[spec.name] = slices.sliced_metrics(labels, evaluated)
    return found


def _popularity_scores(train: dict, item: str, item_ids: np.ndarray) -> np.ndarray:
    """Smoothed click-through rate of each item on the train split: the baseline to beat."""
    impressions, clicks = train["impressions"][item], train["clicks"]
    prior = sum(clicks.values()) / max(sum(impressions.values()), 1)
    return ((_lookup(clicks, item_ids) + prior * _POPULARITY_SMOOTHING)
            / (_lookup(impressions, item_ids) + _POPULARITY_SMOOTHING))


def _counted_features(config: Config) -> list[str]:
    """Features whose train impressions the report needs, the item first (its clicks are counted too)."""
    item = popularity_feature(config)
    needed = [item] if item and click_task(config) else []
    for spec in config.evaluation.slices:
        if spec.derived == "item_popularity":
            needed.append(item)
        elif spec.derived == "user_history":
            needed.append(config.evaluation.group_by)
    return list(dict.fromkeys(n for n in needed if n))


def measure(config: Config, outputs: dict, columns: dict, artifacts: Artifacts, spec: dict) -> dict:
    """The report's numbers from one pass of predictions: tasks, slices, baseline, truth."""
    evaluated = evaluated_outputs(config, outputs, columns)
    report = {"rows": int(len(next(iter(columns.values())))), "tasks": _task_metrics(config, evaluated, columns)}
    counted = _counted_features(config)
    click = click_task(config)
    train = _train_counts(artifacts, spec, counted, click.label if click else None) if counted else None
    item = popularity_feature(config)
    if item and click:
        baseline = _popularity_scores(train, item, columns[item])
        report["baselines"] = {"item_popularity": {"ctr_auc": metrics.auc(columns[click.label], baseline)}}
    if config.evaluation.slices:
        report["slices"] = _slice_metrics(config, artifacts, evaluated, columns, train)
    if config.evaluation.truth:
        report["truth"] = {name: metrics.truth_error(columns[column], _scores(config, outputs, name))
                           for name, column in config.evaluation.truth.items()}
    return report


def evaluate(config: Config, ranker: tf.keras.Model, split: str = "eval", config_file: str | None = None) -> dict:
    """Scores a split (eval, or the held-out test) and returns the report (also written as JSON, text and HTML)."""
    from recsys.evaluation.html_report import write_html_report
    from recsys.evaluation.provenance import provenance

    artifacts = Artifacts.of(config)
    spec = transformed_feature_spec(artifacts.root)
    dataset = make_dataset(split_files(artifacts.root, split), spec, 4096)
    outputs, columns, utilisation = predict(ranker, dataset, _columns_needed(config))
    report = {"split": split, "about": provenance(config, split, config_file),
              **measure(config, outputs, columns, artifacts, spec)}
    if utilisation:
        report["expert_utilisation"] = utilisation
    directory = artifacts.report_dir(split)
    write_report(report, directory)
    if utilisation:
        plot_expert_utilisation(utilisation, directory / "expert_utilisation.png")
    write_html_report(report, directory / "report.html", title=f"{config.name} ({split} split)")
    return report


def _scores(config: Config, outputs: dict, name: str) -> np.ndarray:
    """A model output, or for a non-ESMM model the funnel product pCTR × pCVR named like ESMM's."""
    if name in outputs:
        return outputs[name]
    ctr, cvr, _ = funnel(config)
    return outputs[ctr] * outputs[cvr]


def _with_interval(value: float, interval: list[float] | None) -> str:
    if interval is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"


def summary_text(report: dict) -> str:
    """A fixed-width table a person can read in a terminal."""
    nan = float("nan")
    width = max([10, *(len(name) + 2 for name in report["tasks"])])  # 'never_married' must not run into its space
    lines = [f"evaluated {report['rows']} {report.get('split', 'eval')} rows", "",
             f"{'output':<{width}}{'space':<8}{'rows':>8}{'AUC':>8}{'GAUC':>8}{'logloss':>9}{'NE':>7}"
             f"{'calib':>7}{'ECE':>7}{'RMSE':>8}"]
    for name, m in report["tasks"].items():
        gauc = m.get("gauc", {}).get("gauc", nan)
        lines.append(f"{name:<{width}}{m['sample_space']:<8}{m['rows']:>8}{m.get('auc', nan):>8.4f}"
                     f"{gauc:>8.4f}{m.get('logloss', nan):>9.4f}{m.get('normalized_entropy', nan):>7.3f}"
                     f"{m.get('calibration', nan):>7.3f}{m.get('ece', nan):>7.4f}{m.get('rmse', nan):>8.3f}")
    intervals = {name: m["intervals"] for name, m in report["tasks"].items() if "intervals" in m}
    if intervals:
        confidence = next(iter(intervals.values()))["confidence"]
        lines += ["", f"{confidence:.0%} bootstrap intervals:"]
        for name, found in intervals.items():
            metric = "auc" if "auc" in found else "rmse"
            lines.append(f"  {name:<8} {metric.upper()} "
                         f"{_with_interval(report['tasks'][name][metric], found.get(metric))}")
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
    for slice_name, values in report.get("slices", {}).items():
        first = next(iter(next(iter(values.values())).keys()), None)
        lines += ["", f"by {slice_name} ({first}): " + ", ".join(
            f"{value} {found[first].get('auc', found[first].get('rmse', nan)):.3f} (n={found[first]['rows']})"
            for value, found in values.items())]
    return "\n".join(lines) + "\n"


def write_report(report: dict, directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "evaluation.json").write_text(json_text(report))
    (directory / "summary.txt").write_text(summary_text(report))
