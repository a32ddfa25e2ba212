"""Client behaviour that needs no model: example encoding, retries on unavailable servers, clear errors."""
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from serving.clients import GrpcClient, RestClient, ServingClientError, encode_example
from serving.clients.examples import ExampleEncodingError, coerce_floats, rank


def test_examples_take_their_types_from_values_or_from_the_column_types():
    example = example_pb2.Example.FromString(encode_example(
        {"user_id": "u1", "hour": 7, "price": 2.5, "tags": ["a", "b"], "raw": b"\x00"}))
    feature = example.features.feature
    assert feature["user_id"].bytes_list.value == [b"u1"] and feature["raw"].bytes_list.value == [b"\x00"]
    assert feature["hour"].int64_list.value == [7] and feature["price"].float_list.value == [2.5]
    assert feature["tags"].bytes_list.value == [b"a", b"b"]
    typed = example_pb2.Example.FromString(encode_example({"price": 3, "user_id": 42}, {"price": "float",
                                                                                       "user_id": "string"}))
    assert typed.features.feature["price"].float_list.value == [3.0]
    assert typed.features.feature["user_id"].bytes_list.value == [b"42"]
    assert coerce_floats({"price": 3, "hour": 3}, {"price": "float", "hour": "int"}) == {"price": 3.0, "hour": 3}
    with pytest.raises(ExampleEncodingError, match="feature 'hour': expected integers"):
        encode_example({"hour": "noon"}, {"hour": "int"})
    with pytest.raises(ExampleEncodingError, match="feature 'mixed'"):
        encode_example({"mixed": ["a", 1]})


def test_rank_merges_the_context_into_each_candidate_and_sorts_best_first():
    seen = []

    def score(examples):
        seen.extend(example_pb2.Example.FromString(e) for e in examples)
        return {"ctr": [0.1, 0.7, 0.4]}

    ranked = rank(score, {"user_id": "u1", "position": 0}, [{"item_id": "a"}, {"item_id": "b", "position": 2},
                                                             {"item_id": "c"}], sort_by="ctr")
    assert [c.index for c in ranked] == [1, 2, 0] and ranked[0].scores == {"ctr": 0.7}
    assert [e.features.feature["user_id"].bytes_list.value[0] for e in seen] == [b"u1"] * 3
    assert [e.features.feature["position"].int64_list.value[0] for e in seen] == [0, 2, 0]  # candidate wins


class _FlakyHandler(BaseHTTPRequestHandler):
    """503 for the first `failures` requests, then a model status."""

    failures = 2
    requests = 0

    def do_GET(self):
        type(self).requests += 1
        unavailable = type(self).requests <= type(self).failures
        body = b'{"error": "warming up"}' if unavailable else \
            b'{"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}'
        self.send_response(503 if unavailable else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_http():
    _FlakyHandler.requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_rest_client_retries_503_then_reports_the_servers_error(flaky_http):
    with RestClient(flaky_http, "m", retries=3, backoff_seconds=0.01) as client:
        assert client.status()[0]["state"] == "AVAILABLE"
    assert _FlakyHandler.requests == 3
    _FlakyHandler.requests, _FlakyHandler.failures = 0, 10
    with RestClient(flaky_http, "m", retries=1, backoff_seconds=0.01) as client:
        with pytest.raises(ServingClientError, match="503: warming up") as refused:
            client.status()
    assert refused.value.status == 503 and _FlakyHandler.requests == 2
    _FlakyHandler.failures = 2


def test_rest_client_names_an_unreachable_server():
    with RestClient("http://127.0.0.1:9", "m", retries=0, timeout=2) as client:
        with pytest.raises(ServingClientError, match="127.0.0.1:9.*unreachable"):
            client.status()


class _FlakyModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, failures: int):
        self.failures, self.calls = failures, 0

    def GetModelStatus(self, request, context):
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "loading")
        return get_model_status_pb2.GetModelStatusResponse(
            model_version_status=[get_model_status_pb2.ModelVersionStatus(version=1, state=30)])


@pytest.mark.parametrize("failures, retries, succeeds", [(2, 3, True), (3, 1, False)])
def test_grpc_client_retries_unavailable_with_grpcs_retry_policy(failures, retries, succeeds):
    service = _FlakyModelService(failures)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with GrpcClient(f"127.0.0.1:{port}", "m", retries=retries, backoff_seconds=0.01, timeout=10) as client:
            if succeeds:
                assert client.status().model_version_status[0].version == 1
                assert service.calls == failures + 1
            else:
                with pytest.raises(ServingClientError, match="UNAVAILABLE: loading"):
                    client.status()
                assert service.calls == retries + 1
    finally:
        server.stop(0)
