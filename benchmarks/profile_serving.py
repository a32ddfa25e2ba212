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
import collections
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402


def op_durations(logdir: str | Path) -> list[tuple[str, str, float]]:
    """(op name, op type, microseconds) for every TF op executed on the host in the trace under `logdir`."""
    spaces = sorted(Path(logdir).rglob("*.xplane.pb"))
    if not spaces:
        raise FileNotFoundError(f"no *.xplane.pb under {logdir}: was the profiler running?")
    events = []
    for path in spaces:
        space = xplane_pb2.XSpace.FromString(path.read_bytes())
        for plane in space.planes:
            if plane.name != "/host:CPU":
                continue
            metadata = plane.event_metadata
            for line in plane.lines:
                if line.name != "TensorFlow Ops" and "tf_Compute" not in line.name and "tf_" not in line.name:
                    continue
                for event in line.events:
                    name = metadata[event.metadata_id].name
                    # TF op events are named "<op name>:<op type>".
                    op_name, _, op_type = name.rpartition(":")
                    if op_name and "::" not in name:  # not the executor's own ExecutorState::Process spans
                        events.append((op_name, op_type, event.duration_ps / 1e6))
    return events


def summarise(events: list[tuple[str, str, float]], calls: int, top: int = 15) -> str:
    """The top op types and scopes by total time, in microseconds per call."""
    by_type, by_scope, counts = collections.Counter(), collections.Counter(), collections.Counter()
    for op_name, op_type, micros in events:
        by_type[op_type] += micros
        counts[op_type] += 1
        by_scope["/".join(op_name.split("/")[:2])] += micros
    total = sum(by_type.values())
    lines = [f"{len(events) / calls:.0f} ops and {total / calls:.0f} µs of op time per call", "", "by op type:"]
    lines += [f"  {micros / calls:9.1f} µs  {micros / total:5.1%}  {counts[name] / calls:6.1f}×  {name}"
              for name, micros in by_type.most_common(top)]
    lines += ["", "by scope:"]
    lines += [f"  {micros / calls:9.1f} µs  {micros / total:5.1%}  {name}" for name, micros in by_scope.most_common(top)]
    return "\n".join(lines)


def profile_signature(signature, examples: list[bytes], calls: int, logdir: str | Path | None = None) -> str:
    batch = tf.constant(examples, dtype=tf.string)
    for _ in range(10):
        signature(examples=batch)
    logdir = str(logdir or tempfile.mkdtemp(prefix="serving-profile-"))
    tf.profiler.experimental.start(logdir)
    for _ in range(calls):
        signature(examples=batch)
    tf.profiler.experimental.stop()
    return summarise(op_durations(logdir), calls)


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
