"""A client for TF Serving's gRPC API (port 8500), on the stubs in `tensorflow-serving-api`.

Retries on UNAVAILABLE are gRPC's own (a `retryPolicy` in the channel's
service config, with exponential backoff), so they also cover a server that
is restarting; every call has a deadline.

    client = GrpcClient("localhost:8500", "synthetic_funnel")
    client.multi_inference(examples, ["classify_ctr", "regress_dwell"])
"""
from __future__ import annotations

import json
from typing import Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, input_pb2, model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving.clients.errors import ServingClientError
from serving.clients.examples import RankedCandidate, rank

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def _channel_options(retries: int, backoff_seconds: float) -> list[tuple]:
    retry_policy = {"maxAttempts": min(max(retries + 1, 2), 5),  # gRPC's bounds
                    "initialBackoff": f"{backoff_seconds}s", "maxBackoff": f"{max(backoff_seconds * 8, 1.0)}s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
    service_config = {"methodConfig": [{
        "name": [{"service": "tensorflow.serving.PredictionService"}, {"service": "tensorflow.serving.ModelService"}],
        "retryPolicy": retry_policy}]}
    return [("grpc.enable_retries", 1 if retries else 0), ("grpc.service_config", json.dumps(service_config)),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES)]


def _examples_input(examples: Sequence[bytes]) -> input_pb2.Input:
    return input_pb2.Input(example_list=input_pb2.ExampleList(
        examples=[example_pb2.Example.FromString(example) for example in examples]))


def _positive_score(classification: classification_pb2.Classifications) -> float:
    """The score of class "1" (our binary signatures' positive class), else of the last class."""
    by_label = {entry.label: entry.score for entry in classification.classes}
    return by_label.get("1", classification.classes[-1].score)


class GrpcClient:
    """One model on one TF Serving (or stand-in) gRPC endpoint; `version` or `label` pin a version."""

    def __init__(self, target: str, model_name: str, version: int | None = None, label: str | None = None,
                 timeout: float = 10.0, retries: int = 3, backoff_seconds: float = 0.1,
                 column_types: Mapping[str, str] | None = None):
        if version is not None and label is not None:
            raise ValueError("pin a version or a label, not both")
        self.target, self.model_name = target, model_name
        self.version, self.label = version, label
        self.timeout = timeout
        self.column_types = column_types
        self._channel = grpc.insecure_channel(target, options=_channel_options(retries, backoff_seconds))
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _spec(self, signature_name: str = "") -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self.model_name, signature_name=signature_name)
        if self.version is not None:
            spec.version.value = self.version
        elif self.label is not None:
            spec.version_label = self.label
        return spec

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise ServingClientError(err.code().name, err.details() or "", self.target) from err

    def status(self) -> get_model_status_pb2.GetModelStatusResponse:
        return self._call(self._models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(
            model_spec=self._spec()))

    def metadata(self) -> get_model_metadata_pb2.SignatureDefMap:
        response = self._call(self._predictions.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._spec(), metadata_field=["signature_def"]))
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return signature_map

    def predict(self, inputs: Mapping[str, np.ndarray], signature_name: str = "",
                output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
        request = predict_pb2.PredictRequest(model_spec=self._spec(signature_name), output_filter=list(output_filter))
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self._predictions.Predict, request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def score_examples(self, examples: Sequence[bytes], signature_name: str = "") -> dict[str, np.ndarray]:
        """Serialized tf.Examples through `serving_default`: output name → scores."""
        return self.predict({"examples": np.asarray(list(examples), dtype=object)}, signature_name)

    def classify(self, examples: Sequence[bytes], signature_name: str) -> classification_pb2.ClassificationResult:
        return self._call(self._predictions.Classify, classification_pb2.ClassificationRequest(
            model_spec=self._spec(signature_name), input=_examples_input(examples))).result

    def regress(self, examples: Sequence[bytes], signature_name: str) -> np.ndarray:
        result = self._call(self._predictions.Regress, regression_pb2.RegressionRequest(
            model_spec=self._spec(signature_name), input=_examples_input(examples))).result
        return np.array([regression.value for regression in result.regressions], dtype=np.float32)

    def multi_inference(self, examples: Sequence[bytes], signature_names: Sequence[str]) -> dict[str, np.ndarray]:
        """Every named Classify (`classify_*`) or Regress (`regress_*`) signature on the same examples, in one call.

        Returns signature name → per example, the positive class's score (classify) or the value (regress).
        """
        request = inference_pb2.MultiInferenceRequest(input=_examples_input(examples))
        for name in signature_names:
            method = CLASSIFY_METHOD if name.startswith("classify") else REGRESS_METHOD
            request.tasks.add(model_spec=self._spec(name), method_name=method)
        response = self._call(self._predictions.MultiInference, request)
        scores = {}
        for name, result in zip(signature_names, response.results):
            if result.HasField("classification_result"):
                scores[name] = np.array([_positive_score(row) for row in result.classification_result.classifications],
                                        dtype=np.float32)
            else:
                scores[name] = np.array([r.value for r in result.regression_result.regressions], dtype=np.float32)
        return scores

    def rank(self, context: Mapping, candidates: Sequence[Mapping], sort_by: str) -> list[RankedCandidate]:
        """Scores every candidate merged over `context` in one request; best `sort_by` score first."""
        return rank(self.score_examples, context, candidates, sort_by, self.column_types)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
