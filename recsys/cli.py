"""The `recsys` command line: the one place where pipeline, trainer, evaluator and exporter meet.

    recsys generate   --rows N --out data.csv.gz        synthetic logs with known truth
    recsys datasets prepare NAME --source D --out D    a public benchmark's files → input and a ready config
    recsys preprocess --config C [-- beam options]      Beam + tf.Transform → artifacts
    recsys train      --config C                        ranker → model weights
    recsys evaluate   --config C [--split test] [--beam [-- beam opts]]  metrics → evaluation.json, summary.txt, report.html
    recsys compare    --config C --models A B ...       models side by side on the same eval rows
    recsys validate   --config C                        bless the trained model against the published one
    recsys export     --config C                        versioned SavedModel for TF Serving
    recsys score      --config C [--rows 5]             raw rows through the exported model
    recsys predict    --config C --input P --output D   raw files → scores with an exported version (batch)
    recsys run        --config C [-- beam options]      all of the above, in order (publishes only if blessed)
    recsys serving-config --config C --out DIR          TF Serving models.config, batching, monitoring, compose
    recsys serve      --config C | --base-path P --model-name N | --model-config-file F
                                                        local TF Serving stand-in (REST + gRPC)
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from features.artifacts import Artifacts  # noqa: E402
from features.config import Config, load_config  # noqa: E402
from features.errors import RecsysError  # noqa: E402
from recsys.evaluation.validation import ModelNotBlessed  # noqa: E402

_LOG = logging.getLogger("recsys")


def _config(args) -> Config:
    """--config: a YAML file, or a trained model's directory (training saved its resolved config there)."""
    config = load_config(_config_file(args.config))
    if args.artifacts:
        config = config.model_copy(update={"artifacts_dir": args.artifacts})
    return config


def _config_file(path: str) -> Path:
    from features.config import MODEL_CONFIG_FILE

    where = Path(path)
    if where.is_dir():
        if not (where / MODEL_CONFIG_FILE).exists():
            raise RecsysError(f"--config {path}: a directory, but not a trained model's (no {MODEL_CONFIG_FILE}); "
                              "pass the YAML config file")
        return where / MODEL_CONFIG_FILE
    return where


def cmd_generate(args):
    from pipelines import synthetic

    spec = synthetic.SyntheticSpec(rows=args.rows, seed=args.seed, num_users=args.users, num_items=args.items)
    started = time.monotonic()
    rows = synthetic.write(spec, args.out, progress=lambda done, total: _LOG.info("generated %d/%d rows", done, total))
    _LOG.info("wrote %d rows to %s in %.1fs", rows, args.out, time.monotonic() - started)


def cmd_preprocess(args, config: Config) -> dict:
    from pipelines.input_files import input_sources

    input_sources(config)  # paths and headers checked in a second, before Beam and tf.Transform load
    from pipelines.preprocess import run_preprocess

    manifest = run_preprocess(config, config.artifacts, args.beam_args)
    rows = manifest["rows"]
    splits = ", ".join(f"{split} {rows[split]}" for split in config.split_names)
    handled = {"dropped": rows["dropped"], "repaired": rows["repaired"]}
    print(f"preprocessed {rows['read']} rows in {manifest['seconds']}s ({manifest['rows_per_second']} rows/s): "
          f"{splits}, dead letters {rows['dead_letter']} {manifest['dead_letters_by_reason'] or ''}"
          + "".join(f", {kind} {n}" for kind, n in handled.items() if n))
    return manifest


def cmd_train(args, config: Config) -> dict:
    from recsys.training import train

    summary = train(config, verbose=not args.quiet)
    print(f"trained {summary['epochs_run']} epochs in {summary['seconds']}s "
          f"({summary['train_examples_per_second']} examples/s)")
    return summary


def cmd_evaluate(args, config: Config) -> dict:
    from recsys.evaluation.evaluate import evaluate, summary_text
    from recsys.training import load_trained_ranker

    split = args.split
    if split not in config.split_names:
        raise RecsysError(f"--split {split}: this config has no {split} split "
                          "(give input.test, or split.test_fraction for one input)")
    if getattr(args, "beam", False):
        return _evaluate_with_beam(args, config, split)
    report = evaluate(config, load_trained_ranker(config), split, config_file=args.config)
    print(f"{split} split:")
    print(summary_text(report), end="")
    print(f"report: {Artifacts.of(config).report_dir(split) / 'report.html'}")
    return report


def _sample_rows(config: Config, count: int) -> list[dict]:
    """The first `count` valid training rows of the configured input."""
    from pipelines.sources import read_sample_rows

    return read_sample_rows(config, count)


def _evaluate_with_beam(args, config: Config, split: str) -> dict:
    from pipelines.preprocess import ReadSplitRows
    from recsys.evaluation.beam_evaluation import run_beam_evaluation
    from serving.scoring import latest_version

    version_dir = args.model_dir or latest_version(config.served_model_dir)
    output_dir = Artifacts.of(config).report_dir(split, beam=True)
    report = run_beam_evaluation(config, version_dir, output_dir, ReadSplitRows(config, split), args.beam_args)
    print(f"evaluated {version_dir} on {report['rows']} {split} rows with Beam in {report['seconds']}s; "
          f"report in {output_dir}")
    for name, found in report["tasks"].items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in found.items() if isinstance(v, float))
        print(f"  {name:<8} {shown}")
    return report


def _eval_examples(config: Config) -> tuple[list[dict], list[bytes]]:
    """The eval split's raw rows and their serialized features, once for every model scored."""
    from features.examples import to_examples
    from pipelines.eval_rows import read_eval_rows

    rows = read_eval_rows(config)
    if not rows:
        raise RecsysError(f"no valid eval-split rows in {config.input.patterns}")
    _LOG.info("%d eval rows; serializing", len(rows))
    return rows, to_examples(config, rows)


def _scorer(config: Config, path: str):
    """Scores raw examples with the model at `path`, one of:

    - an exported version (a directory with saved_model.pb), through its own signature;
    - a config file (.yaml): the model that config trains, with its architecture and artifacts;
    - a training model directory (weights/) or a checkpoint (epoch-003, beside epoch-003.index)
      of a model built like --config's.
    """
    from features.config import MODEL_CONFIG_FILE
    from features.schema import serving_feature_spec
    from recsys.evaluation.compare import RankerOnRawExamples
    from recsys.models.ranker import build_ranker
    from serving.scoring import ExportedModel

    where = Path(path)
    if (where / "saved_model.pb").exists():
        return ExportedModel(path).score
    if where.suffix in (".yaml", ".yml") and where.is_file():
        config, weights = load_config(where), None
    elif (where / "weights").is_dir() and (where / MODEL_CONFIG_FILE).exists():
        config, weights = load_config(where / MODEL_CONFIG_FILE), None  # the model describes itself
    elif (where / "weights").is_dir():
        weights = Artifacts(config.artifacts, where).weights_path
    elif Path(f"{path}.index").exists():
        weights = where
    else:
        raise RecsysError(f"--models: '{path}' is neither an exported version (saved_model.pb), a config file, "
                          "a training model directory (weights/) nor a checkpoint (with a .index file)")
    artifacts = Artifacts.of(config)
    ranker = build_ranker(config, artifacts.manifest()["model_inputs"])
    try:
        ranker.load_weights(str(weights or artifacts.weights_path)).expect_partial()
    except ValueError as err:
        raise RecsysError(f"--models: the weights in '{path}' do not fit the model {config.name}'s config builds "
                          f"(pass the config file that trained them instead): {str(err).splitlines()[0]}") from err
    return RankerOnRawExamples(ranker, str(config.artifacts), serving_feature_spec(config))


def cmd_compare(args, config: Config) -> dict:
    from recsys.evaluation.compare import compare, comparison_table, label_columns, score_examples

    if not args.models or len(args.models) < 2:
        raise RecsysError("compare: give at least two --models (exported versions, config files, model "
                          "directories or checkpoints)")
    scorers = {path: _scorer(config, path) for path in args.models}  # a wrong path fails before reading data
    rows, examples = _eval_examples(config)
    scores = score_examples(scorers, examples)
    result = compare(config, scores, label_columns(config, rows))
    print(comparison_table(result), end="")
    return result


def cmd_validate(args, config: Config) -> dict:
    """Candidate (the trained model) vs the latest published version; writes blessing.json next to the model."""
    from features.schema import serving_feature_spec
    from recsys.evaluation.compare import RankerOnRawExamples, compare, label_columns, score_examples
    from recsys.evaluation.validation import (NOT_BLESSED, ModelNotBlessed, blessing_text, decide,
                                              first_model_blessing, write_blessing)
    from recsys.training import load_trained_ranker
    from serving.scoring import ExportedModel, latest_version

    candidate = str(config.model_dir)
    try:
        published = str(latest_version(config.served_model_dir))
    except FileNotFoundError:
        decision = first_model_blessing(candidate)
    else:
        rows, examples = _eval_examples(config)
        scorers = {published: ExportedModel(published).score,
                   candidate: RankerOnRawExamples(load_trained_ranker(config), str(config.artifacts),
                                                  serving_feature_spec(config))}
        decision = decide(config, compare(config, score_examples(scorers, examples), label_columns(config, rows)),
                          candidate, published)
    path = write_blessing(decision, Artifacts.of(config).evaluation_dir)
    print(blessing_text(decision), end="")
    print(f"decision recorded in {path}")
    if decision["status"] == NOT_BLESSED:
        raise ModelNotBlessed(f"{candidate} is not published: " + "; ".join(decision["reasons"]))
    return decision


def cmd_export(args, config: Config):
    from features.examples import to_example
    from recsys.training import load_trained_ranker
    from serving.export import export_model

    warmup = [to_example(config, row) for row in _sample_rows(config, config.serving.warmup_rows)]
    version_dir = export_model(load_trained_ranker(config), config, config.artifacts, warmup_examples=warmup)
    print(f"exported {version_dir} ({len(warmup)} warm-up rows)")
    return version_dir


def cmd_score(args, config: Config):
    from features.examples import to_example
    from serving.scoring import ExportedModel, latest_version

    model = ExportedModel(args.model_dir or latest_version(config.served_model_dir))
    rows = _sample_rows(config, args.rows)
    served = model.score([to_example(config, row) for row in rows])
    scores = {name: served[name] for name in config.output_names}
    print(f"scored {len(rows)} raw rows with {model.version_dir}")
    truth = config.evaluation.truth
    header = "".join(f"{name:>10}" for name in scores) + "".join(f"{'true_' + n:>12}" for n in truth)
    key = config.split.key  # identifies a row where the config has one; else its position in the input
    print(f"{key or 'row':<16}{header}")
    for i, row in enumerate(rows):
        values = "".join(f"{scores[name][i]:>10.4f}" for name in scores)
        values += "".join(f"{row[column]:>12.4f}" for column in truth.values() if column in row)
        print(f"{str(row[key] if key else i):<16}{values}")
    return scores


def cmd_serving_config(args, config: Config):
    from serving.server_config import write_server_config

    for path in write_server_config(config, args.out, args.model_base_path):
        print(f"wrote {path}")


def cmd_serve(args):
    from serving.standin.registry import read_model_config, single_model_config
    from serving.standin.server import StandInServer
    from serving.server_config import model_server_config

    config = load_config(args.config) if args.config else None
    serving = config.serving if config else None
    if args.model_config_file:
        server_config = read_model_config(args.model_config_file)
    elif args.base_path and args.model_name:
        server_config = single_model_config(args.model_name, args.base_path)
    elif config:
        server_config = model_server_config(config, str(config.served_model_dir.parent.resolve()))
    else:
        raise RecsysError("serve needs --config, --base-path with --model-name, or --model-config-file")

    def option(name: str, default):
        value = getattr(args, name)
        return value if value is not None else (getattr(serving, name) if serving else default)

    print("local stand-in for development and tests; production serving is TensorFlow Serving "
          "(see serving/deploy/README.md)", flush=True)
    server = StandInServer(server_config, host=args.host, rest_port=option("rest_port", 8501),
                           grpc_port=option("grpc_port", 8500), max_batch_size=option("max_batch_size", 1024),
                           poll_seconds=option("poll_seconds", 2.0))
    try:
        server.start()
    except OSError as err:
        raise RecsysError(str(err)) from None
    server.wait()


def cmd_run(args, config: Config):
    started = time.monotonic()
    steps = [("preprocess", cmd_preprocess), ("train", cmd_train), ("evaluate", cmd_evaluate)]
    if config.evaluation.validation.enabled:
        steps.append(("validate", cmd_validate))  # raises ModelNotBlessed: nothing is exported
    for name, step in steps + [("export", cmd_export), ("score", cmd_score)]:
        print(f"\n== {name} ==", flush=True)
        step(args, config)
    if "test" in config.split_names:  # read once, at the end; blessing and early stopping used eval only
        print("\n== test ==", flush=True)
        cmd_evaluate(argparse.Namespace(**{**vars(args), "split": "test", "beam": False}), config)
    print(f"\nquick start finished in {time.monotonic() - started:.0f}s; artifacts in {config.artifacts}")


def cmd_predict(args, config: Config) -> dict:
    """Raw files → every output's score (plus kept columns) with an exported version, published atomically."""
    import functools

    from pipelines.prediction.input import SHARD_ROWS, prediction_job
    from pipelines.prediction.job import run_prediction
    from serving.scoring import latest_version

    version_dir = str(args.model_dir or latest_version(config.served_model_dir))
    keep = [name.strip() for name in (args.keep or "").split(",") if name.strip()]
    shard_rows = SHARD_ROWS[args.engine] if args.shard_rows is None else args.shard_rows
    job = prediction_job(config, args.input, keep, args.format, shard_rows)
    if args.engine == "beam":
        from pipelines.prediction.beam_job import predict_with_beam
        from serving.batch_inference import SavedModelHandler

        handler = SavedModelHandler(job.config, version_dir)
        engine = functools.partial(predict_with_beam, job, handler, beam_args=args.beam_args)
    else:
        from pipelines.prediction.inprocess import predict_in_process
        from serving.scoring import ExportedModel

        engine = functools.partial(predict_in_process, job, ExportedModel(version_dir))
    found = run_prediction(args.output, engine, args.overwrite, model=version_dir, input=args.input,
                           files=len(job.files), format=args.format, kept=list(job.keep))
    print(f"predicted {found['rows_in']} rows with {version_dir} ({found['engine']}) in {found['seconds']}s "
          f"({found['rows_per_second']} rows/s): scored {found['scored']}, dead letters {found['dead_letters']} "
          f"{found['dead_letters_by_reason'] or ''}; output in {args.output}")
    return found


def _add_predict_command(commands):
    predict = commands.add_parser("predict", help="score raw files with an exported version (batch inference)")
    predict.add_argument("--config", required=True, help="YAML config file (its input dialect and model)")
    predict.add_argument("--artifacts", help="override the config's artifacts_dir")
    predict.add_argument("--model-dir", help="exported version to score with (default: the latest)")
    predict.add_argument("--input", required=True, help="file or glob, in the config's input layout")
    predict.add_argument("--output", required=True, help="directory to publish (atomically)")
    predict.add_argument("--format", default="parquet", choices=("parquet", "csv", "tfrecord"))
    predict.add_argument("--keep", help="comma-separated input columns written next to the scores (ids, labels)")
    predict.add_argument("--engine", default="inprocess", choices=("inprocess", "beam"),
                         help="inprocess: Arrow batches in this process; beam: RunInference on any runner")
    predict.add_argument("--shard-rows", type=int, help="valid rows per output shard (default: 1,000,000 "
                         "in-process, 100,000 with beam, whose workers sort a shard's rows in memory)")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    predict.add_argument("beam_args", nargs=argparse.REMAINDER,
                         help="after '--': Beam pipeline options (--engine beam), e.g. -- --runner=DataflowRunner")
    predict.set_defaults(handler=cmd_predict, needs_config=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write synthetic impression logs with known truth")
    generate.add_argument("--rows", type=int, default=25_000)
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--users", type=int)
    generate.add_argument("--items", type=int)
    generate.add_argument("--out", required=True, help="path ending .csv, .csv.gz or .parquet")
    generate.set_defaults(handler=cmd_generate, needs_config=False)
    serve = commands.add_parser("serve", help="serve exported models like TF Serving (local stand-in, REST + gRPC)")
    serve.add_argument("--config", help="YAML config: its export's model and its `serving` settings")
    serve.add_argument("--base-path", help="a model's directory of integer versions (with --model-name)")
    serve.add_argument("--model-name", help="the name clients use for --base-path's model")
    serve.add_argument("--model-config-file", help="a TF Serving models.config (text ModelServerConfig)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--rest-port", type=int)
    serve.add_argument("--grpc-port", type=int)
    serve.add_argument("--max-batch-size", type=int, help="larger requests are refused (INVALID_ARGUMENT)")
    serve.add_argument("--poll-seconds", type=float, help="how often base paths are checked for new versions")
    serve.set_defaults(handler=cmd_serve, needs_config=False)
    serving_config = commands.add_parser("serving-config", help="write TF Serving's config files and a compose file")
    serving_config.add_argument("--config", required=True, help="YAML config file")
    serving_config.add_argument("--artifacts", help="override the config's artifacts_dir")
    serving_config.add_argument("--out", required=True, help="directory for the generated files")
    serving_config.add_argument("--model-base-path", default="/models",
                                help="where the models are as TF Serving sees them (default: the container's)")
    serving_config.set_defaults(handler=cmd_serving_config, needs_config=True)
    _add_predict_command(commands)
    for name, handler, help_text in (
            ("preprocess", cmd_preprocess, "validate, split and transform raw logs (Beam + tf.Transform)"),
            ("train", cmd_train, "train the configured ranker"),
            ("evaluate", cmd_evaluate, "evaluate the trained ranker on the eval split"),
            ("export", cmd_export, "export a versioned SavedModel for TF Serving"),
            ("score", cmd_score, "score raw input rows through the exported SavedModel"),
            ("compare", cmd_compare, "compare exported versions or model directories on the same eval rows"),
            ("validate", cmd_validate, "bless the trained model against the published one (blessing.json)"),
            ("run", cmd_run, "preprocess, train, evaluate, export and score")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--config", required=True, help="YAML config file")
        command.add_argument("--artifacts", help="override the config's artifacts_dir")
        command.add_argument("--rows", type=int, default=5, help="rows to score (score, run)")
        command.add_argument("--model-dir", help="exported version to score (default: the latest)")
        command.add_argument("--quiet", action="store_true", help="no per-epoch progress bar")
        command.add_argument("--models", nargs="+", help="compare: exported versions, config files, model "
                             "directories or checkpoints; the first is the baseline")
        command.add_argument("--beam", action="store_true", help="evaluate: the exported model as a Beam job")
        command.add_argument("--split", default="eval", choices=("eval", "test"),
                             help="evaluate: the split to report on (test: the held-out split, read once at the end)")
        command.add_argument("beam_args", nargs=argparse.REMAINDER,
                             help="after '--': Beam pipeline options, e.g. -- --runner=DataflowRunner")
        command.set_defaults(handler=handler, needs_config=True)
    datasets = commands.add_parser("datasets", help="public benchmark datasets: input files and a ready config")
    datasets_commands = datasets.add_subparsers(dest="datasets_command", required=True)
    prepare = datasets_commands.add_parser(
        "prepare", help="turn a downloaded benchmark (census-income, ali-ccp, aliexpress) into input + config")
    prepare.add_argument("name", help="census-income, ali-ccp or aliexpress")
    prepare.add_argument("--source", required=True, help="directory holding the files as published")
    prepare.add_argument("--out", required=True, help="directory for the split files and <name>.yaml")
    prepare.add_argument("--seed", type=int, help="census-income: seed halving the official test (default 2018)")
    prepare.add_argument("--country", help="aliexpress: NL, ES, FR, US or RU when --source holds AliExpress_XX/")
    prepare.set_defaults(handler=cmd_datasets_prepare, needs_config=False)
    return parser


def cmd_datasets_prepare(args) -> dict:
    from pipelines.recipes import prepare

    result = prepare(args.name, args.source, args.out, seed=args.seed, country=args.country)
    print(f"next: recsys run --config {result['config']}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "beam_args", None) and args.beam_args[0] == "--":
        args.beam_args = args.beam_args[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("tensorflow", "absl", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        if args.needs_config:
            args.handler(args, _config(args))
        else:
            args.handler(args)
    except ModelNotBlessed as err:
        print(f"not published: {err}", file=sys.stderr)
        return 3
    except (RecsysError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
