"""Where a serving call spends its time: a tf.profiler trace of it, summed by op type and by name scope.

Used by `benchmarks/profile_serving.py` and `benchmarks/serving_vs_deepctr.py`.
The trace's XSpace protos are read directly (`xplane_pb2`) rather than
through TensorBoard's profile plugin, which is not a dependency and needs a
running TensorBoard; only the op events of the host's
inter-op threads are summed (their executor and thread-pool spans are not ops).
"""
from __future__ import annotations

import collections
import tempfile
from pathlib import Path

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2


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
                if not line.name.startswith("tf_Compute"):  # the inter-op threads, where the executor runs ops
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
    by_type, counts = collections.Counter(), collections.Counter()
    for _, op_type, micros in events:
        by_type[op_type] += micros
        counts[op_type] += 1
    by_scope = time_by_scope(events, calls)
    total = sum(by_type.values())
    lines = [f"{len(events) / calls:.0f} ops and {total / calls:.0f} µs of op time per call", "", "by op type:"]
    lines += [f"  {micros / calls:9.1f} µs  {micros / total:5.1%}  {counts[name] / calls:6.1f}×  {name}"
              for name, micros in by_type.most_common(top)]
    lines += ["", "by scope:"]
    lines += [f"  {micros:9.1f} µs  {micros * calls / total:5.1%}  {name}"
              for name, micros in list(by_scope.items())[:top]]
    return "\n".join(lines)


def trace_signature(signature, examples: list[bytes], calls: int, logdir: str | Path | None = None) -> list:
    """The op events (see `op_durations`) of `calls` traced calls of a signature taking `examples`, after warm-up."""
    batch = tf.constant(examples, dtype=tf.string)
    for _ in range(10):
        signature(examples=batch)
    logdir = str(logdir or tempfile.mkdtemp(prefix="serving-profile-"))
    tf.profiler.experimental.start(logdir)
    for _ in range(calls):
        signature(examples=batch)
    tf.profiler.experimental.stop()
    return op_durations(logdir)


def time_by_scope(events: list[tuple[str, str, float]], calls: int, depth: int = 2) -> dict[str, float]:
    """Microseconds of op time per call under each name scope (its first `depth` parts)."""
    totals = collections.Counter()
    for op_name, _, micros in events:
        totals["/".join(op_name.split("/")[:depth])] += micros / calls
    return dict(totals.most_common())


def profile_signature(signature, examples: list[bytes], calls: int, logdir: str | Path | None = None) -> str:
    """`summarise` of a trace of the signature (see `trace_signature`)."""
    return summarise(trace_signature(signature, examples, calls, logdir), calls)
