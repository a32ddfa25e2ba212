"""The `recsys` command line: the one place where pipeline, trainer, evaluator and exporter meet.

    recsys generate   --rows N --out data.csv.gz        synthetic logs with known truth
    recsys preprocess --config C [-- beam options]      Beam + tf.Transform → artifacts
    recsys train      --config C                        ranker → model weights
    recsys evaluate   --config C                        metrics → evaluation.json, summary.txt
    recsys export     --config C                        versioned SavedModel for TF Serving
    recsys score      --config C [--rows 5]             raw rows through the exported model
    recsys run        --config C [-- beam options]      all of the above, in order
    recsys serving-config --config C --out DIR          TF Serving models.config, batching, monitoring, compose
    recsys serve      --config C | --base-path P --model-name N | --model-config-file F
                                                        local TF Serving stand-in (REST + gRPC)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from features.config import Config, load_config  # noqa: E402
from features.errors import RecsysError  # noqa: E402

_LOG = logging.getLogger("recsys")


def _config(args) -> Config:
    config = load_config(args.config)
    if args.artifacts:
        config = config.model_copy(update={"artifacts_dir": args.artifacts})
    return config


def cmd_generate(args):
    from pipelines import synthetic

    spec = synthetic.SyntheticSpec(rows=args.rows, seed=args.seed, num_users=args.users, num_items=args.items)
    started = time.monotonic()
    rows = synthetic.write(spec, args.out, progress=lambda done, total: _LOG.info("generated %d/%d rows", done, total))
    _LOG.info("wrote %d rows to %s in %.1fs", rows, args.out, time.monotonic() - started)


def cmd_preprocess(args, config: Config) -> dict:
    from pipelines.preprocess import run_preprocess

    manifest = run_preprocess(config, config.artifacts, args.beam_args)
    rows = manifest["rows"]
    print(f"preprocessed {rows['read']} rows in {manifest['seconds']}s ({manifest['rows_per_second']} rows/s): "
          f"train {rows['train']}, eval {rows['eval']}, dead letters {rows['dead_letter']} "
          f"{manifest['dead_letters_by_reason'] or ''}")
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

    report = evaluate(config, load_trained_ranker(config))
    print(summary_text(report), end="")
    return report


def _sample_rows(config: Config, count: int) -> list[dict]:
    """The first `count` valid rows of the configured input (invalid ones skipped)."""
    from pipelines.sources import read_sample_rows
    from pipelines.validation import RowError, RowValidator

    validate, rows = RowValidator(config), []
    for raw in read_sample_rows(config, count * 4):
        try:
            rows.append(validate(raw))
        except RowError:
            continue
    return rows[:count]


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
    print(f"{config.split.key:<16}{header}")
    for i, row in enumerate(rows):
        values = "".join(f"{scores[name][i]:>10.4f}" for name in scores)
        values += "".join(f"{row[column]:>12.4f}" for column in truth.values() if column in row)
        print(f"{str(row[config.split.key]):<16}{values}")
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
    for name, step in (("preprocess", cmd_preprocess), ("train", cmd_train), ("evaluate", cmd_evaluate),
                       ("export", cmd_export), ("score", cmd_score)):
        print(f"\n== {name} ==", flush=True)
        step(args, config)
    print(f"\nquick start finished in {time.monotonic() - started:.0f}s; artifacts in {config.artifacts}")


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
    for name, handler, help_text in (
            ("preprocess", cmd_preprocess, "validate, split and transform raw logs (Beam + tf.Transform)"),
            ("train", cmd_train, "train the configured ranker"),
            ("evaluate", cmd_evaluate, "evaluate the trained ranker on the eval split"),
            ("export", cmd_export, "export a versioned SavedModel for TF Serving"),
            ("score", cmd_score, "score raw input rows through the exported SavedModel"),
            ("run", cmd_run, "preprocess, train, evaluate, export and score")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--config", required=True, help="YAML config file")
        command.add_argument("--artifacts", help="override the config's artifacts_dir")
        command.add_argument("--rows", type=int, default=5, help="rows to score (score, run)")
        command.add_argument("--model-dir", help="exported version to score (default: the latest)")
        command.add_argument("--quiet", action="store_true", help="no per-epoch progress bar")
        command.add_argument("beam_args", nargs=argparse.REMAINDER,
                             help="after '--': Beam pipeline options, e.g. -- --runner=DataflowRunner")
        command.set_defaults(handler=handler, needs_config=True)
    return parser


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
    except (RecsysError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
