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
from collections import Counter
from pathlib import Path

import apache_beam as beam
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

from features.artifacts import Artifacts
from features.atomic_files import write_atomically
from features.config import Config
from features.schema import raw_feature_spec
from features.transform import feature_kind, make_preprocessing_fn, model_inputs
from pipelines.item_corpus import DistinctItems
from pipelines.mutual_information import ItemFeatureMutualInformation, plot_mutual_information
from pipelines.sharded_tfrecords import WriteShardedTFRecords
from pipelines.columnar.job import COLUMNAR_FORMATS, run_columnar
from pipelines.row_formats import RawRowParser, checked_record
from pipelines.input_files import InputSource, input_sources
from pipelines.leakage import check_label_leakage
from pipelines.sources import ReadRawRecords, iter_split_rows
from pipelines.split import SPLITS, TRAIN, split_of
from pipelines.split_counts import (COUNTS, DEAD_LETTER, DROPPED, REPAIRED, UNKNOWN_FIELDS, LabelCounter,
                                    PipelineError, SplitError, dead_letter_json, split_problems)
from pipelines.validation import OUTSIDE_SAMPLE_SPACE, RowValidator, SampleSpaceViolation, row_split_key

OUTPUT_DIRS = (*SPLITS, DEAD_LETTER, "stats", "transform_fn", "transformed_metadata", "metadata")
LEAKAGE_SAMPLE_ROWS = 50_000  # training rows checked for a feature that determines a label, before the job
_LOG = logging.getLogger(__name__)


class ValidateAndSplit(beam.DoFn):
    """Parses and types each raw record; valid rows go to their split, bad ones to the dead letters.

    `split` is where every row of this source goes (splits as given), or None
    to hash each row's split key. Counts (rows per split and per file, dead
    letters per reason, dropped and repaired rows, label classes per split)
    are summed per bundle and emitted once at its end, not as one element per row.

    A second read of the same input passes `report=False`: its bad rows are
    the first read's, already written as dead letters there, and its rows
    were already counted.
    """

    def __init__(self, config: Config, header: list[str] | None, split: str | None, report: bool = True):
        self._config, self._header, self._split, self._report = config, header, split, report
        self._keep = config.transform_input_columns

    def setup(self):
        self._parse = RawRowParser(self._config, self._header)
        self._validate = RowValidator(self._config)
        self._key_of = row_split_key(self._config)
        self._label_counter = LabelCounter(self._config)
        self._seen = 0

    def start_bundle(self):
        self._counts = Counter()

    def process(self, element):
        path, record = element
        self._seen += 1
        if self._seen % 100_000 == 0:
            _LOG.info("validated %d rows in this worker", self._seen)
        kept, row, error = checked_record(self._parse, self._validate, record)
        if isinstance(error, SampleSpaceViolation):
            if self._report:
                self._counts[f"{DROPPED}/{error.reason}"] += 1
            return
        if error is not None:
            if self._report:
                self._counts[f"{DEAD_LETTER}/{error.reason}"] += 1
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter_json(error, kept, path))
            return
        split = self._split or split_of(self._key_of(row), self._config.split.eval_fraction,
                                        self._config.split.test_fraction)
        if self._report:
            self._counts.update({split: 1, f"files/{split}/{path}": 1, REPAIRED: int(self._validate.repaired),
                                 UNKNOWN_FIELDS: self._parse.unknown_fields})
            self._label_counter.add(self._counts, split, row)
        yield beam.pvalue.TaggedOutput(split, {name: row[name] for name in self._keep})

    def finish_bundle(self):
        for key, count in self._counts.items():
            if count:
                yield beam.pvalue.TaggedOutput(COUNTS, WindowedValue((key, count), GlobalWindow().max_timestamp(),
                                                                     [GlobalWindow()]))


def _read_and_split(pipeline, config: Config, sources: list[InputSource], header: list[str] | None,
                    read: str, report: bool) -> dict:
    """Every source read and split: {split or DEAD_LETTER or COUNTS: PCollection}."""
    names = [*config.split_names, DEAD_LETTER, COUNTS]
    parts = {name: [] for name in names}
    for source in sources:
        tagged = (pipeline
                  | f"Read{read}[{source.key}]" >> ReadRawRecords(config, source)
                  | f"ValidateAndSplit{read}[{source.key}]" >> beam.ParDo(
                      ValidateAndSplit(config, header, source.split, report)).with_outputs(*names))
        for name in names:
            parts[name].append(tagged[name])
    return {name: tuple(pcolls) | f"Flatten{read}{name}" >> beam.Flatten() for name, pcolls in parts.items()}


class ReadSplitRows(beam.PTransform):
    """One split's validated rows, read and split exactly as the preprocessing job does (nothing counted)."""

    def __init__(self, config: Config, split: str):
        super().__init__()
        self._config, self._split = config, split

    def expand(self, pbegin):
        sources, header = input_sources(self._config)
        return _read_and_split(pbegin.pipeline, self._config, sources, header, "", report=False)[self._split]


class EncodeExamples(beam.DoFn):
    """Encodes transformed Arrow record batches as serialized tf.Examples (tfx_bsl's C++ coder)."""

    def setup(self):
        self._encoder = RecordBatchToExamplesEncoder()

    def process(self, batch_and_passthrough):
        record_batch, _ = batch_and_passthrough
        yield from self._encoder.encode(record_batch)


def build_pipeline(pipeline, config: Config, sources: list[InputSource], header: list[str] | None,
                   output_dir: Path, temp_dir: str):
    """Adds the whole job to `pipeline`; each step is named after what it does."""
    rows = _read_and_split(pipeline, config, sources, header, "ForAnalysis", report=True)
    rows_again = _read_and_split(pipeline, config, sources, header, "ForTransform", report=False)
    raw_metadata = dataset_metadata.DatasetMetadata.from_feature_spec(raw_feature_spec(config))
    with tft_beam.Context(temp_dir=temp_dir):
        transform_fn = ((rows[TRAIN], raw_metadata)
                        | "AnalyzeTrain" >> tft_beam.AnalyzeDataset(make_preprocessing_fn(config)))
        transformed_splits = {}
        for split in config.split_names:
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
    (rows[COUNTS]
     | "SumCounts" >> beam.CombinePerKey(sum)
     | "CountJson" >> beam.Map(lambda key_count: json.dumps(list(key_count)))
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
    _ = (items
         | "CountItems" >> beam.combiners.Count.Globally()
         | "ItemCountJson" >> beam.Map(lambda n: json.dumps(["items", n]))
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


def _prefixed(counts: dict[str, int], prefix: str) -> dict[str, int]:
    return {key[len(prefix) + 1:]: n for key, n in sorted(counts.items()) if key.startswith(f"{prefix}/")}


def _manifest(config: Config, output_dir: Path, counts: dict[str, int], seconds: float) -> dict:
    reasons, dropped = _prefixed(counts, DEAD_LETTER), _prefixed(counts, DROPPED)
    rows = {split: counts.get(split, 0) for split in config.split_names}
    rows[DEAD_LETTER] = sum(reasons.values())
    rows[DROPPED] = sum(dropped.values())
    rows["read"] = sum(rows.values())
    rows[REPAIRED] = counts.get(REPAIRED, 0)
    transform_output = tft.TFTransformOutput(str(output_dir))
    vocabulary_sizes = {f.name: transform_output.vocabulary_size_by_name(f.name)
                        for f in config.features if f.transform == "vocabulary"}
    labels = LabelCounter.from_counts(config, counts)
    manifest = {
        "config": config.name,
        "input": config.input.path or dict(config.input.patterns),
        "rows": rows,
        "rows_by_file": {split: _prefixed(counts, f"files/{split}") for split in config.split_names},
        "dead_letters_by_reason": reasons,
        "sample_space_violations": {"policy": config.pipeline.sample_space_violations,
                                    "dropped": rows[DROPPED], "repaired": rows[REPAIRED]},
        "bad_fraction": rows[DEAD_LETTER] / max(rows["read"], 1),
        "unknown_slot_fields_ignored": counts.get(UNKNOWN_FIELDS, 0),
        "labels": labels,
        "problems": split_problems(config, rows, labels),
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
    # the manifest first: from here until a new one is published, the directory reads as unfinished
    for name in (artifacts.manifest_path.name,) + OUTPUT_DIRS + (
            artifacts.item_corpus_dir.name, artifacts.item_feature_mi_path.name,
            artifacts.item_feature_mi_plot_path.name):
        target = output_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "PrismRunner")


def chosen_engine(config: Config, options: PipelineOptions) -> str:
    """`pipeline.engine`, or for `auto` the columnar engine where it can do the job: it reads the input's
    format, the runner is local (a cluster runner means the job should be distributed) and ssl is off
    (its item corpus is a Beam step). Issue 20 measured 24 s against 221 s on Census-Income, same artifacts."""
    if config.pipeline.engine != "auto":
        return config.pipeline.engine
    runner = options.view_as(StandardOptions).runner or config.pipeline.runner
    local = str(runner).split(".")[-1] in LOCAL_RUNNERS
    return "columnar" if local and config.input_format in COLUMNAR_FORMATS and not config.ssl.enabled else "beam"


def run_preprocess(config: Config, output_dir: str | Path, beam_args: list[str] | None = None) -> dict:
    """Runs the job and writes `manifest.json`.

    Raises PipelineError past `max_bad_fraction`, and SplitError when a split
    cannot train or evaluate anything (empty, or a task's label with one class);
    the manifest is written first either way, so the counts can be inspected.
    """
    output_dir = Path(output_dir)
    sources, header = input_sources(config)
    check_label_leakage(config, list(iter_split_rows(config, TRAIN, LEAKAGE_SAMPLE_ROWS, (sources, header))))
    output_dir.mkdir(parents=True, exist_ok=True)
    _clear_outputs(output_dir)
    options = _pipeline_options(config, beam_args or [])
    temp_root = options.view_as(GoogleCloudOptions).temp_location
    temp_dir = temp_root or tempfile.mkdtemp(prefix="tft-", dir=output_dir)
    started = time.monotonic()
    engine = chosen_engine(config, options)
    described = ", ".join(f"{split or 'path'} {pattern}" for split, pattern in config.input.patterns.items())
    _LOG.info("preprocessing %s with the %s engine (pipeline.engine: %s)%s", described, engine,
              config.pipeline.engine, f" on {options.view_as(StandardOptions).runner}" if engine == "beam" else "")
    if engine == "columnar":
        if beam_args:
            _LOG.warning("pipeline.engine is columnar: Beam options %s are ignored", beam_args)
        run_columnar(config, sources, header, output_dir, temp_dir)
    else:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, config, sources, header, output_dir, temp_dir)
    if not temp_root:
        shutil.rmtree(temp_dir, ignore_errors=True)
    raw_metadata = dataset_metadata.DatasetMetadata.from_feature_spec(raw_feature_spec(config))
    metadata_io.write_metadata(raw_metadata, str(output_dir / "metadata"))
    if config.ssl.enabled:
        artifacts = Artifacts(output_dir)
        plot_mutual_information(artifacts.item_feature_mi_path, artifacts.item_feature_mi_plot_path)
    manifest = _manifest(config, output_dir, _read_counts(output_dir), time.monotonic() - started)
    # written last and renamed into place (the job withdrew the old one before writing anything): a directory
    # with a manifest is complete whenever a job is killed, and `recsys train` refuses one without
    write_atomically(Artifacts(output_dir).manifest_path, json.dumps(manifest, indent=2) + "\n")
    if manifest["bad_fraction"] > config.pipeline.max_bad_fraction:
        reasons = manifest["dead_letters_by_reason"]
        hint = (f"; {reasons[OUTSIDE_SAMPLE_SPACE]} rows have a label outside its sample space: "
                "pipeline.sample_space_violations: drop or repair keeps the job going"
                if OUTSIDE_SAMPLE_SPACE in reasons else "")
        raise PipelineError(
            f"{manifest['rows'][DEAD_LETTER]} of {manifest['rows']['read']} rows "
            f"({manifest['bad_fraction']:.2%}) were rejected, more than pipeline.max_bad_fraction="
            f"{config.pipeline.max_bad_fraction:.2%}; reasons: {reasons}{hint}; see {output_dir / DEAD_LETTER}")
    if manifest["problems"]:
        raise SplitError("the data cannot train and evaluate a model: " + "; ".join(manifest["problems"]))
    return manifest
