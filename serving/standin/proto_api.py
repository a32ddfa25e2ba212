"""TF Serving's request and response protos on a `Servable`: what gRPC serves and warm-up replays."""
from __future__ import annotations

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, input_pb2, model_pb2, predict_pb2, prediction_log_pb2,
                                     regression_pb2)

from serving.standin.dtypes import PROTO_FIELDS
from serving.standin.errors import ServingError, invalid_argument
from serving.standin.registry import ModelRegistry, VersionStatus
from serving.standin.servable import DEFAULT_SIGNATURE, Servable

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
SIGNATURE_DEF_FIELD = "signature_def"  # get_model_metadata_impl.h: kSignatureDef


def model_spec_of(request) -> model_pb2.ModelSpec:
    """The request's ModelSpec, which TF Serving requires of every request (predict_impl.cc,
    classification_service.cc, regression_service.cc, get_model_metadata_impl.cc, get_model_status_impl.cc)."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    return request.model_spec


def resolve(registry: ModelRegistry, spec: model_pb2.ModelSpec) -> Servable:
    """The servable a ModelSpec names (server_core.cc: ServableRequestFromModelSpec)."""
    if not spec.name:
        raise invalid_argument("ModelSpec has no name specified.")
    choice = spec.WhichOneof("version_choice")
    return registry.resolve(spec.name, version=spec.version.value if choice == "version" else None,
                            label=spec.version_label if choice == "version_label" else None)


def _spec(servable: Servable, name: str, signature_name: str) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name or DEFAULT_SIGNATURE)
    spec.version.value = servable.version
    return spec


def examples_of(model_input: input_pb2.Input) -> list[bytes]:
    """Serialized examples of an `Input`; a context is merged into every example (its features lose, as
    they do when TF Serving concatenates the serialized context and example)."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        return [example.SerializeToString() for example in model_input.example_list.examples]
    if kind == "example_list_with_context":
        with_context = model_input.example_list_with_context
        merged = []
        for example in with_context.examples:
            combined = tf.train.Example()
            combined.CopyFrom(with_context.context)
            for name, feature in example.features.feature.items():
                combined.features.feature[name].CopyFrom(feature)
            merged.append(combined.SerializeToString())
        return merged
    return []  # no kind set: refused as "Input is empty." after the signature checks, as util.cc does


def _keys(keys) -> str:
    return ",".join(sorted(keys))


def _check_input_count(signature: meta_graph_pb2.SignatureDef, inputs) -> None:
    """predict_util.cc: VerifyRequestInputsSize."""
    sent, expected = set(inputs), set(signature.inputs)
    if len(sent) > len(expected) or (len(sent) < len(expected) and not signature.defaults):
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} len({{{_keys(sent)}}}) != "
            f"len({{{_keys(expected)}}}). Sent extra: {{{_keys(sent - expected)}}}. "
            f"Missing but required: {{{_keys(expected - sent)}}}.")


def _input_values(signature: meta_graph_pb2.SignatureDef, inputs) -> dict[str, np.ndarray]:
    """TensorFlow's saved_model::GetInputValues (cc/saved_model/util.cc), which predict_util.cc calls."""
    arrays = {}
    for alias in sorted(signature.inputs):
        if alias in inputs:
            proto = inputs[alias]
        elif alias in signature.defaults:
            proto = signature.defaults[alias]
        else:
            raise invalid_argument(
                f"Signature input alias: {alias}(feed name: {signature.inputs[alias].name}) not found in request "
                f"and no default value provided. Inputs expected to be in the request {{{_keys(inputs)}}}, "
                f"or default input alias set: {_keys(signature.defaults)}")
        try:
            arrays[alias] = tf.make_ndarray(proto)
        except (TypeError, ValueError):
            raise invalid_argument(f"tensor parsing error: {alias}") from None
    if inputs and set(inputs) - set(arrays):
        raise invalid_argument(f"Inputs contains invalid name. Used request inputs: "
                               f"{_keys(set(inputs) & set(arrays))}, request input: {_keys(inputs)}")
    return arrays


def _output_aliases(signature: meta_graph_pb2.SignatureDef, output_filter) -> list[str]:
    """predict_util.cc: PreProcessPrediction's output filter checks; no filter means every output."""
    seen: list[str] = []
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid_argument(f"output tensor alias not found in signature: {alias} Outputs expected to be "
                                   f"in the set {{{_keys(signature.outputs)}}}.")
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen or list(signature.outputs)


def predict(servable: Servable, name: str, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """predict_util.cc: RunPredict, the checks in its order and with its messages."""
    signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_def(signature_name)
    if signature is None:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"Serving signature key \"{signature_name}\" not found.")
    _check_input_count(signature, request.inputs)
    arrays = _input_values(signature, request.inputs)
    aliases = _output_aliases(signature, request.output_filter)
    outputs = servable.run(signature_name, arrays)
    response = predict_pb2.PredictResponse(model_spec=_spec(servable, name, signature_name))
    for alias in aliases:
        response.outputs[alias].CopyFrom(as_proto_field(outputs[alias]))
    return response


def as_proto_field(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A TensorProto with the values in its typed repeated field, as predict_util.cc writes outputs
    (PredictResponseTensorSerializationOption::kAsProtoField)."""
    dtype = tf.as_dtype(array.dtype) if array.dtype.kind not in "SUO" else tf.string
    field = PROTO_FIELDS.get(dtype.as_datatype_enum)  # TF Serving's Predict answers with it, not tensor_content
    if field is None:  # half, complex, ...: TensorFlow's own encoding
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum,
                                   tensor_shape=tf.TensorShape(array.shape).as_proto())
    values = array.ravel().tolist()
    if dtype == tf.string:
        values = [v if isinstance(v, bytes) else str(v).encode() for v in values]
    getattr(proto, field).extend(values)
    return proto


def _classifications(classes, scores) -> classification_pb2.ClassificationResult:
    result = classification_pb2.ClassificationResult()
    rows = len(classes if classes is not None else scores)
    for row in range(rows):
        entry = result.classifications.add()
        for k in range((classes if classes is not None else scores).shape[1]):
            entry.classes.add(label=classes[row, k].decode() if classes is not None else "",
                              score=float(scores[row, k]) if scores is not None else 0.0)
    return result


def classify(servable: Servable, name: str,
             request: classification_pb2.ClassificationRequest) -> classification_pb2.ClassificationResponse:
    classes, scores = servable.classify(request.model_spec.signature_name, examples_of(request.input))
    return classification_pb2.ClassificationResponse(
        model_spec=_spec(servable, name, request.model_spec.signature_name), result=_classifications(classes, scores))


def regress(servable: Servable, name: str,
            request: regression_pb2.RegressionRequest) -> regression_pb2.RegressionResponse:
    values = servable.regress(request.model_spec.signature_name, examples_of(request.input))
    result = regression_pb2.RegressionResult(regressions=[regression_pb2.Regression(value=float(v)) for v in values])
    return regression_pb2.RegressionResponse(model_spec=_spec(servable, name, request.model_spec.signature_name),
                                             result=result)


def multi_inference(servable: Servable, name: str,
                    request: inference_pb2.MultiInferenceRequest) -> inference_pb2.MultiInferenceResponse:
    """Every task's Classify or Regress on the same examples, with the checks of multi_inference.cc in its order."""
    model_name = ""
    signatures: list[str] = []
    for task in request.tasks:
        if not task.model_spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if model_name and task.model_spec.name != model_name:
            raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        model_name = task.model_spec.name
        signature = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature in signatures:
            raise invalid_argument(f"Duplicate evaluation of signature: {signature}")
        signatures.append(signature)
        if servable.signature_def(signature) is None:
            raise invalid_argument(f"Requested signature not found in model graph: {signature}")
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}")
    examples = examples_of(request.input)
    response = inference_pb2.MultiInferenceResponse()
    for task, signature in zip(request.tasks, signatures):
        result = response.results.add(model_spec=_spec(servable, name, signature))
        if task.method_name == CLASSIFY_METHOD:
            result.classification_result.CopyFrom(_classifications(*servable.classify(signature, examples)))
        else:
            values = servable.regress(signature, examples)
            result.regression_result.regressions.extend(regression_pb2.Regression(value=float(v)) for v in values)
    return response


def check_metadata_request(request: get_model_metadata_pb2.GetModelMetadataRequest) -> None:
    """get_model_metadata_impl.cc: a ModelSpec, and signature_def as the only (and at least one) field."""
    model_spec_of(request)
    if not request.metadata_field:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(f"Metadata field {field} is not supported")


def metadata_model_spec(servable: Servable, name: str) -> model_pb2.ModelSpec:
    """get_model_metadata_impl.cc: the response's model spec names the model and version, no signature."""
    spec = model_pb2.ModelSpec(name=name)
    spec.version.value = servable.version
    return spec


def metadata(servable: Servable, name: str) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """get_model_metadata_impl.cc: SavedModelGetSignatureDef, for a request `check_metadata_request` passed."""
    response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=metadata_model_spec(servable, name))
    response.metadata[SIGNATURE_DEF_FIELD].CopyFrom(servable.packed_signature_def_map)
    return response


def status(statuses: dict[int, VersionStatus]) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, version_status in sorted(statuses.items()):
        entry = response.model_version_status.add(version=version, state=version_status.state)
        entry.status.error_code = 2 if version_status.error else 0  # UNKNOWN, as TF Serving reports load failures
        entry.status.error_message = version_status.error
    return response


def replay(servable: Servable, log: prediction_log_pb2.PredictionLog):
    """Runs one warm-up record against `servable`, as TF Serving does before marking it AVAILABLE."""
    kind = log.WhichOneof("log_type")
    handlers = {"predict_log": (predict, lambda: log.predict_log.request),
                "classify_log": (classify, lambda: log.classify_log.request),
                "regress_log": (regress, lambda: log.regress_log.request),
                "multi_inference_log": (multi_inference, lambda: log.multi_inference_log.request)}
    if kind not in handlers:
        raise ValueError(f"unsupported warm-up record type: {kind}")
    handler, request = handlers[kind]
    return handler(servable, "", request())


def warm_up(servable: Servable) -> int:
    """Replays the version's `assets.extra/tf_serving_warmup_requests`, if any; returns how many."""
    if not servable.warmup_path.is_file():
        return 0
    records = 0
    for record in tf.data.TFRecordDataset(str(servable.warmup_path)):
        replay(servable, prediction_log_pb2.PredictionLog.FromString(record.numpy()))
        records += 1
    return records

