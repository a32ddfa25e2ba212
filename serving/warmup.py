"""TF Serving warm-up records: `assets.extra/tf_serving_warmup_requests`.

TF Serving replays these requests when it loads a version and before it marks
the version AVAILABLE, so the first real request does not pay for graph
initialisation, lazily built kernels and the transform's table loading. The file
is a TFRecord of `PredictionLog`s (at most 1000 are read); we write one request
per signature kind that clients use: a Predict on `serving_default`, a
MultiInference covering every task's Classify/Regress signature, and a Predict
on `predict_features`.
"""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import inference_pb2, input_pb2, model_pb2, predict_pb2, prediction_log_pb2

from features.config import Config
from serving import signatures

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def _model_spec(config: Config, signature_name: str) -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(name=config.export.model_name, signature_name=signature_name)


def _examples_input(examples: list[bytes]) -> input_pb2.Input:
    return input_pb2.Input(example_list=input_pb2.ExampleList(
        examples=[tf.train.Example.FromString(example) for example in examples]))


def _features_request(config: Config, examples: list[bytes]) -> predict_pb2.PredictRequest:
    """The same rows as named raw feature tensors, lists joined by their separator."""
    parsed = [tf.train.Example.FromString(example).features.feature for example in examples]
    request = predict_pb2.PredictRequest(model_spec=_model_spec(config, signatures.FEATURES_SIGNATURE))
    for name in config.feature_columns:
        column = config.column(name)
        values = [_feature_value(column, row.get(name)) for row in parsed]
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=signatures.RAW_DTYPES[column.type]))
    return request


def _feature_value(column, feature):
    """One raw value from an example's feature; the column's default where the example lacks it."""
    if feature is None:
        return column.default if column.type != "string_list" else (column.default or "")
    if column.type == "int":
        return feature.int64_list.value[0]
    if column.type == "float":
        return feature.float_list.value[0]
    values = feature.bytes_list.value
    return column.separator.encode().join(values) if column.type == "string_list" else values[0]


def warmup_logs(config: Config, examples: list[bytes]) -> list[prediction_log_pb2.PredictionLog]:
    predict = predict_pb2.PredictRequest(model_spec=_model_spec(config, signatures.DEFAULT_SIGNATURE))
    predict.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
    multi = inference_pb2.MultiInferenceRequest(input=_examples_input(examples))
    for output in config.output_names:
        name = signatures.task_signature_name(config, output)
        multi.tasks.add(model_spec=_model_spec(config, name), method_name=signatures.signature_methods(config)[name])
    return [
        prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=predict)),
        prediction_log_pb2.PredictionLog(multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=multi)),
        prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=_features_request(config, examples))),
    ]


def write_warmup(version_dir: str | Path, config: Config, examples: list[bytes]) -> Path:
    """Writes the warm-up file into a (staged) version directory and returns its path."""
    if not examples:
        raise ValueError("warm-up needs at least one sample example")
    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in warmup_logs(config, examples):
            writer.write(log.SerializeToString())
    return path


def read_warmup(version_dir: str | Path) -> list[prediction_log_pb2.PredictionLog]:
    path = Path(version_dir) / WARMUP_FILE
    return [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(str(path))]

