"""Several models on the same raw eval rows: side-by-side metrics, deltas and paired bootstrap intervals.

Each model scores serialized raw `tf.Example`s: an exported version through its
own `serving_default` signature (its own transform graph), a trained ranker
through the current artifacts' transform. A delta counts as real only when
its paired bootstrap interval excludes zero.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from features.config import Config
from features.errors import RecsysError
from recsys.evaluation import bootstrap, metrics
from recsys.evaluation.evaluate import evaluated_outputs

_LOG = logging.getLogger(__name__)
Scorer = Callable[[list[bytes]], dict[str, np.ndarray]]
HEADLINE = {"binary": ("auc", "logloss", "calibration"), "regression": ("rmse", "mae")}
# Which direction is better, for the table's verdict column.
HIGHER_IS_BETTER = {"auc": True, "logloss": False, "calibration": None, "rmse": False, "mae": False}


class RankerOnRawExamples:
    """A trained in-memory ranker behind the same interface as an exported model: raw examples in."""

    def __init__(self, ranker: tf.keras.Model, transform_dir: str, raw_spec: dict):
        import tensorflow_transform as tft

        self._ranker = ranker
        self._transform = tft.TFTransformOutput(transform_dir).transform_features_layer()
        self._raw_spec = raw_spec

    def __call__(self, examples: list[bytes]) -> dict[str, np.ndarray]:
        raw = tf.io.parse_example(tf.constant(examples, dtype=tf.string), self._raw_spec)
        outputs = self._ranker(self._transform(raw), training=False)
        return {name: value.numpy() for name, value in outputs.items()}


def score_examples(scorers: dict[str, Scorer], examples: list[bytes], batch_size: int = 4096) -> dict:
    """{model: {output: scores}} over all examples, scored in batches, with progress in the log."""
    found = {}
    for name, scorer in scorers.items():
        started, parts = time.monotonic(), {}
        for start in range(0, len(examples), batch_size):
            for output, values in scorer(examples[start:start + batch_size]).items():
                parts.setdefault(output, []).append(np.asarray(values).reshape(-1))
            if (start // batch_size) % 25 == 24:
                _LOG.info("%s: scored %d/%d examples", name, start + batch_size, len(examples))
        found[name] = {output: np.concatenate(values) for output, values in parts.items()}
        _LOG.info("%s: scored %d examples in %.1fs", name, len(examples), time.monotonic() - started)
    return found


def label_columns(config: Config, rows: list[dict]) -> dict[str, np.ndarray]:
    """Labels and truth columns of raw rows as arrays, as the transformed eval data has them."""
    names = config.label_columns + config.passthrough_columns
    return {name: np.array([row[name] for row in rows], dtype=np.float32) for name in names}


def _point(task_type: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    if task_type == "binary":
        return {"auc": metrics.auc(labels, scores), "logloss": metrics.logloss(labels, scores),
                "calibration": metrics.calibration(labels, scores)}
    if len(labels) == 0:
        return {"rmse": float("nan"), "mae": float("nan")}
    return {"rmse": metrics.rmse(labels, scores), "mae": metrics.mae(labels, scores)}


def compare(config: Config, scores_by_model: dict[str, dict], columns: dict[str, np.ndarray]) -> dict:
    """Per output: each model's headline metrics, and each later model's delta against the first.

    {"baseline": name, "outputs": {output: {"type", "rows", "models": {model: {metric: value}},
     "deltas": {model: {metric: {"delta", "interval", "significant"}}}}}}
    """
    settings = config.evaluation.bootstrap
    models = list(scores_by_model)
    baseline = models[0]
    result = {"baseline": baseline, "confidence": settings.confidence, "outputs": {}}
    needed = [task.name for task in config.tasks]
    for model, scores in scores_by_model.items():
        missing = [name for name in needed if name not in scores]
        if missing:
            raise RecsysError(f"model '{model}' has no output {', '.join(missing)} (it outputs "
                              f"{', '.join(scores)}); it was trained for another config's tasks")
    per_model = {model: evaluated_outputs(config, scores, columns) for model, scores in scores_by_model.items()}
    for index, output in enumerate(per_model[baseline]):
        space, kind = output["space"], output["type"]
        labels = output["labels"][space]
        scores = {model: per_model[model][index]["scores"][space] for model in models}
        entry = {"type": kind, "rows": int(space.sum()),
                 "models": {model: _point(kind, labels, scores[model]) for model in models}, "deltas": {}}
        resampled = bootstrap.resampled_metrics(labels, scores, kind, max(settings.resamples, 1), settings.seed)
        for model in models[1:]:
            entry["deltas"][model] = {}
            for metric in HEADLINE[kind]:
                delta = entry["models"][model][metric] - entry["models"][baseline][metric]
                found = bootstrap.interval(resampled[model][metric] - resampled[baseline][metric],
                                           settings.confidence) if resampled else [float("nan")] * 2
                entry["deltas"][model][metric] = {
                    "delta": delta, "interval": found,
                    "significant": bool(found[0] > 0 or found[1] < 0)}
        result["outputs"][output["name"]] = entry
    return result


def comparison_table(result: dict) -> str:
    """Side by side, one row per output and metric; '*' marks a delta whose interval excludes 0."""
    models = list(next(iter(result["outputs"].values()))["models"])
    baseline = result["baseline"]
    width = max(12, *(len(m) + 2 for m in models))
    header = f"{'output':<10}{'metric':<13}" + "".join(f"{m:>{width}}" for m in models)
    header += "".join(f"{'Δ ' + m:>{width + 24}}" for m in models[1:])
    lines = [f"baseline: {baseline}; Δ = model - baseline with its {result['confidence']:.0%} paired bootstrap "
             "interval; * = interval excludes 0", "", header]
    for output, entry in result["outputs"].items():
        for metric in HEADLINE[entry["type"]]:
            line = f"{output:<10}{metric:<13}" + "".join(f"{entry['models'][m][metric]:>{width}.4f}" for m in models)
            for model in models[1:]:
                d = entry["deltas"][model][metric]
                text = f"{d['delta']:+.4f} [{d['interval'][0]:+.4f}, {d['interval'][1]:+.4f}]"
                text += " *" if d["significant"] else "  "
                line += f"{text:>{width + 24}}"
            lines.append(line)
    return "\n".join(lines) + "\n"
