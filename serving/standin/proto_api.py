"""TF Serving's request and response protos on a `Servable`: what gRPC serves and warm-up replays."""
from __future__ import annotations

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, input_pb2, model_pb2, predict_pb2, prediction_log_pb2,
                                     regression_pb2)

from serving.standin.errors import ServingError, invalid_argument
from serving.standin.registry import ModelRegistry, VersionStatus
from serving.standin.servable import DEFAULT_SIGNATURE, Servable

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def resolve(registry: ModelRegistry, spec: model_pb2.ModelSpec) -> Servable:
    choice = spec.WhichOneof("version_choice")
    return registry.resolve(spec.name, version=spec.version.value if choice == "version" else None,
                            label=spec.version_label if choice == "version_label" else None)


def _spec(servable: Servable, name: str, signature_name: str) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name or DEFAULT_SIGNATURE)
    spec.version.value = servable.version
    return spec


def examples_of(model_input: input_pb2.Input) -> list[bytes]:
    """Serialized examples of an `Input`; a context is merged into every example (its features lose)."""
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
    raise invalid_argument("Input is empty: set example_list or example_list_with_context")


def predict(servable: Servable, name: str, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    try:
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
    except (TypeError, ValueError) as err:
        raise invalid_argument(f"malformed TensorProto in inputs: {err}") from None
    outputs = servable.predict(request.model_spec.signature_name, inputs, list(request.output_filter))
    response = predict_pb2.PredictResponse(model_spec=_spec(servable, name, request.model_spec.signature_name))
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    return response


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
    """Every task's Classify or Regress on the same examples (TF Serving's checks: one model, no repeats)."""
    if not request.tasks:
        raise invalid_argument("MultiInferenceRequest has no tasks")
    if len({task.model_spec.name for task in request.tasks}) > 1:
        raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
    signatures = [task.model_spec.signature_name or DEFAULT_SIGNATURE for task in request.tasks]
    repeated = sorted({s for s in signatures if signatures.count(s) > 1})
    if repeated:
        raise invalid_argument(f"Duplicate evaluation of signature: {repeated[0]}")
    examples = examples_of(request.input)
    response = inference_pb2.MultiInferenceResponse()
    for task, signature in zip(request.tasks, signatures):
        result = response.results.add(model_spec=_spec(servable, name, signature))
        if task.method_name == CLASSIFY_METHOD:
            result.classification_result.CopyFrom(_classifications(*servable.classify(signature, examples)))
        elif task.method_name == REGRESS_METHOD:
            values = servable.regress(signature, examples)
            result.regression_result.regressions.extend(regression_pb2.Regression(value=float(v)) for v in values)
        else:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               f"Unsupported signature method_name: {task.method_name}")
    return response


def metadata(servable: Servable, name: str,
             request: get_model_metadata_pb2.GetModelMetadataRequest) -> get_model_metadata_pb2.GetModelMetadataResponse:
    fields = list(request.metadata_field)
    if fields != ["signature_def"]:
        raise invalid_argument(f"Metadata field {fields} is not supported; request metadata_field: [signature_def]")
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=_spec(servable, name, ""))
    response.model_spec.ClearField("signature_name")
    response.metadata["signature_def"].Pack(signature_map)
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

