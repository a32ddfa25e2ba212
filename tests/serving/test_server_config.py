"""Generated TF Serving config files parse back into their protos; JSON request decoding follows TF Serving."""
import base64

import grpc
import numpy as np
import pytest
import yaml
from google.protobuf import text_format
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from features.config import ConfigError, parse_config
from serving.server_config import _message_classes, write_server_config
from serving.standin import rest_json
from serving.standin.errors import ServingError
from serving.standin.registry import read_model_config


def test_models_config_batching_and_monitoring_files_parse_as_tf_serving_protos(raw_config, tmp_path):
    raw_config["export"]["base_path"] = str(tmp_path / "models")
    raw_config["serving"] = {"version_policy": "specific", "versions": [3, 4],
                             "version_labels": {"stable": 3, "canary": 4}, "max_batch_size": 256}
    paths = write_server_config(parse_config(raw_config), tmp_path / "tf_serving")
    assert [p.name for p in paths] == ["models.config", "batching_parameters.txt", "monitoring.config",
                                       "docker-compose.yml"]
    model = read_model_config(tmp_path / "tf_serving" / "models.config").model_config_list.config[0]
    assert (model.name, model.base_path, model.model_platform) == (
        "synthetic_funnel", "/models/synthetic_funnel", "tensorflow")
    assert list(model.model_version_policy.specific.versions) == [3, 4]
    assert dict(model.version_labels) == {"stable": 3, "canary": 4}
    classes = _message_classes()
    batching = text_format.Parse((tmp_path / "tf_serving" / "batching_parameters.txt").read_text(),
                                 classes["BatchingParameters"]())
    assert batching.max_batch_size.value == 256 and batching.num_batch_threads.value == 4
    monitoring = text_format.Parse((tmp_path / "tf_serving" / "monitoring.config").read_text(),
                                   classes["MonitoringConfig"]())
    assert monitoring.prometheus_config.enable
    service = yaml.safe_load((tmp_path / "tf_serving" / "docker-compose.yml").read_text())["services"]["tf-serving"]
    assert service["image"].startswith("tensorflow/serving:")
    assert service["volumes"] == ["../models:/models:ro", ".:/config:ro"]  # relative to the compose file
    assert "--model_config_file=/config/models.config" in service["command"]


def test_labels_must_name_versions_the_policy_serves(raw_config):
    raw_config["serving"] = {"version_labels": {"canary": 4}}
    with pytest.raises(ConfigError, match="serving.*version_labels .*canary"):
        parse_config(raw_config)
    raw_config["serving"] = {"version_policy": "specific", "versions": [3], "version_labels": {"canary": 4}}
    with pytest.raises(ConfigError, match="canary"):
        parse_config(raw_config)


def test_a_broken_models_config_is_reported_with_its_path(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { nme: 'x' } }")
    with pytest.raises(ConfigError, match=f"{path}.*nme"):
        read_model_config(path)


def _infos(**dtypes):
    return {name: meta_graph_pb2.TensorInfo(dtype=dtype.as_datatype_enum) for name, dtype in dtypes.items()}


def test_predict_bodies_in_row_and_columnar_form_with_b64_values():
    # tensorflow_serving/util/json_tensor.cc: tensors typed by the signature's inputs.
    encoded = {"b64": base64.b64encode(b"\x01\x00").decode()}  # a trailing NUL must survive
    tensors, row_form = rest_json.predict_tensors({"instances": [encoded, encoded]}, _infos(examples=tf.string), "")
    assert row_form and tf.make_ndarray(tensors["examples"]).tolist() == [b"\x01\x00", b"\x01\x00"]
    infos = _infos(a=tf.int64, b=tf.string)
    tensors, row_form = rest_json.predict_tensors({"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}, infos, "")
    assert tf.make_ndarray(tensors["a"]).tolist() == [1, 2] and tf.make_ndarray(tensors["b"]).tolist() == [b"x", b"y"]
    tensors, row_form = rest_json.predict_tensors({"inputs": {"a": [15], "b": ["x"]}}, infos, "")
    assert not row_form and tf.make_ndarray(tensors["a"]).dtype == np.int64
    ctr, cvr = tf.make_tensor_proto(np.float32([0.5, 0.25])), tf.make_tensor_proto(np.float32([0.1, 0.2]))
    assert rest_json.predict_json({"ctr": ctr}, row_format=True) == {"predictions": [0.5, 0.25]}
    assert rest_json.predict_json({"ctr": ctr, "cvr": cvr}, row_format=True) == {
        "predictions": [{"ctr": 0.5, "cvr": 0.1}, {"ctr": 0.25, "cvr": 0.2}]}
    assert rest_json.predict_json({"x_bytes": tf.make_tensor_proto([b"\xff"])}, row_format=False) == {
        "outputs": [{"b64": "/w=="}]}


@pytest.mark.parametrize("body, message", [  # json_tensor.cc's words
    ({}, "Missing 'inputs' or 'instances' key"),
    ({"instances": [1], "inputs": [1]}, "Not formatted correctly expecting only one of 'inputs' or 'instances'"),
    ({"instances": [{"a": 1}, {"b": 2}]}, "keys must be equal to: a,b"),
    ({"instances": [["x", "y"], ["z"]]}, "Expecting tensor size: 2 but got: 1"),
    ({"instances": [{"b64": "***"}]}, "Unable to base64 decode"),
])
def test_malformed_predict_bodies_are_invalid_arguments_naming_the_problem(body, message):
    dict_rows = "instances" in body and isinstance(body["instances"][0], dict) and "b64" not in body["instances"][0]
    with pytest.raises(ServingError) as refused:
        rest_json.predict_tensors(body, _infos(a=tf.int64, b=tf.int64) if dict_rows else _infos(examples=tf.string),
                                  "")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and refused.value.http_status == 400
    assert message in refused.value.message


def test_classify_examples_keep_the_context_apart_and_are_typed_like_tf_serving():
    model_input = rest_json.examples_input({"context": {"user": "u1", "age": 30, "price": 9.0},
                                            "examples": [{"price": 2.5, "tags": ["a", "b"]}]})
    context = model_input.example_list_with_context.context.features.feature
    (example,) = model_input.example_list_with_context.examples
    assert context["user"].bytes_list.value == [b"u1"] and context["age"].int64_list.value == [30]
    assert example.features.feature["price"].float_list.value == [2.5]
    assert example.features.feature["tags"].bytes_list.value == [b"a", b"b"]
    with pytest.raises(ServingError, match="Unexpected element type in feature: flag expecting type: int64"):
        rest_json.examples_input({"examples": [{"flag": [1, "x"]}]})
    with pytest.raises(ServingError, match="'examples' value is an empty array"):
        rest_json.examples_input({"examples": []})


def test_the_command_line_writes_the_files_and_explains_a_serve_without_a_model(tmp_path, raw_config, capsys):
    from recsys.cli import main

    raw_config["export"]["base_path"] = str(tmp_path / "models")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw_config))
    assert main(["serving-config", "--config", str(config_path), "--out", str(tmp_path / "deploy")]) == 0
    assert (tmp_path / "deploy" / "models.config").is_file()
    assert main(["serve"]) == 2
    assert "serve needs --config, --base-path with --model-name, or --model-config-file" in capsys.readouterr().err
