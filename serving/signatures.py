"""The exported model's signatures, in the shapes TF Serving's Predict, Classify and Regress APIs accept.

* `serving_default`: serialized raw `tf.Example`s (`examples`) → every output's score.
* `classify_<output>` for every probability (binary tasks and ESMM's pCTCVR):
  `inputs` (serialized `tf.Example`s) → `scores` [batch, 2] = [1 - p, p] and
  `classes` [batch, 2] = ["0", "1"], the layout of TensorFlow's binary
  classification heads, so Classify results read like any other classifier's.
* `regress_<output>` for every regression task: `inputs` → `outputs` [batch].
* `predict_features`: one named tensor per raw feature column, for JSON clients
  that would rather not build `tf.Example`s. Lists (`string_list` columns) are
  one string joined by the column's separator, as in the raw logs, because
  TF Serving's JSON tensors must be rectangular.

TF Serving validates Classify and Regress signatures by their structure (one
`inputs` string tensor; `scores`/`classes`, or `outputs`). It checks the
SignatureDef's `method_name` only with `--enable_signature_method_name_check`,
which TF2 cannot satisfy through `tf.saved_model.save` (every TF2 signature is
written as `tensorflow/serving/predict`). `write_method_names` therefore sets
the method names in the staged `saved_model.pb`, so the export works with and
without that flag.
"""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.saved_model import fingerprinting_utils

from features.config import Config

DEFAULT_SIGNATURE = "serving_default"
FEATURES_SIGNATURE = "predict_features"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
RAW_DTYPES = {"string": tf.string, "int": tf.int64, "float": tf.float32, "string_list": tf.string}


def output_type(config: Config, output: str) -> str:
    """`binary` for probabilities (every binary task, and pCTCVR), `regression` otherwise."""
    if output in [task.name for task in config.tasks]:
        return config.task(output).type
    return "binary"  # ESMM's pCTCVR: a product of probabilities


def task_signature_name(config: Config, output: str) -> str:
    prefix = "classify" if output_type(config, output) == "binary" else "regress"
    return f"{prefix}_{output}"


def signature_methods(config: Config) -> dict[str, str]:
    """Every signature's name → the method name TF Serving expects for it."""
    methods = {DEFAULT_SIGNATURE: PREDICT_METHOD, FEATURES_SIGNATURE: PREDICT_METHOD}
    for output in config.output_names:
        binary = output_type(config, output) == "binary"
        methods[task_signature_name(config, output)] = CLASSIFY_METHOD if binary else REGRESS_METHOD
    return methods


def _classify(score_examples, output: str):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs):
        probability = score_examples(inputs)[output]
        scores = tf.stack([1.0 - probability, probability], axis=1)
        classes = tf.tile(tf.constant([["0", "1"]]), [tf.shape(probability)[0], 1])
        return {"scores": scores, "classes": classes}

    return classify


def _regress(score_examples, output: str):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(inputs):
        return {"outputs": score_examples(inputs)[output]}

    return regress


def _features(score_features, config: Config):
    columns = config.feature_columns
    specs = [tf.TensorSpec([None], RAW_DTYPES[config.column(name).type], name=name) for name in columns]
    separators = {name: config.column(name).separator for name in columns
                  if config.column(name).type == "string_list"}

    @tf.function(input_signature=specs)
    def predict_features(*tensors):
        raw = {}
        for name, tensor in zip(columns, tensors):
            if name in separators:
                items = tf.strings.split(tensor, sep=separators[name])
                # "" is the empty list (as in the logs), not a list holding one empty string.
                raw[name] = tf.ragged.boolean_mask(items, tf.strings.length(items) > 0).to_sparse()
            else:
                raw[name] = tensor
        return score_features(raw)

    return predict_features


def build_signatures(module, config: Config) -> dict:
    """Signature name → concrete function, for `tf.saved_model.save(module, ..., signatures=...)`.

    `module` is a `serving.export.ServingModule`: its `serve_examples` scores
    serialized examples, its `score_raw_features` scores parsed raw features.
    """
    signatures = {DEFAULT_SIGNATURE: module.serve_examples.get_concrete_function(),
                  FEATURES_SIGNATURE: _features(module.score_raw_features, config).get_concrete_function()}
    for output in config.output_names:
        make = _classify if output_type(config, output) == "binary" else _regress
        signatures[task_signature_name(config, output)] = make(module.serve_examples, output).get_concrete_function()
    return signatures


def write_method_names(saved_model_dir: str | Path, methods: dict[str, str]):
    """Sets each SignatureDef's `method_name` in `saved_model.pb`, and rewrites the fingerprint to match.

    Only for a staged, not yet published directory: TF Serving must never see the file change.
    """
    path = Path(saved_model_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        for name, method in methods.items():
            if name not in meta_graph.signature_def:
                raise KeyError(f"{path}: no signature '{name}' to set method_name {method} on")
            meta_graph.signature_def[name].method_name = method
    path.write_bytes(saved_model.SerializeToString(deterministic=True))
    # fingerprint.pb holds a checksum of saved_model.pb; TF has no public API to rewrite it.
    fingerprinting_utils.write_fingerprint(str(saved_model_dir))
