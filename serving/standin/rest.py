"""TF Serving's REST API (`/v1/models/...`) on aiohttp.

aiohttp because it is a maintained asyncio HTTP server that was already in
the dependency tree (Beam's GCP extras pull it in); model calls run on a
thread pool so slow requests never block the event loop, and the same
process also hosts the gRPC server. URL grammar, bodies and status codes
follow TF Serving's `http_rest_api_handler.cc`.
"""
from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor

import grpc
from aiohttp import web
from google.protobuf import json_format

from serving.standin import proto_api, rest_json
from serving.standin.errors import ServingError, invalid_argument
from serving.standin.registry import ModelRegistry

_LOG = logging.getLogger(__name__)
_MAX_BODY_BYTES = 256 * 1024 * 1024
# /v1/models/<name>[/versions/<n> | /labels/<label>][/metadata | :predict | :classify | :regress]
_MODEL_URL = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                        r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                        r"(?:(?P<metadata>/metadata)|:(?P<method>predict|classify|regress))?$")


def _error(err: ServingError) -> web.Response:
    return web.json_response({"error": err.message}, status=err.http_status)


class RestApi:
    """Routes `/v1/models/...` requests to the registry's servables."""

    def __init__(self, registry: ModelRegistry, pool: ThreadPoolExecutor):
        self._registry = registry
        self._pool = pool

    async def handle(self, request: web.Request) -> web.Response:
        match = _MODEL_URL.match(request.path)
        try:
            if not match:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Malformed request: {request.method} {request.path}")
            body = await request.read() if request.method == "POST" else b""
            payload = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._answer, request.method, match, body)
            return web.json_response(payload)
        except ServingError as err:
            return _error(err)
        except Exception as err:  # a bug must reach the client as a 500 with its message
            _LOG.exception("REST request failed")
            return _error(ServingError(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}"))

    def _answer(self, http_method: str, match: re.Match, body: bytes) -> dict:
        name, method = match["name"], match["method"]
        version = int(match["version"]) if match["version"] else None
        expected = "POST" if method else "GET"
        if http_method != expected:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Malformed request: {http_method} {match.string} (use {expected})")
        if not method and not match["metadata"]:
            return self._status(name, version, match["label"])
        servable = self._registry.resolve(name, version=version, label=match["label"])
        if match["metadata"]:
            response = proto_api.metadata(servable, name, proto_api.get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"]))
            return json_format.MessageToDict(response, preserving_proto_field_name=True)
        request = rest_json.parse_body(body)
        signature_name = request.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise invalid_argument(f"'signature_name' must be a string, got {signature_name!r}")
        if method == "predict":
            inputs, row_form = rest_json.predict_inputs(request, list(servable.input_specs(signature_name)))
            return rest_json.predict_response(servable.predict(signature_name, inputs), row_form)
        examples = rest_json.examples_of(request)
        if method == "classify":
            return rest_json.classify_response(*servable.classify(signature_name, examples))
        return {"results": servable.regress(signature_name, examples).tolist()}

    def _status(self, name: str, version: int | None, label: str | None) -> dict:
        if label:
            version = self._registry.resolve(name, label=label).version
        response = proto_api.status(self._registry.statuses(name, version))
        return json_format.MessageToDict(response, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)


def rest_app(registry: ModelRegistry, pool: ThreadPoolExecutor) -> web.Application:
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app.router.add_route("*", "/{path:.*}", RestApi(registry, pool).handle)
    return app
