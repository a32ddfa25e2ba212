"""TF Serving's config files for an exported model, generated from the config's `serving` section.

* `models.config`: a text `ModelServerConfig` (`--model_config_file`): name,
  base path, version policy, version labels (`stable`, `canary`).
* `batching_parameters.txt`: a text `BatchingParameters`
  (`--enable_batching --batching_parameters_file`).
* `monitoring.config`: a text `MonitoringConfig` (`--monitoring_config_file`)
  exposing Prometheus metrics on the REST port.
* `docker-compose.yml`: the official `tensorflow/serving` image on the export.

`models.config` is built with the `model_server_config_pb2` proto from
`tensorflow-serving-api`. That package ships no Python module for
`BatchingParameters` or `MonitoringConfig`, so those two are built from
descriptors declaring the fields we set, with the names and numbers of
TF Serving's `session_bundle_config.proto` and `monitoring_config.proto`,
and printed with the same `text_format`.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from features.config import Config

PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
# The TF Serving release matching the pinned tensorflow-serving-api; its protos are the ones we write.
TF_SERVING_IMAGE = "tensorflow/serving:2.19.1"
CONTAINER_MODELS = "/models"
CONTAINER_CONFIG = "/config"


def _message_classes() -> dict:
    """`BatchingParameters` and `MonitoringConfig` message classes, in a pool of their own."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(name="recsys_tf_serving_configs.proto", package="tensorflow.serving",
                                              syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    optional, message_type = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, descriptor_pb2.FieldDescriptorProto
    batching = file.message_type.add(name="BatchingParameters")
    for number, name in ((1, "max_batch_size"), (2, "batch_timeout_micros"), (3, "max_enqueued_batches"),
                         (4, "num_batch_threads")):
        batching.field.add(name=name, number=number, label=optional, type=message_type.TYPE_MESSAGE,
                           type_name=".google.protobuf.Int64Value")
    batching.field.add(name="pad_variable_length_inputs", number=6, label=optional, type=message_type.TYPE_BOOL)
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, label=optional, type=message_type.TYPE_BOOL)
    prometheus.field.add(name="path", number=2, label=optional, type=message_type.TYPE_STRING)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, label=optional, type=message_type.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig")
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
            for name in ("BatchingParameters", "MonitoringConfig")}


def model_server_config(config: Config, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The served model at `<base_path>/<model_name>` with the configured version policy and labels."""
    serving = config.serving
    server_config = model_server_config_pb2.ModelServerConfig()
    model = server_config.model_config_list.config.add(
        name=config.export.model_name, base_path=f"{base_path.rstrip('/')}/{config.export.model_name}",
        model_platform="tensorflow")
    if serving.version_policy == "all":
        model.model_version_policy.all.SetInParent()
    elif serving.version_policy == "specific":
        model.model_version_policy.specific.versions.extend(serving.versions)
    else:
        model.model_version_policy.latest.num_versions = serving.num_versions
    for label, version in serving.version_labels.items():
        model.version_labels[label] = version
    return server_config


def batching_parameters(config: Config):
    serving = config.serving
    parameters = _message_classes()["BatchingParameters"]()
    parameters.max_batch_size.value = serving.max_batch_size
    parameters.batch_timeout_micros.value = serving.batch_timeout_micros
    parameters.max_enqueued_batches.value = serving.max_enqueued_batches
    parameters.num_batch_threads.value = serving.num_batch_threads
    return parameters


def monitoring_config():
    monitoring = _message_classes()["MonitoringConfig"]()
    monitoring.prometheus_config.enable = True
    monitoring.prometheus_config.path = PROMETHEUS_PATH
    return monitoring


def _relative_to(path: Path, directory: Path) -> str:
    """`path` as docker compose resolves it from `directory` (relative, so the files can move together)."""
    relative = os.path.relpath(path, directory)
    return relative if relative.startswith("..") or relative == "." else f"./{relative}"


def docker_compose(config: Config, host_base_path: str, host_config_dir: str) -> dict:
    """The official image serving `host_base_path` with the config files in `host_config_dir` (both relative)."""
    serving = config.serving
    return {"services": {"tf-serving": {
        "image": TF_SERVING_IMAGE,
        # The image's entrypoint adds --model_name/--model_base_path; we serve from models.config instead.
        "entrypoint": ["tensorflow_model_server"],
        "command": [
            f"--port={serving.grpc_port}", f"--rest_api_port={serving.rest_port}",
            f"--model_config_file={CONTAINER_CONFIG}/models.config",
            "--model_config_file_poll_wait_seconds=60",
            f"--file_system_poll_wait_seconds={max(1, round(serving.poll_seconds))}",
            "--enable_batching=true", f"--batching_parameters_file={CONTAINER_CONFIG}/batching_parameters.txt",
            f"--monitoring_config_file={CONTAINER_CONFIG}/monitoring.config",
        ],
        "ports": [f"{serving.grpc_port}:{serving.grpc_port}", f"{serving.rest_port}:{serving.rest_port}"],
        "volumes": [f"{host_base_path}:{CONTAINER_MODELS}:ro", f"{host_config_dir}:{CONTAINER_CONFIG}:ro"],
    }}}


def write_server_config(config: Config, out_dir: str | Path, model_base_path: str = CONTAINER_MODELS) -> list[Path]:
    """Writes the four files into `out_dir`; `models.config` points at `model_base_path` (the container's)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    host_base_path = _relative_to(config.served_model_dir.parent.resolve(), out_dir.resolve())
    files = {
        "models.config": text_format.MessageToString(model_server_config(config, model_base_path)),
        "batching_parameters.txt": text_format.MessageToString(batching_parameters(config)),
        "monitoring.config": text_format.MessageToString(monitoring_config()),
        "docker-compose.yml": yaml.safe_dump(docker_compose(config, host_base_path, "."), sort_keys=False),
    }
    for name, text in files.items():
        (out_dir / name).write_text(text)
    return [out_dir / name for name in files]
