"""The distributed engine: a Beam job around `RunInference`, runner-agnostic like the preprocessing job.

    input files → read + validate each file in order (dead letters tagged)
      → RunInference(keyed model handler): batched, the model loaded once per worker
      → key by (file, chunk of `shard_rows` valid rows) → GroupByKey → sort → one shard per group

A file is read by one worker (parallelism is across files; split a big input
into several files). Every valid row carries its position among its file's
valid rows, so each shard is written in input order whatever order the
runner scored it in, and the shards are those the in-process engine writes.
A shard's rows are grouped and sorted in one worker's memory, as Python
tuples, on every runner (a shuffle spills the grouping, not the sort):
`shard_rows` bounds that memory, hence the engine's smaller default
(`input.SHARD_ROWS`).
The model handler comes from the caller (the CLI passes
`serving.batch_inference.SavedModelHandler`): this module never imports serving code.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.prediction.input import PredictionJob, scorable_rows
from pipelines.prediction.output import DEAD_LETTER_FILE, ShardWriter, prediction_table, shard_name, summary
from pipelines.progress import Progress

NAMESPACE = "recsys.predict"
DEAD_LETTER = "dead_letter"
_LOG = logging.getLogger(__name__)


class ReadScorableRows(beam.DoFn):
    """(file index, path) → ((file index, position among its valid rows, kept values), features), in file order."""

    def __init__(self, job: PredictionJob):
        self._job = job

    def setup(self):
        self._progress = Progress("predict (read, this worker)", dead_letters=True)

    def process(self, element):
        file_index, path = element
        position = 0
        for features, kept, letter in scorable_rows(self._job, path):
            if letter is not None:
                Metrics.counter(NAMESPACE, f"{DEAD_LETTER}/{letter['reason']}").inc()
                self._progress.add(1, dead_letters=1)
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, json.dumps(letter))
                continue
            self._progress.add(1)
            yield (file_index, position, kept), features
            position += 1


class KeyByShard(beam.DoFn):
    """(key, prediction) → ((file index, chunk), (position, kept values, scores)), counting rows scored."""

    def __init__(self, outputs: tuple[str, ...], shard_rows: int):
        self._outputs, self._shard_rows = outputs, shard_rows
        self._scored = Metrics.counter(NAMESPACE, "scored")

    def setup(self):
        self._progress = Progress("predict (scored, this worker)")

    def process(self, element):
        (file_index, position, kept), result = element
        self._scored.inc()
        self._progress.add(1)
        scores = tuple(result.inference[name] for name in self._outputs)
        yield (file_index, position // self._shard_rows), (position, kept, scores)


class WriteShard(beam.DoFn):
    """One (file, chunk) group's rows, sorted by position in memory (at most `shard_rows`), as one shard file."""

    def __init__(self, job: PredictionJob, directory: str):
        self._job, self._directory = job, directory

    def process(self, element):
        (file_index, chunk), rows = element
        rows = sorted(rows, key=lambda row: row[0])
        job = self._job
        kept = {name: pa.array([row[1][i] for row in rows]) for i, name in enumerate(job.keep)}
        scores = {name: [row[2][i] for row in rows] for i, name in enumerate(job.outputs)}
        path = Path(self._directory) / shard_name(file_index, chunk, job.output_format)
        writer = ShardWriter(path, job.output_format)
        writer.write(prediction_table(kept, scores, job.outputs))
        writer.close()


def build_prediction(pipeline, job: PredictionJob, model_handler: ModelHandler, staging: Path):
    files = pipeline | "Files" >> beam.Create(list(enumerate(job.files))) | "Spread" >> beam.Reshuffle()
    rows = files | "ReadAndValidate" >> beam.ParDo(ReadScorableRows(job)).with_outputs(DEAD_LETTER, main="rows")
    _ = (rows.rows
         | "RunInference" >> RunInference(KeyedModelHandler(model_handler))
         | "KeyByShard" >> beam.ParDo(KeyByShard(job.outputs, job.shard_rows))
         | "GroupShards" >> beam.GroupByKey()
         | "WriteShards" >> beam.ParDo(WriteShard(job, str(staging))))
    _ = rows[DEAD_LETTER] | "WriteDeadLetters" >> beam.io.WriteToText(
        str(staging / DEAD_LETTER_FILE), num_shards=1, shard_name_template="")


def predict_with_beam(job: PredictionJob, model_handler: ModelHandler, staging: Path,
                      beam_args: list[str] | None = None) -> dict:
    """Runs the job (the runner from `beam_args`, default the config's) into `staging`; returns the summary's counts."""
    started = time.monotonic()
    options = PipelineOptions([f"--runner={job.config.pipeline.runner}", *(beam_args or [])])
    pipeline = beam.Pipeline(options=options)
    build_prediction(pipeline, job, model_handler, staging)
    result = pipeline.run()
    result.wait_until_finish()
    counters = {found.key.metric.name: found.committed
                for found in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]}
    dead = {name.split("/", 1)[1]: count for name, count in counters.items() if name.startswith(f"{DEAD_LETTER}/")}
    return summary(counters.get("scored", 0), dead, time.monotonic() - started, engine="beam")
