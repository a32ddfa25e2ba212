"""One loaded model version and TF Serving's Predict, Classify and Regress semantics on it.

The checks and their messages follow TF Serving (`predict_util.cc`,
`classifier.cc`, `regressor.cc`) so a client that works against the stand-in
works against the real server, errors included.
"""
from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from serving.standin.errors import ServingError, invalid_argument
from serving.warmup import WARMUP_FILE

DEFAULT_SIGNATURE = "serving_default"


class Servable:
    """A SavedModel version: its signature defs (as written, method names included) and callables."""

    def __init__(self, version_dir: str | Path, version: int, max_batch_size: int):
        self.version_dir = Path(version_dir)
        self.version = version
        self.max_batch_size = max_batch_size
        saved_model = saved_model_pb2.SavedModel.FromString((self.version_dir / "saved_model.pb").read_bytes())
        self.signature_defs: dict[str, meta_graph_pb2.SignatureDef] = dict(saved_model.meta_graphs[0].signature_def)
        self._saved_model = tf.saved_model.load(str(self.version_dir))  # keeps the signatures' variables alive
        self._functions = dict(self._saved_model.signatures)

    @property
    def warmup_path(self) -> Path:
        return self.version_dir / WARMUP_FILE

    def input_specs(self, signature_name: str) -> dict[str, tf.TensorSpec]:
        return dict(self._function(signature_name).structured_input_signature[1])

    def _function(self, signature_name: str):
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self._functions:
            raise invalid_argument(f"Serving signature name: \"{name}\" not found in signature def; "
                                   f"available: {', '.join(sorted(self._functions))}")
        return self._functions[name]

    def _check_batch(self, size: int):
        if size > self.max_batch_size:
            raise invalid_argument(f"Task size {size} is larger than maximum input batch size "
                                   f"{self.max_batch_size}; split the request")

    def _run(self, signature_name: str, inputs: dict[str, tf.Tensor]) -> dict[str, np.ndarray]:
        try:
            outputs = self._function(signature_name)(**inputs)
        except tf.errors.OpError as err:  # e.g. a required feature missing from an example
            raise ServingError(_grpc_code(err), _essential(err.message)) from None
        except UnicodeDecodeError:  # TensorFlow's message quoted the undecodable input itself
            raise invalid_argument(f"signature '{signature_name or DEFAULT_SIGNATURE}' could not parse its input "
                                   "(e.g. bytes that are not a serialized tf.Example)") from None
        return {name: value.numpy() for name, value in outputs.items()}

    def predict(self, signature_name: str, inputs: dict[str, np.ndarray],
                output_filter: list[str] | None = None) -> dict[str, np.ndarray]:
        specs = self.input_specs(signature_name)
        sent, expected = set(inputs), set(specs)
        if sent != expected:
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} len({sorted(sent)}) != "
                f"len({sorted(expected)}). Sent extra: {sorted(sent - expected)}. "
                f"Missing but required: {sorted(expected - sent)}.")
        tensors = {name: _as_tensor(name, value, specs[name]) for name, value in inputs.items()}
        sizes = {int(tensor.shape[0]) for tensor in tensors.values() if tensor.shape.rank}
        if len(sizes) > 1:
            raise invalid_argument(f"inputs have different batch sizes: {sorted(sizes)}")
        self._check_batch(max(sizes, default=1))
        outputs = self._run(signature_name, tensors)
        if output_filter:
            unknown = sorted(set(output_filter) - set(outputs))
            if unknown:
                raise invalid_argument(f"output tensor alias not found in signature: {unknown}; "
                                       f"outputs: {sorted(outputs)}")
            outputs = {name: outputs[name] for name in output_filter}
        return outputs

    def classify(self, signature_name: str, examples: list[bytes]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(classes [n, k] or None, scores [n, k] or None) as TF Serving's Classify computes them."""
        signature = self._signature_def(signature_name)
        _check_example_input(signature, "classification")
        outputs = set(signature.outputs)
        if not outputs & {"classes", "scores"} or len(outputs) > 2:
            raise invalid_argument("Expected classification signature outputs to contain at least one of "
                                   f"\"classes\" or \"scores\". Signature was: {sorted(outputs)}")
        result = self._examples_run(signature_name, examples)
        classes, scores = result.get("classes"), result.get("scores")
        for tensor in (classes, scores):
            if tensor is not None and tensor.ndim != 2:
                raise ServingError(grpc.StatusCode.INTERNAL, f"Expected Tensor shape: [batch_size num_classes] but got "
                                              f"{list(tensor.shape)}")
        return classes, scores

    def regress(self, signature_name: str, examples: list[bytes]) -> np.ndarray:
        signature = self._signature_def(signature_name)
        _check_example_input(signature, "regression")
        if set(signature.outputs) != {"outputs"}:
            raise invalid_argument(f"Expected one output Tensor named \"outputs\"; signature has "
                                   f"{sorted(signature.outputs)}")
        values = self._examples_run(signature_name, examples)["outputs"]
        if values.ndim > 2 or values.size != len(examples):
            raise ServingError(grpc.StatusCode.INTERNAL, "Expected output Tensor shape to be either [batch_size] or "
                                          f"[batch_size, 1] but got {list(values.shape)}")
        return values.reshape(-1)

    def _signature_def(self, signature_name: str) -> meta_graph_pb2.SignatureDef:
        self._function(signature_name)  # the same not-found error as Predict
        return self.signature_defs[signature_name or DEFAULT_SIGNATURE]

    def _examples_run(self, signature_name: str, examples: list[bytes]) -> dict[str, np.ndarray]:
        if not examples:
            raise invalid_argument("Input is empty: send at least one example")
        self._check_batch(len(examples))
        (input_name,) = self.input_specs(signature_name)
        return self._run(signature_name, {input_name: tf.constant(examples, tf.string)})


def _check_example_input(signature: meta_graph_pb2.SignatureDef, kind: str):
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if "inputs" not in signature.inputs or signature.inputs["inputs"].dtype != tf.string.as_datatype_enum:
        raise invalid_argument(f"No {kind} inputs found in SignatureDef: expected one string input "
                               f"\"inputs\" (serialized tf.Examples), got {sorted(signature.inputs)}")


def _as_tensor(name: str, value: np.ndarray, spec: tf.TensorSpec) -> tf.Tensor:
    value = np.asarray(value)
    wanted = spec.dtype
    if wanted == tf.string:
        if value.dtype.kind not in "SUO":
            raise invalid_argument(f"input '{name}': expects string values but {value.dtype} values were sent")
    elif wanted.is_integer and value.dtype.kind not in "iu":
        raise invalid_argument(f"input '{name}': expects {wanted.name} values but {value.dtype} values were sent")
    elif wanted.is_floating and value.dtype.kind not in "iuf":
        raise invalid_argument(f"input '{name}': expects {wanted.name} values but {value.dtype} values were sent")
    if not spec.shape.is_compatible_with(value.shape):
        raise invalid_argument(f"input '{name}': expects shape {spec.shape.as_list()} (None = any) "
                               f"but got {list(value.shape)}")
    return tf.constant(value, dtype=wanted)


def _essential(message: str) -> str:
    """The lines of a TensorFlow error that say what is wrong, without graph-node and stack noise."""
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[")
    lines = [line.strip() for line in message.splitlines()]
    kept = [line.replace("Name: <unknown>, ", "") for line in lines if line and not line.startswith(noise)]
    return " ".join(kept) or message


def _grpc_code(err: tf.errors.OpError) -> grpc.StatusCode:
    """TensorFlow's error codes are the canonical gRPC codes, by number."""
    return _CODES_BY_NUMBER.get(err.error_code, grpc.StatusCode.INTERNAL)


_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
