"""The preprocessing job: raw logs → validated, split, tf.Transform-ed TFRecords and a manifest.

    read → validate (dead letters, counts) → split by hashed key → analyze (train only)
    read again → validate → split → transform (train, eval) → encode tf.Examples → gzip shards

The input is read twice rather than kept between analysis and transform: the
transform cannot start before the analysis has seen every training row, so
keeping the rows means holding the whole dataset (in memory on the local
runner, in shuffle storage on a distributed one), while a second read streams.
Validation is deterministic, so both reads split every row the same way; only
the first writes dead letters and counts.

Runner-agnostic: the runner and its options come from the command line
(`--runner=DataflowRunner --project=... --setup_file=./setup.py`), so the
same code runs here on the in-process FnApiRunner and on Dataflow, Flink or Spark.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import apache_beam as beam
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

from features.artifacts import Artifacts
from features.config import Config
from features.errors import RecsysError
from features.schema import raw_feature_spec, transform_input_columns
from features.transform import feature_kind, make_preprocessing_fn, model_inputs
from pipelines.item_corpus import DistinctItems
from pipelines.mutual_information import ItemFeatureMutualInformation, plot_mutual_information
from pipelines.sharded_tfrecords import WriteShardedTFRecords
from pipelines.columnar.job import run_columnar
from pipelines.sources import ReadRawRows, input_columns
from pipelines.split import EVAL, SPLITS, TRAIN, split_of
from pipelines.validation import DeadLetter, RowError, RowValidator, parse_csv_line

DEAD_LETTER = "dead_letter"
OUTPUT_DIRS = (TRAIN, EVAL, DEAD_LETTER, "stats", "transform_fn", "transformed_metadata", "metadata")
_LOG = logging.getLogger(__name__)


class PipelineError(RecsysError, RuntimeError):
    """The job ran but its output must not be used (too many bad rows)."""


class ValidateAndSplit(beam.DoFn):
    """Types each raw row; valid rows go to their split, bad ones to the dead letters.

    A second read of the same input passes `report=False`: its bad rows are
    the first read's, already written as dead letters there, and its rows
    were already counted (in the job's counts and Beam's counters).
    """

    def __init__(self, config: Config, header: list[str] | None, report: bool = True):
        self._config, self._header, self._report = config, header, report
        self._keep = transform_input_columns(config)

    def setup(self):
        self._validate = RowValidator(self._config)
        self._seen = 0

    def process(self, raw):
        self._seen += 1
        if self._seen % 100_000 == 0:
            _LOG.info("validated %d rows in this worker", self._seen)
        try:
            row = self._validate(parse_csv_line(raw, self._header) if isinstance(raw, str) else raw)
        except RowError as err:
            if self._report:
                beam.metrics.Metrics.counter("dead_letter", err.reason).inc()
                letter = DeadLetter(err.reason, err.field, err.message, raw)
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, letter.to_json_dict())
            return
        split = split_of(row[self._config.split.key], self._config.split.eval_fraction)
        if self._report:
            beam.metrics.Metrics.counter("rows", split).inc()
        yield beam.pvalue.TaggedOutput(split, {name: row[name] for name in self._keep})


def _read_and_split(pipeline, config: Config, header: list[str] | None, read: str, report: bool):
    return (pipeline
            | f"Read{read}" >> ReadRawRows(config)
            | f"ValidateAndSplit{read}" >> beam.ParDo(
                ValidateAndSplit(config, header, report)).with_outputs(TRAIN, EVAL, DEAD_LETTER))


class EncodeExamples(beam.DoFn):
    """Encodes transformed Arrow record batches as serialized tf.Examples (tfx_bsl's C++ coder)."""

    def setup(self):
        self._encoder = RecordBatchToExamplesEncoder()

    def process(self, batch_and_passthrough):
        record_batch, _ = batch_and_passthrough
        yield from self._encoder.encode(record_batch)


def _count(pcoll, name: str):
    return (pcoll
            | f"Count{name}" >> beam.combiners.Count.Globally()
            | f"Key{name}" >> beam.Map(lambda n, key=name: (key, n)))


def _count_reasons(dead_letters):
    return (dead_letters
            | "Reasons" >> beam.Map(lambda letter: f"{DEAD_LETTER}/{letter['reason']}")
            | "CountReasons" >> beam.combiners.Count.PerElement())


def build_pipeline(pipeline, config: Config, header: list[str] | None, output_dir: Path, temp_dir: str):
    """Adds the whole job to `pipeline`; each step is named after what it does."""
    rows = _read_and_split(pipeline, config, header, "ForAnalysis", report=True)
    rows_again = _read_and_split(pipeline, config, header, "ForTransform", report=False)
    raw_metadata = dataset_metadata.DatasetMetadata.from_feature_spec(raw_feature_spec(config))
    with tft_beam.Context(temp_dir=temp_dir):
        transform_fn = ((rows[TRAIN], raw_metadata)
                        | "AnalyzeTrain" >> tft_beam.AnalyzeDataset(make_preprocessing_fn(config)))
        transformed_splits = {}
        for split in SPLITS:
            transformed, _ = (((rows_again[split], raw_metadata), transform_fn)
                              | f"Transform{split}" >> tft_beam.TransformDataset(output_record_batches=True))
            transformed_splits[split] = transformed
            (transformed
             | f"Encode{split}" >> beam.ParDo(EncodeExamples())
             | f"Write{split}" >> WriteShardedTFRecords(
                 str(Artifacts(output_dir).split_dir(split) / "part"), config.pipeline.num_shards,
                 parts_dir=f"{temp_dir}/shard-parts/{split}"))
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(str(output_dir))
        if config.ssl.enabled:
            _add_ssl_item_steps(config, rows[TRAIN], transformed_splits[TRAIN], raw_metadata, transform_fn,
                                output_dir, temp_dir)
    (rows[DEAD_LETTER]
     | "DeadLetterJson" >> beam.Map(json.dumps, sort_keys=True)
     | "WriteDeadLetters" >> beam.io.WriteToText(str(Artifacts(output_dir).dead_letter_dir / "part"),
                                                  file_name_suffix=".jsonl"))
    ((_count(rows[TRAIN], TRAIN), _count(rows[EVAL], EVAL), _count_reasons(rows[DEAD_LETTER]))
     | "AllCounts" >> beam.Flatten()
     | "CountJson" >> beam.Map(json.dumps)
     | "WriteCounts" >> beam.io.WriteToText(str(output_dir / "stats" / "counts"), file_name_suffix=".jsonl"))


def _add_ssl_item_steps(config: Config, train_rows, transformed_train, raw_metadata, transform_fn,
                        output_dir: Path, temp_dir: str):
    """With ssl on: the item corpus (distinct training items, transformed) and the item features' MI."""
    artifacts = Artifacts(output_dir)
    names = config.ssl_item_features
    items = train_rows | "DistinctItems" >> DistinctItems(config.feature(names[0]).source)
    transformed_items, _ = (((items, raw_metadata), transform_fn)
                            | "TransformItems" >> tft_beam.TransformDataset(output_record_batches=True))
    (transformed_items
     | "EncodeItems" >> beam.ParDo(EncodeExamples())
     | "WriteItems" >> WriteShardedTFRecords(str(artifacts.item_corpus_dir / "part"), 1,
                                             parts_dir=f"{temp_dir}/shard-parts/items"))
    kinds = [(name, feature_kind(config, config.feature(name))) for name in names]
    _ = (transformed_train
         | "ItemFeatureMI" >> ItemFeatureMutualInformation(kinds,
                                                           str(artifacts.item_feature_mi_path)))
    _ = (_count(items, "items")
         | "ItemCountJson" >> beam.Map(json.dumps)
         | "WriteItemCount" >> beam.io.WriteToText(str(output_dir / "stats" / "item_count"),
                                                   file_name_suffix=".jsonl"))


def _pipeline_options(config: Config, beam_args: list[str]) -> PipelineOptions:
    options = PipelineOptions(beam_args)
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = config.pipeline.runner
    return options


def _read_counts(output_dir: Path) -> dict[str, int]:
    counts = {}
    for path in sorted((output_dir / "stats").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            key, value = json.loads(line)
            counts[key] = value
    return counts


def _manifest(config: Config, output_dir: Path, counts: dict[str, int], seconds: float) -> dict:
    reasons = {key.split("/", 1)[1]: n for key, n in counts.items() if key.startswith(f"{DEAD_LETTER}/")}
    rows = {split: counts.get(split, 0) for split in SPLITS}
    rows[DEAD_LETTER] = sum(reasons.values())
    rows["read"] = rows[TRAIN] + rows[EVAL] + rows[DEAD_LETTER]
    transform_output = tft.TFTransformOutput(str(output_dir))
    vocabulary_sizes = {f.name: transform_output.vocabulary_size_by_name(f.name)
                        for f in config.features if f.transform == "vocabulary"}
    manifest = {
        "config": config.name,
        "input": config.input.path,
        "rows": rows,
        "dead_letters_by_reason": dict(sorted(reasons.items())),
        "bad_fraction": rows[DEAD_LETTER] / max(rows["read"], 1),
        "vocabulary_sizes": vocabulary_sizes,
        "model_inputs": [vars(spec) for spec in model_inputs(config, vocabulary_sizes)],
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows["read"] / max(seconds, 1e-9), 1),
    }
    if config.ssl.enabled:
        artifacts = Artifacts(output_dir)
        manifest["ssl"] = {"items": counts.get("items", 0), "item_features": config.ssl_item_features,
                           "item_corpus": artifacts.item_corpus_dir.name,
                           "item_feature_mi": artifacts.item_feature_mi_path.name}
    return manifest


def _clear_outputs(output_dir: Path):
    """Removes only what this job writes, so stale shards never mix with new ones."""
    artifacts = Artifacts(output_dir)
    for name in OUTPUT_DIRS + (artifacts.manifest_path.name, artifacts.item_corpus_dir.name,
                               artifacts.item_feature_mi_path.name, artifacts.item_feature_mi_plot_path.name):
        target = output_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def run_preprocess(config: Config, output_dir: str | Path, beam_args: list[str] | None = None) -> dict:
    """Runs the job and writes `manifest.json`; raises PipelineError past `max_bad_fraction`."""
    output_dir = Path(output_dir)
    header = input_columns(config)
    output_dir.mkdir(parents=True, exist_ok=True)
    _clear_outputs(output_dir)
    options = _pipeline_options(config, beam_args or [])
    temp_root = options.view_as(GoogleCloudOptions).temp_location
    temp_dir = temp_root or tempfile.mkdtemp(prefix="tft-", dir=output_dir)
    started = time.monotonic()
    _LOG.info("preprocessing %s with %s", config.input.path, options.view_as(StandardOptions).runner)
    if config.pipeline.engine == "columnar":
        if beam_args:
            _LOG.warning("pipeline.engine is columnar: Beam options %s are ignored", beam_args)
        run_columnar(config, header, output_dir, temp_dir)
    else:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, config, header if config.input_format == "csv" else None,
                           output_dir, temp_dir)
    if not temp_root:
        shutil.rmtree(temp_dir, ignore_errors=True)
    raw_metadata = dataset_metadata.DatasetMetadata.from_feature_spec(raw_feature_spec(config))
    metadata_io.write_metadata(raw_metadata, str(output_dir / "metadata"))
    if config.ssl.enabled:
        artifacts = Artifacts(output_dir)
        plot_mutual_information(artifacts.item_feature_mi_path, artifacts.item_feature_mi_plot_path)
    manifest = _manifest(config, output_dir, _read_counts(output_dir), time.monotonic() - started)
    Artifacts(output_dir).manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    if manifest["bad_fraction"] > config.pipeline.max_bad_fraction:
        raise PipelineError(
            f"{manifest['rows'][DEAD_LETTER]} of {manifest['rows']['read']} rows "
            f"({manifest['bad_fraction']:.2%}) were rejected, more than pipeline.max_bad_fraction="
            f"{config.pipeline.max_bad_fraction:.2%}; reasons: {manifest['dead_letters_by_reason']}; "
            f"see {output_dir / DEAD_LETTER}")
    return manifest
