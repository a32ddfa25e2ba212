"""Generated TF Serving config files parse back into their protos; JSON request decoding follows TF Serving."""
import base64

import grpc
import numpy as np
import pytest
import yaml
from google.protobuf import text_format
from tensorflow.core.example import example_pb2

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


def test_predict_bodies_in_row_and_columnar_form_with_b64_values():
    encoded = {"b64": base64.b64encode(b"\x01\x00").decode()}  # a trailing NUL must survive
    inputs, row_form = rest_json.predict_inputs({"instances": [encoded, encoded]}, ["examples"])
    assert row_form and inputs["examples"].tolist() == [b"\x01\x00", b"\x01\x00"]
    inputs, row_form = rest_json.predict_inputs({"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}, ["a", "b"])
    assert inputs["a"].tolist() == [1, 2] and inputs["b"].tolist() == ["x", "y"]
    inputs, row_form = rest_json.predict_inputs({"inputs": {"a": [1.5], "b": ["x"]}}, ["a", "b"])
    assert not row_form and inputs["a"].dtype == np.float64
    assert rest_json.predict_response({"ctr": np.array([0.5, 0.25])}, row_form=True) == {"predictions": [0.5, 0.25]}
    assert rest_json.predict_response({"ctr": np.array([0.5]), "cvr": np.array([0.1])}, row_form=True) == {
        "predictions": [{"ctr": 0.5, "cvr": 0.1}]}
    assert rest_json.predict_response({"x": np.array([b"\xff"], dtype=object)}, row_form=False) == {
        "outputs": [{"b64": "/w=="}]}


@pytest.mark.parametrize("body, message", [
    ({}, "Missing 'inputs' or 'instances'"),
    ({"instances": [1], "inputs": [1]}, "Both 'inputs' and 'instances'"),
    ({"instances": [{"a": 1}, {"b": 2}]}, "instances[0] is missing b"),
    ({"instances": [[1, 2], [3]]}, "rectangular"),
    ({"instances": [{"b64": "***"}]}, "invalid base64"),
])
def test_malformed_predict_bodies_are_invalid_arguments_naming_the_problem(body, message):
    with pytest.raises(ServingError) as refused:
        rest_json.predict_inputs(body, ["a", "b"] if "instances" in body and isinstance(body["instances"][0], dict)
                                 and "b64" not in body["instances"][0] else ["examples"])
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and refused.value.http_status == 400
    assert message in refused.value.message


def test_classify_examples_are_merged_over_the_context_and_typed_like_tf_serving():
    (serialized,) = rest_json.examples_of({"context": {"user": "u1", "age": 30, "price": 9.0},
                                           "examples": [{"price": 2.5, "tags": ["a", "b"]}]})
    feature = example_pb2.Example.FromString(serialized).features.feature
    assert feature["user"].bytes_list.value == [b"u1"] and feature["age"].int64_list.value == [30]
    assert feature["price"].float_list.value == [2.5] and feature["tags"].bytes_list.value == [b"a", b"b"]
    with pytest.raises(ServingError, match="feature 'flag'"):
        rest_json.examples_of({"examples": [{"flag": [1, "x"]}]})
    with pytest.raises(ServingError, match="non-empty list"):
        rest_json.examples_of({"examples": []})


def test_the_command_line_writes_the_files_and_explains_a_serve_without_a_model(tmp_path, raw_config, capsys):
    from recsys.cli import main

    raw_config["export"]["base_path"] = str(tmp_path / "models")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw_config))
    assert main(["serving-config", "--config", str(config_path), "--out", str(tmp_path / "deploy")]) == 0
    assert (tmp_path / "deploy" / "models.config").is_file()
    assert main(["serve"]) == 2
    assert "serve needs --config, --base-path with --model-name, or --model-config-file" in capsys.readouterr().err
