"""TF Serving's gRPC PredictionService and ModelService, on `grpcio`'s server."""
from __future__ import annotations

import logging
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.standin import proto_api
from serving.standin.errors import ServingError
from serving.standin.registry import ModelRegistry

_LOG = logging.getLogger(__name__)
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # large candidate lists; TF Serving allows up to 2 GiB


def _answer(context, compute):
    """Runs `compute` and turns refusals into gRPC statuses with TF Serving's codes."""
    try:
        return compute()
    except ServingError as err:
        context.abort(err.code, err.message)
    except Exception as err:  # a bug must reach the client as INTERNAL with its message, not hang
        _LOG.exception("gRPC request failed")
        context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry: ModelRegistry):
        self._registry = registry

    def _on_model(self, handler, request, context):
        def compute():
            spec = proto_api.model_spec_of(request)
            return handler(proto_api.resolve(self._registry, spec), spec.name, request)

        return _answer(context, compute)

    def Predict(self, request, context):
        return self._on_model(proto_api.predict, request, context)

    def Classify(self, request, context):
        return self._on_model(proto_api.classify, request, context)

    def Regress(self, request, context):
        return self._on_model(proto_api.regress, request, context)

    def GetModelMetadata(self, request, context):
        def compute():
            proto_api.check_metadata_request(request)  # before the model is looked up, as TF Serving does
            return proto_api.metadata(proto_api.resolve(self._registry, request.model_spec), request.model_spec.name)

        return _answer(context, compute)

    def MultiInference(self, request, context):
        def compute():
            # multi_inference_helper.cc: the first task's model (no task: an empty spec, refused for its name).
            spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
            return proto_api.multi_inference(proto_api.resolve(self._registry, spec), spec.name, request)

        return _answer(context, compute)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry):
        self._registry = registry

    def GetModelStatus(self, request, context):
        def compute():
            spec = proto_api.model_spec_of(request)
            # get_model_status_impl.cc reads only a version number; with a label (or none) it lists every version.
            version = spec.version.value if spec.HasField("version") else None
            return proto_api.status(self._registry.statuses(spec.name, version))

        return _answer(context, compute)

    def HandleReloadConfigRequest(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "the local stand-in reloads versions by polling; restart it to change the model config")


def grpc_server(registry: ModelRegistry, host: str, port: int, workers: int = 8) -> tuple[grpc.Server, int]:
    """A started gRPC server and the port it bound (`port` 0 picks a free one)."""
    options = [("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
               ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
                         options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(registry), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(registry), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the gRPC server to {host}:{port}")
    server.start()
    return server, bound
