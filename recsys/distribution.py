"""Which `tf.distribute` strategy training runs under, chosen by `training.distribution` and `TF_CONFIG`.

- auto: `TF_CONFIG` describing a cluster → multi_worker (parameter_server if the
  cluster has a "ps" job); several local GPUs → mirrored; else one device.
- mirrored: synchronous data parallelism over this machine's GPUs.
- multi_worker: synchronous data parallelism over the workers `TF_CONFIG` lists
  (every worker runs `recsys train` with the same config and its own
  `TF_CONFIG`); gradients are all-reduced each step, so the result matches one
  worker on the same global batch (`training.batch_size`).
- parameter_server: variables live on the "ps" tasks, sharded so a large
  embedding table is split across them; the "chief" task coordinates and the
  "worker" and "ps" tasks only serve (`recsys train` on them blocks as a server).

`TF_CONFIG` is the standard JSON that Kubernetes operators, Vertex AI and
`tf.distribute` all use:
``{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}``.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

from features.errors import RecsysError

# Variables larger than this are split across parameter servers (embedding tables, in practice).
PARTITION_MIN_BYTES = 256 << 10


class DistributionError(RecsysError, ValueError):
    """`training.distribution` asks for something `TF_CONFIG` or the machine cannot give."""


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as err:
        raise DistributionError(f"TF_CONFIG is not valid JSON: {err}") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("cluster", {}), dict):
        raise DistributionError("TF_CONFIG must be a JSON object with a 'cluster' mapping")
    return parsed


def resolve_mode(requested: str) -> str:
    """The concrete mode for `requested` ("auto" looks at TF_CONFIG and the GPUs)."""
    cluster = _tf_config().get("cluster", {})
    if requested != "auto":
        if requested in ("multi_worker", "parameter_server") and not cluster:
            raise DistributionError(
                f"training.distribution: '{requested}' needs TF_CONFIG describing the cluster "
                '(e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}})')
        if requested == "parameter_server" and "ps" not in cluster:
            raise DistributionError("training.distribution: 'parameter_server' needs a 'ps' job in TF_CONFIG's cluster")
        return requested
    if "ps" in cluster:
        return "parameter_server"
    if sum(len(tasks) for tasks in cluster.values()) > 1:
        return "multi_worker"
    return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "single"


def make_strategy(requested: str) -> tf.distribute.Strategy:
    """The strategy for `training.distribution`; create it before any other TensorFlow work.

    (Collective ops for multi-worker training are configured when the strategy
    is made, which TensorFlow only allows before it has run anything.)
    """
    mode = resolve_mode(requested)
    if mode == "single":
        return tf.distribute.get_strategy()
    if mode == "mirrored":
        return tf.distribute.MirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if mode == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    return tf.distribute.experimental.ParameterServerStrategy(
        resolver, variable_partitioner=tf.distribute.experimental.partitioners.MinSizePartitioner(
            min_shard_bytes=PARTITION_MIN_BYTES, max_shards=len(resolver.cluster_spec().as_dict()["ps"])))


def serve_if_parameter_server_task(requested: str) -> bool:
    """On a parameter-server cluster's "worker" or "ps" task: runs its server forever and returns True.

    Only the chief runs the training loop under ParameterServerStrategy; the
    other tasks host variables or execute the steps the chief dispatches.
    """
    if resolve_mode(requested) != "parameter_server":
        return False
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if resolver.task_type not in ("worker", "ps"):
        return False
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                  task_index=resolver.task_id, protocol=resolver.rpc_layer or "grpc", start=True)
    server.join()
    return True


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the shared outputs (final weights, training.json).

    The chief is the "chief" task, or worker 0 when the cluster has no chief;
    a single process is always its own chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs
