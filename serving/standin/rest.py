"""TF Serving's REST API (`/v1/models/...`) on aiohttp, answering as TF Serving's own handler does.

Read from TF Serving's source: the URL grammar is `http_rest_api_util.cc`
(two case-insensitive patterns, one for POST and one for GET, matched against
the raw path with its query string, which is what `net_http` hands over);
the order of checks and the messages are `http_rest_api_handler.cc`; the
status codes are `http_server.cc` (ToHTTPStatusCode, in `errors.py`); paths
outside `/v1/` get libevent's own 404 page. Bodies are read under the
connection guard's time limit, and model calls run on a thread pool so a
slow request never blocks the event loop.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import unquote

import grpc
from aiohttp import web
from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2, model_pb2, predict_pb2, regression_pb2

from serving.standin import proto_api, rest_json
from serving.standin.json_document import parse_body
from serving.standin.connections import Connection, ConnectionGuard
from serving.standin.dtypes import INT64_MAX
from serving.standin.errors import ServingError, invalid_argument
from serving.standin.registry import ModelRegistry
from serving.standin.servable import DEFAULT_SIGNATURE

_LOG = logging.getLogger(__name__)
# http_rest_api_handler.h: kPathRegex, the paths TF Serving's REST handler takes at all.
_HANDLED_PATH = re.compile(r"(?i)/v1/.*")
# http_rest_api_util.cc: kPredictionApiGegex (POST) and kModelStatusApiRegex (GET).
_POST_URL = re.compile(r"(?i)/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
                       r":(classify|regress|predict)")
_GET_URL = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
                      r"(?:/(metadata))?")
# libevent's evhttp_send_error page (http.c: ERR_FORMAT), which TF Serving sends for paths it does not handle.
_NOT_FOUND_PAGE = ("<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n"
                   "</BODY></HTML>\n")


@dataclass(frozen=True)
class Route:
    """What a request URL asks for (http_rest_api_util.cc: ParseModelInfo)."""

    model_name: str
    version: int | None
    label: str | None
    action: str  # "predict", "classify", "regress" (POST) or the GET subresource ("metadata" or "")


def parse_route(http_method: str, path: str) -> Route | None:
    """The route of a request, None where TF Serving answers `Malformed request`."""
    pattern = {"POST": _POST_URL, "GET": _GET_URL}.get(http_method)
    match = pattern.fullmatch(path) if pattern else None
    if not match:
        return None
    name, version_text, label, action = match.groups()
    version = None
    if version_text:
        version = int(version_text)
        if version > INT64_MAX:  # absl::SimpleAtoi into int64
            raise invalid_argument(f"Failed to convert version: {version_text} to numeric.")
    # The model name and label are percent-decoded (curl_easy_unescape); the version never is.
    return Route(unquote(name or "", errors="replace"), version,
                 unquote(label, errors="replace") if label else None, action or "")


def _json_response(payload: dict, status: int = 200) -> web.Response:
    # http_rest_api_util.cc: AddHeaders sets exactly "application/json" (no charset parameter).
    return web.Response(body=json.dumps(payload).encode(), status=status,
                        headers={"Content-Type": "application/json"})


def _proto_json(message) -> dict:
    """A proto as TF Serving's REST API prints it (http_rest_api_util.cc: ToJsonString): field names as in the
    .proto, and fields without presence printed even when empty."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _error(err: ServingError) -> web.Response:
    """json_tensor.cc: MakeJsonFromStatus, with http_server.cc's status code."""
    return _json_response({"error": err.message}, status=err.http_status)


class RestApi:
    """Routes `/v1/...` requests to the registry's servables."""

    def __init__(self, registry: ModelRegistry, pool: ThreadPoolExecutor, guard: ConnectionGuard):
        self._registry = registry
        self._pool = pool
        self._guard = guard

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answers, and writes the answer here rather than leaving it to aiohttp, so the connection counts as
        waiting for its next request only once the response has been handed to the transport (a client still
        reading a long response is neither displaced nor held to the idle limit from before the write)."""
        connection = self._guard.connection(request.transport)
        response = await self._response(request, connection)
        if connection:
            connection.writing()
        try:
            await response.prepare(request)
            await response.write_eof()  # waits while the transport's buffer is full (a slow reader)
        except ConnectionError:  # the client left, or the guard cut a reader that did not drain in time
            _LOG.info("REST connection closed while writing a response (%s)", request.path)
            return response
        if connection:
            connection.answered()
        return response

    async def _response(self, request: web.Request, connection: Connection | None) -> web.StreamResponse:
        path = request.raw_path  # undecoded, with the query string, as net_http's uri_path()
        if not _HANDLED_PATH.fullmatch(path):
            return web.Response(text=_NOT_FOUND_PAGE, status=404, content_type="text/html")
        try:
            if connection:
                connection.reading_body()
            body = await request.read()
            if connection:
                connection.busy()
            if request.method == "OPTIONS":  # http_server.cc: a CORS preflight needs an Origin, and gets no body
                origin = request.headers.get("Origin", "")
                return web.Response(status=200 if re.search(r"https?://", origin) else 400)
            payload = await asyncio.get_running_loop().run_in_executor(
                self._pool, self.answer, request.method, path, body)
            return _json_response(payload)
        except web.HTTPRequestEntityTooLarge:  # a 400 like any body the parser cannot take
            return _error(invalid_argument(f"JSON Parse error: the request body exceeds the stand-in's limit of "
                                           f"{request.client_max_size} bytes"))
        except ServingError as err:
            return _error(err)
        except ConnectionError:  # the guard closed a connection whose body did not arrive in time
            _LOG.info("REST connection closed while reading a request body (%s)", request.path)
            return web.Response(status=408)  # never sent: the connection is gone
        except Exception as err:  # a bug must reach the client as a 500 with its message
            _LOG.exception("REST request failed")
            return _error(ServingError(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}"))

    def answer(self, http_method: str, path: str, body: bytes) -> dict:
        """http_rest_api_handler.cc: ProcessRequest, after the body was read."""
        route = parse_route(http_method, path)
        if route is None or (http_method == "POST" and route.action not in ("predict", "classify", "regress")):
            raise invalid_argument(f"Malformed request: {http_method} {path}")
        if http_method == "GET":
            if not route.model_name:
                raise invalid_argument("Missing model name in request.")
            return self._metadata(route) if route.action == "metadata" else self._status(route)
        document = parse_body(body)
        signature_name = rest_json.signature_name(document)
        if route.action == "predict":
            return self._predict(route, document, signature_name)
        model_input = rest_json.examples_input(document)
        servable = self._registry.resolve(route.model_name, route.version, route.label)
        spec = _model_spec(route, signature_name)
        if route.action == "classify":
            request = classification_pb2.ClassificationRequest(model_spec=spec, input=model_input)
            return rest_json.classification_json(proto_api.classify(servable, route.model_name, request).result)
        request = regression_pb2.RegressionRequest(model_spec=spec, input=model_input)
        return rest_json.regression_json(proto_api.regress(servable, route.model_name, request).result)

    def _predict(self, route: Route, document: dict, signature_name: str) -> dict:
        servable = self._registry.resolve(route.model_name, route.version, route.label)
        signature = servable.signature_def(signature_name)
        if signature is None:  # http_rest_api_handler.cc: GetInfoMap
            raise invalid_argument(f"Serving signature name: \"{signature_name or DEFAULT_SIGNATURE}\" "
                                   "not found in signature def")
        tensors, row_format = rest_json.predict_tensors(document, dict(signature.inputs), signature_name)
        request = predict_pb2.PredictRequest(model_spec=_model_spec(route, signature_name))
        for alias, tensor in tensors.items():
            request.inputs[alias].CopyFrom(tensor)
        response = proto_api.predict(servable, route.model_name, request)
        return rest_json.predict_json(dict(response.outputs), row_format)

    def _status(self, route: Route) -> dict:
        # get_model_status_impl.cc reads only a version number: with a label it lists every version.
        return _proto_json(proto_api.status(self._registry.statuses(route.model_name, route.version)))

    def _metadata(self, route: Route) -> dict:
        """http_rest_api_util.cc: ToJsonString(GetModelMetadataResponse), with the SignatureDefMap unpacked."""
        servable = self._registry.resolve(route.model_name, route.version, route.label)
        return {"model_spec": _proto_json(proto_api.metadata_model_spec(servable, route.model_name)),
                "metadata": {proto_api.SIGNATURE_DEF_FIELD: _proto_json(servable.signature_def_map)}}


def _model_spec(route: Route, signature_name: str) -> model_pb2.ModelSpec:
    """http_rest_api_util.cc: FillModelSpecWithNameVersionAndLabel."""
    spec = model_pb2.ModelSpec(name=route.model_name, signature_name=signature_name)
    if route.version is not None:
        spec.version.value = route.version
    if route.label is not None:
        spec.version_label = route.label
    return spec


def rest_app(registry: ModelRegistry, pool: ThreadPoolExecutor, guard: ConnectionGuard) -> web.Application:
    app = web.Application(client_max_size=guard.limits.max_body_bytes)
    app.router.add_route("*", "/{path:.*}", RestApi(registry, pool, guard).handle)
    return app
