"""Evaluation as a Beam job, for eval sets that do not fit in one process's memory.

    raw input → validate + split (as preprocessing does) → eval rows → batches
      → score each batch with the exported SavedModel (its own transform graph)
      → per batch: a mergeable accumulator per (slice, output) → CombinePerKey
      → per (output, user): labels and scores → GroupByKey → per-user AUC → GAUC

Memory per worker is one batch plus the accumulators (a few histograms per
slice value), whatever the number of rows. Metrics are those of
`recsys.evaluation.binned` (exact log loss, calibration, RMSE; AUC and ECE to
histogram precision). Slices here are by a feature's raw value (categorical or
integer columns); quantile buckets of float features and the derived buckets
(item popularity, new users) need statistics of the train split and are only
in the in-process evaluation.

TFMA would be the ecosystem's tool for this, but tensorflow-model-analysis 0.52
pins pandas<3 and pulls in tensorflow-estimator 2.15 (removed from TF since
2.16), which this stack (TF 2.21, pandas 3) cannot take.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from features.config import Config
from recsys.evaluation import metrics
from recsys.evaluation.binned import accumulator
from recsys.evaluation.html_report import write_html_report
from recsys.evaluation.jsonable import json_text

_LOG = logging.getLogger(__name__)
OVERALL = ("overall", "all")
_OTHER = "other"


def beam_slice_columns(config: Config) -> list[str]:
    """Raw columns the Beam job can slice by: the configured categorical or integer feature slices."""
    found = []
    for spec in config.evaluation.slices:
        if spec.feature is None:
            continue
        feature = config.feature(spec.feature)
        if feature.is_categorical or config.column(feature.source).type == "int":
            if config.column(feature.source).type != "string_list":
                found.append(feature.source)
    return found


class ScoreAndAccumulate(beam.DoFn):
    """Scores a batch of raw eval rows with the exported model; emits accumulators and per-user groups."""

    GROUPS = "groups"

    def __init__(self, config: Config, version_dir: str):
        self._config, self._version_dir = config, version_dir

    def setup(self):
        import tensorflow as tf

        self._tf = tf
        self._model = tf.saved_model.load(self._version_dir)
        self._signature = self._model.signatures["serving_default"]
        self._slices = beam_slice_columns(self._config)
        self._scored = 0

    def process(self, rows: list[dict]):
        from features.examples import to_examples
        from recsys.evaluation.evaluate import evaluated_outputs

        config = self._config
        examples = self._tf.constant(to_examples(config, rows), dtype=self._tf.string)
        outputs = {name: value.numpy().reshape(-1) for name, value in self._signature(examples=examples).items()}
        names = config.label_columns + config.passthrough_columns
        columns = {name: np.array([row[name] for row in rows], dtype=np.float32) for name in names}
        slice_values = {column: np.array([str(row[column]) for row in rows], dtype=object) for column in self._slices}
        group_by = config.evaluation.group_by
        groups = np.array([str(row[config.feature(group_by).source]) for row in rows]) if group_by else None
        for output in evaluated_outputs(config, outputs, columns):
            space = output["space"]
            labels, scores = output["labels"][space], output["scores"][space]
            yield (OVERALL, output["name"]), accumulator(output["type"]).add(labels, scores)
            for column, values in slice_values.items():
                in_space = values[space]
                for value in np.unique(in_space):
                    chosen = in_space == value
                    yield ((column, str(value)), output["name"]), accumulator(output["type"]).add(
                        labels[chosen], scores[chosen])
            if groups is not None and output["type"] == "binary":
                user = groups[space]
                order = np.argsort(user, kind="stable")
                bounds = np.flatnonzero(np.r_[True, user[order][1:] != user[order][:-1], True])
                for start, end in zip(bounds[:-1], bounds[1:]):
                    part = order[start:end]
                    yield beam.pvalue.TaggedOutput(self.GROUPS, ((output["name"], str(user[part[0]])),
                                                                 (labels[part], scores[part])))
        self._scored += len(rows)
        if self._scored // 50_000 != (self._scored - len(rows)) // 50_000:
            _LOG.info("scored %d eval rows in this worker", self._scored)


class MergeAccumulators(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, merged, element):
        return element if merged is None else merged.merge(element)

    def merge_accumulators(self, accumulators):
        merged = None
        for found in accumulators:
            if found is not None:
                merged = found if merged is None else merged.merge(found)
        return merged

    def extract_output(self, merged):
        return merged


def _group_auc(keyed):
    """((output, user), [(labels, scores), ...]) → (output, (rows, auc or None))."""
    (output, _), parts = keyed
    labels = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts])
    if labels.min() == labels.max():
        return output, (len(labels), None)
    return output, (len(labels), metrics.auc(labels, scores))


def _gauc(keyed):
    output, per_user = keyed
    used = [(rows, found) for rows, found in per_user if found is not None]
    weight = sum(rows for rows, _ in used)
    return output, {"gauc": sum(rows * found for rows, found in used) / weight if weight else float("nan"),
                    "groups": len(used), "groups_skipped": len(per_user) - len(used)}


def build_evaluation(pipeline, config: Config, version_dir: str, read_rows: beam.PTransform):
    """Adds the evaluation to `pipeline`; returns (accumulators by (slice, output), GAUC by output).

    `read_rows` yields the split's validated rows; the caller (the CLI) gives the
    pipeline's own reader, so evaluation reads exactly what preprocessing split.
    """
    rows = pipeline | "ReadSplit" >> read_rows
    scored = (rows
              | "Batch" >> beam.BatchElements(min_batch_size=256, max_batch_size=4096)
              | "Score" >> beam.ParDo(ScoreAndAccumulate(config, str(version_dir))).with_outputs(
                  ScoreAndAccumulate.GROUPS, main="accumulators"))
    merged = scored["accumulators"] | "Merge" >> beam.CombinePerKey(MergeAccumulators())
    gauc = (scored[ScoreAndAccumulate.GROUPS]
            | "GroupUsers" >> beam.GroupByKey()
            | "UserAuc" >> beam.Map(_group_auc)
            | "GroupOutputs" >> beam.GroupByKey()
            | "Gauc" >> beam.Map(_gauc))
    return merged, gauc


def _metric_line(config: Config):
    settings = config.evaluation

    def line(keyed) -> str:
        (slice_key, output), merged = keyed
        return json.dumps({"slice": list(slice_key), "output": output,
                           "metrics": merged.result(settings.calibration_bins, tuple(settings.thresholds))})
    return line


def _report(config: Config, lines: list[dict], seconds: float) -> dict:
    tasks, values_by_column = {}, {}
    for line in lines:
        if "gauc" in line:
            continue
        (name, value), output = line["slice"], line["output"]
        if (name, value) == OVERALL:
            tasks[output] = line["metrics"]
        else:
            values_by_column.setdefault(name, {}).setdefault(value, {})[output] = _summary(line["metrics"])
    for line in lines:
        if "gauc" in line:
            tasks[line["output"]]["gauc"] = line["gauc"]
    spaces = {t.name: t.sample_space or "all" for t in config.tasks}
    for output, found in tasks.items():
        found["sample_space"] = spaces.get(output, "all")
    top = {config.feature(spec.feature).source: spec.top_values for spec in config.evaluation.slices if spec.feature}
    slices = {}
    for column, values in values_by_column.items():
        kept = sorted(values, key=lambda v: -max(m["rows"] for m in values[v].values()))[:top.get(column, 10)]
        slices[column] = {value: values[value] for value in sorted(kept, key=_natural_order)}
    return {"rows": max((found["rows"] for found in tasks.values()), default=0), "seconds": round(seconds, 1),
            "tasks": tasks, "slices": slices,
            "precision": "AUC and ECE from 10,000 logit bins (0.003 logits wide); log loss, calibration, "
                         "RMSE exact"}


def _natural_order(value: str):
    """Integer slice values (positions, hours) in numeric order, others alphabetically."""
    try:
        return 0, float(value), ""
    except ValueError:
        return 1, 0.0, value


def _summary(found: dict) -> dict:
    return {k: v for k, v in found.items() if k in ("rows", "positives", "auc", "logloss", "calibration",
                                                    "rmse", "mae")}


def run_beam_evaluation(config: Config, version_dir: str | Path, output_dir: Path,
                        read_rows: beam.PTransform, beam_args: list[str] | None = None) -> dict:
    """Runs the job on any runner, writes evaluation.json under `output_dir` and returns the report.

    Workers write one JSON line per (slice, output) and per output's GAUC; only
    those small lines come back to this process.
    """
    options = PipelineOptions([f"--runner={config.pipeline.runner}", *(beam_args or [])])
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob("metrics*.jsonl"):
        stale.unlink()
    started = time.monotonic()
    with beam.Pipeline(options=options) as pipeline:
        merged, gauc = build_evaluation(pipeline, config, str(version_dir), read_rows)
        ((merged | "MetricLines" >> beam.Map(_metric_line(config)),
          gauc | "GaucLines" >> beam.MapTuple(lambda output, found: json.dumps({"output": output, "gauc": found})))
         | "AllLines" >> beam.Flatten()
         | "Write" >> beam.io.WriteToText(str(output_dir / "metrics"), file_name_suffix=".jsonl"))
    lines = [json.loads(line) for path in sorted(output_dir.glob("metrics*.jsonl"))
             for line in path.read_text().splitlines() if line]
    report = _report(config, lines, time.monotonic() - started)
    (output_dir / "evaluation.json").write_text(json_text(report))
    write_html_report(report, output_dir / "report.html", title=f"{config.name} (Beam)")
    for leftover in output_dir.glob("beam-temp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return report
