"""One loaded model version and TF Serving's Predict, Classify and Regress semantics on it.

The checks and their messages follow TF Serving (`classifier.cc`,
`regressor.cc`; Predict's own checks are in `proto_api.predict`, after
`predict_util.cc`) so a client that works against the stand-in
works against the real server, errors included.
"""
from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2, text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from serving.standin.dtypes import dtype_string, shape_string
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
        # GetModelMetadata answers every request with all signatures (get_model_metadata_impl.cc): built once.
        self.signature_def_map = get_model_metadata_pb2.SignatureDefMap(signature_def=self.signature_defs)
        self.packed_signature_def_map = any_pb2.Any()
        self.packed_signature_def_map.Pack(self.signature_def_map)
        self._saved_model = tf.saved_model.load(str(self.version_dir))  # keeps the signatures' variables alive
        self._functions = dict(self._saved_model.signatures)
        self._input_specs = {name: dict(function.structured_input_signature[1])
                             for name, function in self._functions.items()}

    @property
    def warmup_path(self) -> Path:
        return self.version_dir / WARMUP_FILE

    def signature_def(self, signature_name: str) -> meta_graph_pb2.SignatureDef | None:
        return self.signature_defs.get(signature_name or DEFAULT_SIGNATURE)

    def _function(self, signature_name: str) -> tuple[object, dict[str, tf.TensorSpec]]:
        """The signature's concrete function and its input specs by name."""
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self._functions:  # e.g. __saved_model_init_op, which has no callable
            raise invalid_argument(f"Serving signature key \"{name}\" cannot be run by the stand-in")
        return self._functions[name], self._input_specs[name]

    def _check_batch(self, size: int):
        if size > self.max_batch_size:
            # TF Serving's batching (TensorFlow's shared_batch_scheduler.h) refuses a larger task in these words.
            raise invalid_argument(f"Task size {size} is larger than maximum input batch size {self.max_batch_size}")

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the signature on arrays already checked against its input aliases (predict_util.cc)."""
        function, specs = self._function(signature_name)
        tensors = {name: _as_tensor(index, name, inputs[name], specs[name])
                   for index, name in enumerate(sorted(inputs))}
        sizes = {int(tensor.shape[0]) for tensor in tensors.values() if tensor.shape.rank}
        self._check_batch(max(sizes, default=1))
        return self._call(signature_name, function, tensors)

    def _call(self, signature_name: str, function, inputs: dict[str, tf.Tensor]) -> dict[str, np.ndarray]:
        try:
            outputs = function(**inputs)
        except tf.errors.OpError as err:  # e.g. a required feature missing from an example
            raise ServingError(_grpc_code(err), _essential(err.message)) from None
        except UnicodeDecodeError:  # TensorFlow's message quoted the undecodable input itself
            raise invalid_argument(f"signature '{signature_name or DEFAULT_SIGNATURE}' could not parse its input "
                                   "(e.g. bytes that are not a serialized tf.Example)") from None
        return {name: value.numpy() for name, value in outputs.items()}

    def classify(self, signature_name: str, examples: list[bytes]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(classes [n, k] or None, scores [n, k] or None) as TF Serving's Classify computes them (classifier.cc)."""
        signature = self._example_signature(signature_name)
        if len(signature.outputs) not in (1, 2):
            raise invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
        _check_example_input(signature, "classification")
        if not set(signature.outputs) & {"classes", "scores"}:
            raise invalid_argument("Expected classification signature outputs to contain at least one of "
                                   f"\"classes\" or \"scores\". Signature was: {_debug_string(signature)}")
        result = self._examples_run(signature_name, examples)
        classes, scores = result.get("classes"), result.get("scores")
        for name, tensor in (("classes", classes), ("scores", scores)):
            if tensor is None:
                continue
            if tensor.ndim != 2:
                raise invalid_argument(f"Expected Tensor shape: [batch_size num_classes] but got "
                                       f"{shape_string(tensor.shape)}")
            if tensor.shape[0] != len(examples):
                raise invalid_argument(f"Expected {name} output batch size of {len(examples)}. Got: {tensor.shape[0]}")
        return classes, scores

    def regress(self, signature_name: str, examples: list[bytes]) -> np.ndarray:
        """The regression values as TF Serving's Regress computes them (regressor.cc)."""
        signature = self._example_signature(signature_name)
        if len(signature.outputs) != 1:
            raise invalid_argument("Expected one output Tensor.")
        _check_example_input(signature, "regression")
        if "outputs" not in signature.outputs:
            raise invalid_argument(f"No regression outputs found in SignatureDef: {_debug_string(signature)}")
        values = self._examples_run(signature_name, examples)["outputs"]
        if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
            raise invalid_argument("Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                                   f"but got {shape_string(values.shape)}")
        if values.shape[0] != len(examples):
            raise invalid_argument(f"Input batch size did not match output batch size: {len(examples)} vs. "
                                   f"{values.shape[0]}")
        return values.reshape(-1)

    def _example_signature(self, signature_name: str) -> meta_graph_pb2.SignatureDef:
        signature = self.signature_def(signature_name)
        if signature is None:
            raise invalid_argument(f"No signature was found with the name: {signature_name or DEFAULT_SIGNATURE}")
        if len(signature.inputs) != 1:
            raise invalid_argument("Expected one input Tensor.")
        return signature

    def _examples_run(self, signature_name: str, examples: list[bytes]) -> dict[str, np.ndarray]:
        if not examples:
            raise invalid_argument("Input is empty.")  # servables/tensorflow/util.cc
        self._check_batch(len(examples))
        function, specs = self._function(signature_name)
        (input_name,) = specs
        return self._call(signature_name, function, {input_name: tf.constant(examples, tf.string)})


def _check_example_input(signature: meta_graph_pb2.SignatureDef, kind: str):
    if "inputs" not in signature.inputs:
        raise invalid_argument(f"No {kind} inputs found in SignatureDef: {_debug_string(signature)}")


def _debug_string(message) -> str:
    """A proto as C++'s DebugString writes it (protobuf text format), as TF Serving quotes signatures."""
    return text_format.MessageToString(message)


def _as_tensor(index: int, name: str, value: np.ndarray, spec: tf.TensorSpec) -> tf.Tensor:
    """The input as the signature's dtype; a mismatch gets TensorFlow's feed error (session->Run)."""
    value = np.asarray(value)
    wanted = spec.dtype
    sent = _dtype_name(value)
    if sent != wanted.name and not (wanted == tf.string and value.dtype.kind in "SUO"):
        provided = dtype_string(tf.as_dtype(sent).as_datatype_enum) if sent else value.dtype
        raise invalid_argument(f"Expects arg[{index}] to be {dtype_string(wanted.as_datatype_enum)} but "
                               f"{provided} is provided")
    if not spec.shape.is_compatible_with(value.shape):
        raise invalid_argument(f"input '{name}': expects shape {spec.shape.as_list()} (None = any) "
                               f"but got {list(value.shape)}")
    return tf.constant(value, dtype=wanted)


def _dtype_name(value: np.ndarray) -> str | None:
    if value.dtype.kind in "SUO":
        return "string"
    try:
        return tf.as_dtype(value.dtype).name
    except TypeError:
        return None


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
