"""The stand-in answers as TensorFlow Serving does, case by case from TF Serving's source and tests.

Each case names the TF Serving file it comes from (paths under
`tensorflow_serving/` of github.com/tensorflow/serving). The TF Serving binary
cannot run here, so the expectations are TF Serving's own: the messages its
code builds, the codes `http_server.cc` maps them to, the JSON its tests and
golden files hold. Requests go over loopback to the tiny model of
`conftest.tiny_server` (half_plus_two and a few more signatures).
"""
import base64
import http.client
import json
import math

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

from serving.standin import json_document, rest_json
from serving.standin.errors import ServingError
from tests.serving.conftest import TINY_MODEL

M = f"/v1/models/{TINY_MODEL}"


def call(server, method: str, path: str, body: bytes | str | None = None, headers=None):
    """(status, parsed JSON or raw text) of one request sent exactly as written (no client-side quoting)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        connection.request(method, path, body=body.encode() if isinstance(body, str) else body,
                           headers=headers or {})
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
    finally:
        connection.close()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


def error_of(server, method, path, body=None) -> tuple[int, str]:
    status, payload = call(server, method, path, body)
    assert isinstance(payload, dict) and set(payload) == {"error"}, payload
    return status, payload["error"]


# --- URLs: model_servers/http_rest_api_util.cc (kPredictionApiGegex, kModelStatusApiRegex, ParseModelInfo),
# model_servers/http_rest_api_handler.cc (ProcessRequest), cases of http_rest_api_handler_test.cc UnsupportedApiCalls.

@pytest.mark.parametrize("method, path, message", [
    ("GET", "/v1/foo", "Malformed request: GET /v1/foo"),
    ("POST", "/v1/foo", "Malformed request: POST /v1/foo"),
    ("GET", "/v1/models", "Missing model name in request."),
    ("GET", "/v1/models/debug/model_name", "Malformed request: GET /v1/models/debug/model_name"),
    ("POST", "/v1/models", "Malformed request: POST /v1/models"),
    ("GET", f"{M}:predict", f"Malformed request: GET {M}:predict"),
    ("GET", f"{M}/version/50:predict", "Malformed request"),
    ("POST", f"{M}/version/50:regress", "Malformed request"),
    ("POST", f"{M}/versions/HELLO:regress", "Malformed request"),
    ("POST", f"{M}/versions/{2**64 - 1}:regress", f"Failed to convert version: {2**64 - 1} to numeric."),
    ("GET", f"{M}/versions/{2**63}", f"Failed to convert version: {2**63} to numeric."),
    ("POST", f"{M}/metadata", "Malformed request"),
    ("POST", f"{M}/label/some_label:regress", "Malformed request"),
    ("POST", f"{M}/versions/50/labels/some_label:regress", "Malformed request"),
    ("POST", f"{M}/versions/some_label:regress", "Malformed request"),
    ("GET", f"{M}/versions/1/labels/stable", "Malformed request"),
    ("GET", "/v1/models/versions/1", "Missing model name in request."),
    ("POST", f"{M}:frobnicate", "Malformed request"),
    ("POST", f"{M}:PREDICT", f"Malformed request: POST {M}:PREDICT"),  # the pattern is (?i), the dispatch is not
    ("PUT", f"{M}:predict", f"Malformed request: PUT {M}:predict"),
    ("DELETE", M, f"Malformed request: DELETE {M}"),
])
def test_malformed_urls_get_400_with_tf_servings_message(tiny_server, method, path, message):
    status, error = error_of(tiny_server, method, path, "{}" if method != "GET" else None)
    assert (status, error[:len(message)]) == (400, message), error


def test_urls_are_matched_case_insensitively_with_query_strings_and_decoded_model_names(tiny_server):
    # http_rest_api_util.cc: (?i) patterns; model name and label percent-decoded (DecodeArg).
    assert call(tiny_server, "GET", f"/V1/MODELS/{TINY_MODEL}")[0] == 200
    assert call(tiny_server, "GET", "/v1/models/h%61lf/labels/st%61ble")[0] == 200
    status, body = call(tiny_server, "POST", "/v1/models/h%61lf:predict", '{"instances": [1.0]}')
    assert (status, body) == (200, {"predictions": [2.5]})
    # GET's subresource is compared exactly after a case-insensitive match: /METADATA is a status request.
    status, body = call(tiny_server, "GET", f"{M}/METADATA")
    assert status == 200 and "model_version_status" in body
    # evhttp_request.cc: uri_path() is path and query, so the query joins the model name the pattern takes.
    assert error_of(tiny_server, "GET", f"{M}?verbose=1") == (
        404, f"Could not find any versions of model {TINY_MODEL}?verbose=1")


def test_paths_outside_v1_get_libevents_404_page_and_options_is_a_cors_preflight(tiny_server):
    # model_servers/http_server.cc: only kPathRegex "(?i)/v1/.*" is dispatched; util/net_http evhttp_server.cc
    # answers the rest with evhttp_send_error(HTTP_NOTFOUND).
    status, page = call(tiny_server, "GET", "/statuspage")
    assert status == 404 and "<TITLE>404 Not Found</TITLE>" in page
    # http_server.cc: OPTIONS needs an http(s) Origin (FailedPrecondition → 400 otherwise), and gets no body.
    assert call(tiny_server, "OPTIONS", f"{M}:predict", headers={"Origin": "https://example.com"}) == (200, "")
    assert call(tiny_server, "OPTIONS", f"{M}:predict") == (400, "")


# --- Model, version and label lookups: model_servers/server_core.cc, core/basic_manager.cc, core/manager.h,
# model_servers/get_model_status_impl.cc; codes from http_rest_api_handler_test.cc PredictModelNameVersionErrors.

@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1/models/foo:predict", '{"instances": [1]}', 404, "Servable not found for request: Latest(foo)"),
    ("POST", "/v1/models/foo/versions/50:predict", '{"instances": [1]}', 404,
     "Servable not found for request: Specific(foo, 50)"),
    ("POST", f"{M}/versions/99:predict", '{"instances": [1]}', 404,
     f"Servable not found for request: Specific({TINY_MODEL}, 99)"),
    ("POST", f"{M}/labels/nolabel:predict", '{"instances": ["x", "y"]}', 400,
     "Unrecognized servable version label: nolabel"),
    ("POST", "/v1/models/foo/labels/stable:classify", '{"examples": [{}]}', 400,
     "Unrecognized servable version label: stable"),
    ("GET", "/v1/models/foo", None, 404, "Could not find any versions of model foo"),
    ("GET", f"{M}/versions/99", None, 404, f"Could not find version 99 of model {TINY_MODEL}"),
    ("GET", "/v1/models/foo/metadata", None, 404, "Servable not found for request: Latest(foo)"),
    # ParseJson and FillSignature run before the model is looked up (json_tensor.cc via the handler).
    ("POST", "/v1/models/foo:predict", "{oops", 400, "JSON Parse error: Missing a name for object member. at offset: 1"),
])
def test_unknown_models_versions_and_labels_get_tf_servings_codes_and_words(tiny_server, method, path, body,
                                                                           status, message):
    assert error_of(tiny_server, method, path, body) == (status, message)


def test_status_lists_versions_like_tf_serving_and_ignores_a_label(tiny_server):
    # http_rest_api_handler_test.cc GetStatus; get_model_status_impl.cc reads only a version number.
    expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}
    assert call(tiny_server, "GET", M) == (200, expected)
    assert call(tiny_server, "GET", f"{M}/versions/1") == (200, expected)
    assert call(tiny_server, "GET", f"{M}/labels/anything") == (200, expected)


# --- Metadata: servables/tensorflow/get_model_metadata_impl.cc, model_servers/http_rest_api_util.cc
# (ToJsonString), golden servables/tensorflow/testdata/saved_model_half_plus_two_tf2_2_versions_metadata.json.

def test_rest_metadata_is_tf_servings_document_field_for_field(tiny_server):
    status, document = call(tiny_server, "GET", f"{M}/metadata")
    assert status == 200
    assert list(document) == ["model_spec", "metadata"]
    assert document["model_spec"] == {"name": TINY_MODEL, "signature_name": "", "version": "1"}
    assert list(document["metadata"]) == ["signature_def"]
    signature_map = document["metadata"]["signature_def"]
    assert list(signature_map) == ["signature_def"]  # the SignatureDefMap's one field
    signatures = signature_map["signature_def"]
    assert set(signatures) == {"serving_default", "multi", "classify_x", "regress_x", "__saved_model_init_op"}
    default = signatures["serving_default"]
    assert set(default) == {"inputs", "outputs", "method_name", "defaults"}  # defaults printed even when empty
    assert default["method_name"] == "tensorflow/serving/predict" and default["defaults"] == {}
    assert default["inputs"]["x"] == {"dtype": "DT_FLOAT", "tensor_shape": {
        "dim": [{"size": "-1", "name": ""}], "unknown_rank": False}, "name": "serving_default_x:0"}
    assert set(default["outputs"]["y"]) == {"dtype", "tensor_shape", "name"}
    assert call(tiny_server, "GET", f"{M}/versions/1/metadata") == (200, document)
    assert call(tiny_server, "GET", f"{M}/labels/stable/metadata") == (200, document)


@pytest.fixture(scope="module")
def stubs(tiny_server):
    channel = grpc.insecure_channel(f"127.0.0.1:{tiny_server.grpc_port}")
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()


def _grpc_error(call_once) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as refused:
        call_once()
    return refused.value.code(), refused.value.details()


def test_grpc_metadata_names_model_and_version_only_and_checks_fields_first(stubs):
    prediction, _ = stubs
    spec = model_pb2.ModelSpec(name=TINY_MODEL)
    response = prediction.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=spec, metadata_field=["signature_def"]), timeout=30)
    assert response.model_spec.name == TINY_MODEL and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "" and list(response.metadata) == ["signature_def"]
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    assert "serving_default" in signature_map.signature_def
    # get_model_metadata_impl.cc: ValidateGetModelMetadataRequest, before any lookup (so even for model "foo").
    for request, message in [
        (get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"]), "Missing ModelSpec"),
        (get_model_metadata_pb2.GetModelMetadataRequest(model_spec=model_pb2.ModelSpec(name="foo")),
         "GetModelMetadataRequest must specify at least one metadata_field"),
        (get_model_metadata_pb2.GetModelMetadataRequest(model_spec=model_pb2.ModelSpec(name="foo"),
                                                        metadata_field=["signature_def", "tags"]),
         "Metadata field tags is not supported"),
    ]:
        assert _grpc_error(lambda: prediction.GetModelMetadata(request, timeout=30)) == (
            grpc.StatusCode.INVALID_ARGUMENT, message)


# --- gRPC Predict: servables/tensorflow/predict_util.cc, tensorflow/cc/saved_model/util.cc (GetInputValues),
# model_servers/server_core.cc (ServableRequestFromModelSpec), servables/tensorflow/predict_impl.cc.

def _predict_request(signature="", **inputs) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=TINY_MODEL, signature_name=signature))
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def test_grpc_predict_refusals_carry_tf_servings_codes_and_messages(stubs):
    prediction, _ = stubs
    x = np.array([1.0], np.float32)
    cases = [
        (_predict_request("nope", x=x), grpc.StatusCode.FAILED_PRECONDITION,
         'Serving signature key "nope" not found.'),
        (_predict_request(x=x, z=x), grpc.StatusCode.INVALID_ARGUMENT,
         "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. "
         "Missing but required: {}."),
        (_predict_request("multi", a=np.ones([1, 2], np.float32)), grpc.StatusCode.INVALID_ARGUMENT,
         "input size does not match signature: 1!=3 len({a}) != len({a,b,c}). Sent extra: {}. "
         "Missing but required: {b,c}."),
        (_predict_request(z=x), grpc.StatusCode.INVALID_ARGUMENT,
         "Signature input alias: x(feed name: serving_default_x:0) not found in request and no default value "
         "provided. Inputs expected to be in the request {z}, or default input alias set: "),
        (predict_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
        (predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec()), grpc.StatusCode.INVALID_ARGUMENT,
         "ModelSpec has no name specified."),
    ]
    filtered = _predict_request(x=x)
    filtered.output_filter.extend(["nope"])
    cases.append((filtered, grpc.StatusCode.INVALID_ARGUMENT,
                  "output tensor alias not found in signature: nope Outputs expected to be in the set {y}."))
    twice = _predict_request(x=x)
    twice.output_filter.extend(["y", "y"])
    cases.append((twice, grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias: y"))
    for request, code, message in cases:
        assert _grpc_error(lambda: prediction.Predict(request, timeout=30)) == (code, message)
    response = prediction.Predict(_predict_request(x=np.array([2.0, 4.0], np.float32)), timeout=30)
    assert response.model_spec.signature_name == "serving_default" and response.model_spec.version.value == 1
    # predict_util.cc: outputs written with Tensor::AsProtoField, values in float_val, not tensor_content.
    y = response.outputs["y"]
    assert (list(y.float_val), y.tensor_content, [d.size for d in y.tensor_shape.dim]) == ([3.0, 4.0], b"", [2])


def test_grpc_status_ignores_a_label_and_names_missing_versions(stubs):
    # model_servers/get_model_status_impl.cc
    _, models = stubs
    by_label = get_model_status_pb2.GetModelStatusRequest(
        model_spec=model_pb2.ModelSpec(name=TINY_MODEL, version_label="anything"))
    assert [s.version for s in models.GetModelStatus(by_label, timeout=30).model_version_status] == [1]
    missing = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="foo"))
    assert _grpc_error(lambda: models.GetModelStatus(missing, timeout=30)) == (
        grpc.StatusCode.NOT_FOUND, "Could not find any versions of model foo")


# --- Request bodies: util/json_tensor.cc (ParseJson, FillSignature, FillPredictRequestFromJson,
# FillTensorMapFromInstancesList, FillTensorMapFromInputsMap, FillTensorProto, AddValueToTensor,
# FillClassifyRegressRequestFromJson, MakeExampleFromJsonObject, AddValueToFeature); substrings that
# json_tensor_test.cc and http_rest_api_handler_test.cc PredictRequestErrors check are marked (test).

@pytest.mark.parametrize("body, message", [
    ("", "JSON Parse error: The document is empty"),  # (test)
    ("instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0"),  # (test)
    ('{"instances": [1 2]}', "JSON Parse error: Missing a comma or ']' after an array element. at offset: 17"),
    ('{"instances": [1], "x"}', "JSON Parse error: Missing a colon after a name of object member. at offset: 22"),
    ('{"instances": [1.]}', "JSON Parse error: Miss fraction part in number. at offset: 17"),
    ('{"instances": [1e999]}', "JSON Parse error: Number too big to be stored in double. at offset: 15"),
    ('{"instances": ["x', "JSON Parse error: Missing a closing quotation mark in string. at offset: 17"),
    ('{"instances": ["é" 1]}', "JSON Parse error: Missing a comma or ']' after an array element. at offset: 20"),
    ('\ufeff{"instances": [1.0], "signature_name": 1}',  # RapidJSON skips the BOM; then FillSignature refuses
     "JSON Value: {\n    \"instances\": [1.0],\n    \"signature_name\": 1\n} not formatted correctly. "
     "'signature_name' key must be a string value."),
    ("[1, 2]", "JSON Value: [1, 2] Is not object"),
    ('{"signature_name": 100}', "JSON Value: {\n    \"signature_name\": 100\n} not formatted correctly. "
                                "'signature_name' key must be a string value."),  # (test)
    ('{"signature_name": "nope", "instances": [1]}', 'Serving signature name: "nope" not found in signature def'),
    ("{}", "Missing 'inputs' or 'instances' key"),
    ('{"instances": [1], "inputs": [1]}', "JSON Value: {\n    \"instances\": [1],\n    \"inputs\": [1]\n} "
                                          "Not formatted correctly expecting only one of 'inputs' or 'instances' "
                                          "keys to exist "),
    ('{"instances": 1}', "JSON Value: {\n    \"instances\": 1\n} Expecting 'instances' to be an list/array"),
    ('{"instances": []}', "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"),
    ('{"instances": ["x", "y"]}', "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
                                  "JSON Value: \"x\" Type: String is not of expected type: float"),  # (test)
    ('{"instances": [[1.0], 2.0]}', "Failed to process element: 1 of 'instances' list. Error: "
                                    "INVALID_ARGUMENT: Expecting shape [1] but got: []"),
    ('{"instances": [[1.0], [2.0, 3.0]]}', "Failed to process element: 1 of 'instances' list. Error: "
                                           "INVALID_ARGUMENT: Expecting tensor size: 1 but got: 2"),
    ('{"instances": [{"x": 1.0}, [1.0]]}', "Expecting object but got list at item 1 of input list"),
    ('{"inputs": {"y": [1.0]}}', "Missing named input: x in 'inputs' object."),
    # FillTensorProto reports level + 1 against the rank: "incorrect level: 2 ... Expected at level: 2".
    ('{"inputs": [[1.0], 2.0]}', "JSON Value: 2.0 found at incorrect level: 2 in the JSON DOM. "
                                 "Expected at level: 2"),
    ('{"inputs": [1.0, [2.0]]}', "Encountered list at unexpected level: 1 expected < 1"),
    ('{"inputs": [true]}', "JSON Value: true Type: True is not of expected type: float"),
    ('{"inputs": [{"b64": "AA=="}]}', "JSON Value: {\n    \"b64\": \"AA==\"\n} Type: Object is not of expected "
                                      "type: float"),
    ('{"signature_name": "multi", "instances": [[1, 2]]}',
     "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
     "tensorinfo_map"),
    ('{"signature_name": "multi", "inputs": [1]}',
     "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
     "tensorinfo_map"),
    ('{"signature_name": "multi", "instances": [{"a": [1, 2], "b": "x"}]}',
     "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"a\": [1, 2],\n    \"b\": \"x\"\n} "
     "keys must be equal to: a,b,c"),
    ('{"signature_name": "multi", "instances": [{"a": [1, 2], "b": "x", "c": 1, "d": 1}]}',
     "Failed to process element: 0 key: d of 'instances' list. Error: INVALID_ARGUMENT: JSON object: does not "
     "have named input: d"),
    ('{"signature_name": "multi", "instances": [{"a": [1, 2], "b": "x", "c": 1}, {"a": [1], "b": "y", "c": 2}]}',
     "Failed to process element: 1 key: a of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 2 "
     "but got: 1"),
    ('{"signature_name": "multi", "instances": [{"a": [1, 2], "b": "x", "c": 2.5}]}',
     "Failed to process element: 0 key: c of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: 2.5 "
     "Type: Number is not of expected type: int64"),
    ('{"signature_name": "multi", "inputs": {"a": [[1, 2]], "b": [{"b64": "!!"}], "c": [1]}}',
     "Unable to base64 decode"),
    ('{"signature_name": "multi", "inputs": {"a": [[1, 2]], "b": [{"b64": 1}], "c": [1]}}',
     "JSON Value: {\n    \"b64\": 1\n} not formatted correctly for base64 data"),
    ('{"signature_name": "multi", "inputs": {"a": [[1, 2]], "b": ["x"], "c": [18446744073709551615]}}',
     "JSON Value: 18446744073709551615 Type: Number is not of expected type: int64"),
])
def test_bad_predict_bodies_get_tf_servings_words(tiny_server, body, message):
    assert error_of(tiny_server, "POST", f"{M}:predict", body) == (400, message)


# RapidJSON's include/rapidjson/reader.h (ParseStringToStream) refuses a \u escape of a UTF-16 surrogate that is not
# half of a pair, a lone low one or a high one not followed by an escaped low one, with
# kParseErrorStringUnicodeSurrogateInvalid ("The surrogate pair in string is invalid.", include/rapidjson/error/en.h)
# at the offset of the first escape's backslash (escapeOffset); util/json_tensor.cc ParseJson writes
# "JSON Parse error: <message> at offset: <offset>". Document order decides which error is reported.
@pytest.mark.parametrize("action, body, message", [
    ("predict", '{"instances": ["\\ud800"]}', "JSON Parse error: The surrogate pair in string is invalid. at offset: 16"),
    ("predict", '{"instances": ["a\\udc80"]}', "JSON Parse error: The surrogate pair in string is invalid. at offset: 17"),
    ("predict", '{"instances": ["\\ud800\\u0041"]}',
     "JSON Parse error: The surrogate pair in string is invalid. at offset: 16"),
    ("predict", '{"instances": ["\\ud800" 1]}', "JSON Parse error: The surrogate pair in string is invalid. at offset: 16"),
    ("predict", '{"instances": [1 "\\ud800"]}',
     "JSON Parse error: Missing a comma or ']' after an array element. at offset: 17"),
    ("classify", '{"examples": [{"names": "\\udfff"}]}',
     "JSON Parse error: The surrogate pair in string is invalid. at offset: 25"),
    ("classify", '{"examples": [{"x": 1.0}], "signature_name": "\\udbff"}',
     "JSON Parse error: The surrogate pair in string is invalid. at offset: 46"),
])
def test_unpaired_surrogate_escapes_are_refused_as_rapidjson_does(tiny_server, action, body, message):
    assert error_of(tiny_server, "POST", f"{M}:{action}", body) == (400, message)


def test_paired_surrogate_escapes_and_an_escaped_backslash_are_read_as_text(tiny_server):
    body = ('{"signature_name": "multi", "inputs": {"a": [[1, 2], [3, 4]], "b": ["\\ud83d\\ude00", "\\\\ud800"], '
            '"c": [1, 2]}} "\\ud800"')  # text after the first value is never read (kParseStopWhenDoneFlag)
    status, body = call(tiny_server, "POST", f"{M}:predict", body)
    assert (status, body["outputs"]["echo_bytes"]) == (200, [{"b64": base64.b64encode("😀".encode()).decode()},
                                                             {"b64": base64.b64encode(b"\\ud800").decode()}])


@pytest.mark.parametrize("body, message", [
    ('{"examples": [1]}', "Example must be JSON object but got JSON Number"),  # (test)
    ('{"context": [], "examples": [{}]}', "Example must be JSON object but got JSON Array"),
    ('{"signature_name": "classify_x"}', "JSON Value: {\n    \"signature_name\": \"classify_x\"\n} When method is "
                                         "classify, key 'examples' is expected and was not found"),
    ('{"examples": {}}', "JSON Value: {\n    \"examples\": {}\n} Expecting 'examples' value to be an list/array"),
    ('{"examples": []}', "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array"),
    ('{"examples": [{"names": null}]}', "Feature: names has element with unexpected JSON type: Null"),  # (test)
    ('{"examples": [{"names": [1, "x"]}]}', "Unexpected element type in feature: names expecting type: int64"),
    ('{"examples": [{"names": [1, 2.5]}]}', "Unexpected element type in feature: names expecting type: int64"),
    ('{"examples": [{"names": {"a": 1}}]}', "Feature: names has element with unexpected JSON type: Object"),
    ('{"examples": [{"names": [[1]]}]}', "Feature: names has element with unexpected JSON type: Array"),
    ('{"examples": [{"names": 18446744073709551615}]}',
     "Feature: names has uint64_t element. Only int64_t is supported."),  # (test)
    ('{"signature_name": "nope", "examples": [{"x": 1.0}]}', "No signature was found with the name: nope"),
    ('{"signature_name": "regress_x", "examples": [{"x": 1.0}]}',  # servables/tensorflow/classifier.cc
     'Expected classification signature outputs to contain at least one of "classes" or "scores". Signature was: '),
])
def test_bad_classify_bodies_get_tf_servings_words(tiny_server, body, message):
    status, error = error_of(tiny_server, "POST", f"{M}:classify", body)
    assert (status, error[:len(message)]) == (400, message), error


def test_regress_refuses_a_classification_signature_with_regressor_cc_words(tiny_server):
    # servables/tensorflow/regressor.cc: PreProcessRegression
    body = '{"signature_name": "classify_x", "examples": [{"x": 1.0}]}'
    status, error = error_of(tiny_server, "POST", f"{M}:regress", body)
    assert status == 400 and error.startswith("No regression outputs found in SignatureDef: ")


# --- Responses: util/json_tensor.cc MakeJsonFromTensors (row and columnar, "_bytes" outputs as b64),
# WriteDecimal (floats as written, NaN and Infinity tokens), MakeJsonFromClassificationResult and
# MakeJsonFromRegressionResult; the request typing of AddValueToTensor and AddValueToFeature.

def test_predict_answers_in_the_format_asked_with_floats_as_tf_serving_writes_them(tiny_server):
    assert call(tiny_server, "POST", f"{M}:predict", '{"instances": [1, 2.5, 0.2]}') == (
        200, {"predictions": [2.5, 3.25, 2.1]})  # 2.1 from float32, written with six digits as TF Serving does
    status, body = call(tiny_server, "POST", f"{M}:predict", '{"inputs": {"x": [-Infinity]}, "extra": 1}')
    assert (status, body) == (200, {"outputs": [-math.inf]})
    # RapidJSON's kParseNanAndInfFlag also reads Inf, -Inf and -NaN (a string holding them stays a string).
    status, body = call(tiny_server, "POST", f"{M}:predict", '{"inputs": [Inf, -Inf], "note": "-Inf \\" NaN"}')
    assert (status, body) == (200, {"outputs": [math.inf, -math.inf]})
    multi = ('{"signature_name": "multi", "instances": [{"a": [1, 2], "b": {"b64": "/w=="}, "c": 3}, '
             '{"a": [0.5, 0.25], "b": "text", "c": -4}]}')
    assert call(tiny_server, "POST", f"{M}:predict", multi) == (200, {"predictions": [
        {"doubled": 6, "echo_bytes": {"b64": "/w=="}, "total": 3.0},
        {"doubled": -8, "echo_bytes": {"b64": base64.b64encode(b"text").decode()}, "total": 0.75}]})
    columnar = '{"signature_name": "multi", "inputs": {"a": [[1, 2]], "b": ["x"], "c": [5]}}'
    assert call(tiny_server, "POST", f"{M}:predict", columnar) == (200, {"outputs": {
        "doubled": [10], "echo_bytes": [{"b64": "eA=="}], "total": [3.0]}})


def test_a_string_output_that_is_not_utf8_goes_back_as_base64_and_a_bytes_output_always_does():
    # json_tensor.cc writes a string output's raw bytes (RapidJSON's Writer::String); Python's JSON writer cannot,
    # so the stand-in sends bytes that are not UTF-8 as {"b64": ...}, the documented divergence (deploy/README.md).
    strings = tf.make_tensor_proto(np.array([b"caf\xc3\xa9", b"\xff\xfe"], dtype=object))
    assert rest_json.predict_json({"text": strings}, row_format=True) == {
        "predictions": ["café", {"b64": base64.b64encode(b"\xff\xfe").decode()}]}
    assert rest_json.predict_json({"text_bytes": strings}, row_format=False) == {  # kBytesTensorNameSuffix
        "outputs": [{"b64": base64.b64encode("café".encode()).decode()}, {"b64": base64.b64encode(b"\xff\xfe").decode()}]}


def test_nan_and_infinity_are_accepted_and_written_as_tokens(tiny_server):
    connection = http.client.HTTPConnection("127.0.0.1", tiny_server.rest_port, timeout=30)
    connection.request("POST", f"{M}:predict", body=b'{"inputs": [NaN, Infinity, -Infinity]}')
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json"  # http_rest_api_handler_test.cc: headers
    assert json.loads(text, parse_constant=str) == {"outputs": ["NaN", "Infinity", "-Infinity"]}


def test_classify_and_regress_results_and_example_typing(tiny_server):
    status, body = call(tiny_server, "POST", f"{M}:classify",
                        '{"signature_name": "classify_x", "examples": [{"x": 0.0}, {"x": [0]}]}')
    # An integer makes an int64 feature (AddValueToFeature); the model parses x as float and refuses it
    # (TensorFlow's example parser, example_proto_fast_parsing.cc).
    assert status == 400 and "x" in body["error"]
    assert body == {"error": "Key: x, Index: 1.  Data types don't match. Data type: int64 but expected type: float"}
    status, body = call(tiny_server, "POST", f"{M}:classify",
                        '{"signature_name": "classify_x", "context": {"x": 0.0}, "examples": [{}]}')
    assert (status, body) == (200, {"results": [[["", 0.5], ["", 0.5]]]})
    status, body = call(tiny_server, "POST", f"{M}:regress",
                        '{"signature_name": "regress_x", "examples": [{"x": 1.0}, {"x": 3.0}]} trailing text')
    assert (status, body) == (200, {"results": [2.5, 3.5]})  # kParseStopWhenDoneFlag: text after the value is ignored


# --- Bodies no parser should choke on: 400, never 500, and the server keeps answering.

def test_pathological_nesting_and_size_get_400_and_the_server_keeps_serving(tiny_server):
    # The size limit's message is checked in test_standin_timeouts (a 4096-byte limit; 256 MiB by default).
    deep = "[" * 200_000 + "]" * 200_000
    not_a_float = "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
    for body, message in [
        (f'{{"instances": {deep}}}', _NESTED_TOO_DEEPLY), (deep, _NESTED_TOO_DEEPLY),
        ('{"a":' * 100_000 + "1" + "}" * 100_000, _NESTED_TOO_DEEPLY),
        ('{"instances": [' + "9" * 10_000 + "]}", "JSON Parse error: Number too big to be stored in double. at offset: 15"),
        ('{"instances": ["' + "x" * 5_000_000 + '"]}', not_a_float + '"' + "x" * 200),
        (b'{"instances": ["\xff\xfe"]}', not_a_float + '"\ufffd\ufffd" Type: String is not of expected type: float'),
        # 601 dimensions: beyond TensorShape's 254, so the TensorProto does not parse (predict_util.cc).
        ('{"instances": [' + "[" * 600 + "1.0" + "]" * 600 + "]}", "tensor parsing error: x"),
    ]:
        status, payload = call(tiny_server, "POST", f"{M}:predict", body)
        assert status == 400 and payload["error"], payload
        assert payload["error"][:len(message)] == message, payload["error"][:300]
    assert call(tiny_server, "POST", f"{M}:predict", '{"instances": [1.0]}') == (200, {"predictions": [2.5]})


# --- The JSON helpers on their own: util/json_tensor.cc (JsonValueToDebugString with RapidJSON's PrettyWriter,
# kFormatSingleLineArray, cut after 256 bytes) and RapidJSON's dtoa Prettify for doubles.

def test_debug_strings_are_rapidjsons_pretty_writer_cut_at_256_bytes():
    assert json_document.debug_string({"a": [1, 2.0, "x"], "b": {}, "c": None, "d": True}) == (
        '{\n    "a": [1, 2.0, "x"],\n    "b": {},\n    "c": null,\n    "d": true\n}')
    assert json_document.debug_string([{"b64": "AA=="}]) == '[{\n        "b64": "AA=="\n    }]'
    assert json_document.debug_string(["é\x1f\n\"/"]) == '["é\\u001F\\n\\"/"]'  # RapidJSON's escapes
    cut = json_document.debug_string(list(range(1000)))
    assert 256 <= len(cut) < 262 and cut.startswith("[0, 1, 2") and not cut.endswith("]")
    assert json_document.debug_string([[[[[[[[1]]]]]]]] * 10_000)[:6] == "[[[[[["  # no recursion, any depth
    assert [json_document.rapidjson_double(v) for v in (1.0, 1e20, 1e21, 1.5e-7, 0.001234, -2.5, 123.456)] == [
        "1.0", "100000000000000000000.0", "1e21", "1.5e-7", "0.001234", "-2.5", "123.456"]


def test_floats_are_written_with_six_digits_unless_that_loses_the_value():
    # json_tensor.cc: WriteDecimal — StrCat (six significant digits), else max_digits10 digits.
    assert rest_json._written_floats([np.float32(0.1)]) == [0.1]
    assert rest_json._written_floats([np.float32(1435774380)]) == [1435774340.0]  # "1.43577434e+09"
    assert rest_json._written_floats([0.1 + 0.2], np.float64) == [0.30000000000000004]


_NESTED_TOO_DEEPLY = "JSON Parse error: arrays or objects nested too deeply for the stand-in's parser (about 1000 levels)"


@pytest.mark.parametrize("body, outcome", [
    (b"\x00", "JSON Parse error: The document is empty. at offset: 0"),  # reader.h Parse: '\0' ends the stream
    (b"{\"a\": \"\\ud800\"}", "JSON Parse error: The surrogate pair in string is invalid. at offset: 7"),
    (b"{\"a\": -}", "JSON Parse error: Invalid value. at offset: 7"),  # reader.h ParseNumber took the minus sign
    (b"[" * 5000, _NESTED_TOO_DEEPLY),  # the stand-in's documented divergence (RapidJSON: Invalid value.)
    (b"{\"a\":" + b"1" * 30 + b"}", {"a": 1.111111111111111e29}),  # beyond 64 bits: a double, as RapidJSON reads it
])
def test_parse_body_gives_the_document_or_invalid_argument_never_another_exception(body, outcome):
    if isinstance(outcome, dict):
        assert json_document.parse_body(body) == outcome
        return
    with pytest.raises(ServingError) as refused:
        json_document.parse_body(body)
    assert (refused.value.code, refused.value.message) == (grpc.StatusCode.INVALID_ARGUMENT, outcome)
    assert refused.value.message.startswith(("JSON", ))


def test_grpc_classify_regress_and_multi_inference_refusals(stubs):
    # servables/tensorflow/classifier.cc, regressor.cc, util.cc (Input is empty.), multi_inference.cc,
    # multi_inference_helper.cc (no task: an empty ModelSpec).
    from tensorflow_serving.apis import classification_pb2, inference_pb2, input_pb2, regression_pb2

    prediction, _ = stubs
    example = tf.train.Example()
    example.features.feature["x"].float_list.value.append(1.0)
    examples = input_pb2.Input(example_list=input_pb2.ExampleList(examples=[example]))

    def spec(signature):
        return model_pb2.ModelSpec(name=TINY_MODEL, signature_name=signature)

    def task(signature, method="tensorflow/serving/classify", name=TINY_MODEL):
        return inference_pb2.InferenceTask(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature),
                                           method_name=method)

    cases = [
        (prediction.Classify, classification_pb2.ClassificationRequest(model_spec=spec("nope"), input=examples),
         grpc.StatusCode.INVALID_ARGUMENT, "No signature was found with the name: nope"),
        (prediction.Classify, classification_pb2.ClassificationRequest(model_spec=spec("classify_x")),
         grpc.StatusCode.INVALID_ARGUMENT, "Input is empty."),
        (prediction.Regress, regression_pb2.RegressionRequest(model_spec=spec("multi"), input=examples),
         grpc.StatusCode.INVALID_ARGUMENT, "Expected one input Tensor."),
        (prediction.MultiInference, inference_pb2.MultiInferenceRequest(input=examples),
         grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
        (prediction.MultiInference, inference_pb2.MultiInferenceRequest(
            tasks=[task("classify_x"), task("regress_x", name="other")], input=examples),
         grpc.StatusCode.INVALID_ARGUMENT, "All ModelSpecs in a MultiInferenceRequest must access the same model name."),
        (prediction.MultiInference, inference_pb2.MultiInferenceRequest(
            tasks=[task("classify_x"), task("classify_x")], input=examples),
         grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: classify_x"),
        (prediction.MultiInference, inference_pb2.MultiInferenceRequest(tasks=[task("nope")], input=examples),
         grpc.StatusCode.INVALID_ARGUMENT, "Requested signature not found in model graph: nope"),
        (prediction.MultiInference, inference_pb2.MultiInferenceRequest(
            tasks=[task("classify_x", "tensorflow/serving/predict")], input=examples),
         grpc.StatusCode.UNIMPLEMENTED, "Unsupported signature method_name: tensorflow/serving/predict"),
    ]
    for method, request, code, message in cases:
        assert _grpc_error(lambda: method(request, timeout=30)) == (code, message)
    response = prediction.MultiInference(inference_pb2.MultiInferenceRequest(
        tasks=[task("classify_x"), task("regress_x", "tensorflow/serving/regress")], input=examples), timeout=30)
    assert response.results[1].regression_result.regressions[0].value == pytest.approx(2.5)
