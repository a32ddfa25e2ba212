"""The stand-in server, driven over loopback by the project's REST and gRPC clients.

Scores must equal the SavedModel called in-process; refusals must carry TF
Serving's status codes and a message naming the problem, and never stop the
server; new versions must be picked up without a restart.
"""
import base64
import shutil
import time

import grpc

import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from features.examples import to_example
from serving import signatures
from serving.clients import GrpcClient, RestClient, ServingClientError
from serving.warmup import read_warmup
from tests.serving.conftest import MODEL_NAME

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rows(sample_rows):
    return sample_rows[:20]


@pytest.fixture(scope="module")
def examples(served_config, rows):
    return [to_example(served_config, row) for row in rows]


@pytest.fixture(scope="module")
def expected(in_process, examples):
    return in_process.score(examples)


def _close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=1e-5, atol=1e-6)


def test_signatures_carry_tf_serving_method_names_and_shapes(served_config, exported_version):
    saved_model = saved_model_pb2.SavedModel.FromString((exported_version / "saved_model.pb").read_bytes())
    defs = saved_model.meta_graphs[0].signature_def
    assert {name: defs[name].method_name for name in signatures.signature_methods(served_config)} == {
        "serving_default": "tensorflow/serving/predict", "predict_features": "tensorflow/serving/predict",
        "classify_ctr": "tensorflow/serving/classify", "classify_cvr": "tensorflow/serving/classify",
        "classify_ctcvr": "tensorflow/serving/classify", "regress_dwell": "tensorflow/serving/regress"}
    classify = defs["classify_ctr"]
    assert list(classify.inputs) == ["inputs"] and classify.inputs["inputs"].dtype == tf.string.as_datatype_enum
    assert [d.size for d in classify.outputs["scores"].tensor_shape.dim] == [-1, 2]
    assert list(defs["regress_dwell"].outputs) == ["outputs"]
    assert set(defs["predict_features"].inputs) == set(served_config.feature_columns)
    assert tf.saved_model.experimental.read_fingerprint(str(exported_version)).saved_model_checksum != 0


def test_rest_and_grpc_scores_equal_the_in_process_saved_model(rest, grpc_client, examples, expected):
    for scores in (rest.score_examples(examples), grpc_client.score_examples(examples)):
        assert set(scores) == set(expected)
        for name in expected:
            _close(scores[name], expected[name])
    rows_form = rest.predict(instances=[{"b64": base64.b64encode(e).decode()} for e in examples])
    _close([row["ctr"] for row in rows_form], expected["ctr"])
    multi = grpc_client.multi_inference(examples, ["classify_ctr", "classify_ctcvr", "regress_dwell"])
    _close(multi["classify_ctr"], expected["ctr"])
    _close(multi["classify_ctcvr"], expected["ctcvr"])
    _close(multi["regress_dwell"], expected["dwell"])
    _close(grpc_client.regress(examples, "regress_dwell"), expected["dwell"])
    classified = grpc_client.classify(examples, "classify_cvr").classifications
    _close([row.classes[1].score for row in classified], expected["cvr"])


def test_json_clients_score_raw_features_and_examples_with_context(served_config, rest, rows, expected):
    columns = {}
    for name in served_config.feature_columns:
        column = served_config.column(name)
        values = [row[name] for row in rows]
        columns[name] = [column.separator.join(v) for v in values] if column.type == "string_list" else values
    outputs = rest.predict(inputs=columns, signature_name="predict_features")
    _close(outputs["cvr"], expected["cvr"])
    features = [{name: row[name] for name in served_config.feature_columns} for row in rows]
    context_names = [f.source for f in served_config.features if f.group == "user"]
    context = {name: features[0][name] for name in context_names}
    candidates = [{k: v for k, v in f.items() if k not in context_names} for f in features]
    classified = rest.classify(candidates, "classify_ctr", context=context)
    assert [label for label, _ in classified[0]] == ["0", "1"]
    same_user = [to_example(served_config, {**row, **{n: rows[0][n] for n in context_names}}) for row in rows]
    _close([scores[1][1] for scores in classified], rest.score_examples(same_user)["ctr"])
    _close(rest.regress(candidates, "regress_dwell", context=context), rest.score_examples(same_user)["dwell"])


def test_rank_scores_and_sorts_candidates_for_one_request(served_config, rest, grpc_client, rows):
    context_names = [f.source for f in served_config.features if f.group == "user"]
    context = {name: rows[0][name] for name in context_names}
    candidates = [{name: row[name] for name in served_config.feature_columns if name not in context_names}
                  for row in rows]
    over_rest = rest.rank(context, candidates, sort_by="ctcvr")
    over_grpc = grpc_client.rank(context, candidates, sort_by="ctcvr")
    assert [c.index for c in over_rest] == [c.index for c in over_grpc]
    assert sorted(c.index for c in over_rest) == list(range(len(candidates)))
    ctcvr = [c.scores["ctcvr"] for c in over_rest]
    assert ctcvr == sorted(ctcvr, reverse=True)
    assert over_rest[0].candidate is candidates[over_rest[0].index]
    with pytest.raises(KeyError, match="cannot sort by 'revenue'"):
        rest.rank(context, candidates, sort_by="revenue")


@pytest.mark.parametrize("path, body, status, message", [
    (":predict", b"{not json", 400, "JSON Parse error"),
    (":predict", b'{"signature_name": "nope", "instances": ["x"]}', 400, 'signature name: "nope" not found'),
    (":predict", b'{"instances": [1, 2]}', 400, "JSON Value: 1 Type: Number is not of expected type: string"),
    (":predict", b'{"instances": [{"b64": "/w=="}]}', 400, "parse"),
    (":predict", b'{"signature_name": "predict_features", "inputs": {"device": ["ios"]}}', 400,
     "Missing named input: "),
    (":classify", b'{"signature_name": "classify_ctr", "examples": [{"user_id": "u1"}]}', 400,
     "Feature: device (data type: string) is required but could not be found"),
    (":classify", b'{"signature_name": "regress_dwell", "examples": [{"user_id": "u1"}]}', 400,
     "classification signature outputs"),
    (":regress", b'{"signature_name": "regress_dwell", "examples": [{"item_price": "cheap"}]}', 400,
     "item_price"),
    ("/versions/99", None, 404, "Could not find version 99"),
    (":frobnicate", b"{}", 400, "Malformed request"),
])
def test_bad_rest_requests_get_tf_serving_status_codes_and_the_server_keeps_serving(
        server, rest, examples, expected, path, body, status, message):
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL_NAME}{path}"
    response = requests.post(url, data=body, timeout=60) if body is not None else requests.get(url, timeout=60)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    _close(rest.score_examples(examples[:2])["ctr"], expected["ctr"][:2])


def test_oversize_batches_and_unknown_models_are_refused_over_both_protocols(
        served_config, server, rest, grpc_client, examples, expected):
    too_many = examples * (served_config.serving.max_batch_size // len(examples) + 1)
    for client, code in ((rest, 400), (grpc_client, "INVALID_ARGUMENT")):
        with pytest.raises(ServingClientError, match="larger than maximum input batch size 64") as refused:
            client.score_examples(too_many)
        assert refused.value.status == code
    with pytest.raises(ServingClientError, match="Feature: device .* is required") as refused:
        grpc_client.classify([tf.train.Example().SerializeToString()], "classify_ctr")
    assert refused.value.status == "INVALID_ARGUMENT"
    with RestClient(f"http://127.0.0.1:{server.rest_port}", "nobody", retries=0) as unknown:
        with pytest.raises(ServingClientError, match="Could not find any versions of model nobody") as refused:
            unknown.status()
        assert refused.value.status == 404
    with GrpcClient(f"127.0.0.1:{server.grpc_port}", "nobody", retries=0) as unknown:
        with pytest.raises(ServingClientError) as refused:
            unknown.score_examples(examples)
        assert refused.value.status == "NOT_FOUND"
    _close(grpc_client.score_examples(examples)["cvr"], expected["cvr"])


def test_every_warmup_record_replays_against_the_served_model(served_config, server, exported_version, in_process):
    logs = read_warmup(exported_version)
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log", "multi_inference_log", "predict_log"]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    for log in logs:
        if log.WhichOneof("log_type") == "predict_log":
            response = stub.Predict(log.predict_log.request, timeout=60)
            assert set(response.outputs) == set(served_config.output_names)
        else:
            request = log.multi_inference_log.request
            response = stub.MultiInference(request, timeout=60)
            assert len(response.results) == len(request.tasks) == len(served_config.output_names)
    examples = list(tf.make_ndarray(logs[0].predict_log.request.inputs["examples"]))
    assert len(examples) == served_config.serving.warmup_rows
    replayed = stub.Predict(logs[2].predict_log.request, timeout=60)  # raw features: same rows, same scores
    _close(tf.make_ndarray(replayed.outputs["ctr"]), in_process.score(examples)["ctr"])


def test_a_new_version_is_picked_up_and_the_old_one_unloaded_without_a_restart(
        server, rest, grpc_client, exported_version, examples, expected):
    from serving.export import _publish

    staging = exported_version.parent / ".staging-copy"
    shutil.copytree(exported_version, staging)
    new_version = _publish(staging, exported_version.parent)
    assert new_version.name == "2"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = {int(s["version"]): s["state"] for s in rest.status()}
        if states.get(2) == "AVAILABLE" and states.get(1) == "END":
            break
        time.sleep(0.3)
    assert states == {1: "END", 2: "AVAILABLE"}
    status = grpc_client.status().model_version_status
    assert [(s.version, s.state) for s in status] == [(1, 50), (2, 30)]  # END, AVAILABLE
    _close(rest.score_examples(examples)["ctr"], expected["ctr"])
    with RestClient(f"http://127.0.0.1:{server.rest_port}", MODEL_NAME, version=1) as pinned:
        with pytest.raises(ServingClientError, match=r"Specific\(served, 1\)"):
            pinned.score_examples(examples)
