"""Where a `serving_default` call spends its time: a tf.profiler trace, summed by op type and by scope.

    python benchmarks/profile_serving.py --model-dir D --config C [--candidates 100] [--calls 50]

Loads the exported version `D` (or the newest under the config's serving base
path), warms it up, traces `--calls` calls of `--candidates` raw examples read
from the config's input, and prints the ops that took the most time: by op
type (e.g. `ParseExampleV2`, `LookupTableFindV2`, `MatMul`) and by the first
two name scopes (e.g. `transform_features_layer/...`, `ranker/...`), which
says whether parsing, the transform graph or the model dominates.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402

from serving.profiling import profile_signature  # noqa: E402


def main():
    from features.config import load_config
    from features.examples import to_example
    from pipelines.sources import read_sample_rows
    from pipelines.validation import RowValidator
    from serving.scoring import latest_version

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--model-dir", help="an exported version directory (default: the newest)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--logdir", help="where to keep the trace (default: a temporary directory)")
    args = parser.parse_args()
    config = load_config(args.config)
    validate = RowValidator(config)
    examples = [to_example(config, validate(row)) for row in read_sample_rows(config, args.candidates)]
    model_dir = args.model_dir or latest_version(config.served_model_dir)
    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    print(f"{model_dir}: {args.calls} calls of {len(examples)} candidates")
    print(profile_signature(signature, examples, args.calls, args.logdir))


if __name__ == "__main__":
    main()
