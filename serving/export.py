"""Export: the tf.Transform graph and a trained ranker as one versioned, TF-Serving-ready SavedModel.

`serving_default` takes serialized raw `tf.Example`s (`examples`, labels never
needed), parses them with the config's raw schema, applies the same transform
graph the pipeline used, and returns every task's score; `serving.signatures`
adds the per-task Classify/Regress signatures and a raw-features one. The
version is staged in a hidden directory with its warm-up requests, then
appears under `<base>/<model_name>/<version>/` by one atomic rename, so TF
Serving never sees a half-written model.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import uuid
from pathlib import Path

import tensorflow as tf
import tensorflow_transform as tft

from features.config import Config
from features.schema import serving_feature_spec
from serving import signatures
from serving.warmup import write_warmup

_LOG = logging.getLogger(__name__)


class ServingModule(tf.Module):
    """Raw examples → transform graph → ranker, as a tf.Module with a serving signature."""

    def __init__(self, ranker: tf.keras.Model, transform_output: tft.TFTransformOutput, raw_spec: dict):
        super().__init__()
        self.ranker = ranker
        self.transform_layer = transform_output.transform_features_layer()
        self._raw_spec = raw_spec

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        return self.score_raw_features(tf.io.parse_example(examples, self._raw_spec))

    def score_raw_features(self, raw_features: dict) -> dict:
        """Parsed raw features (as `tf.io.parse_example` gives them) → every output's score."""
        return self.ranker(self.transform_layer(raw_features), training=False)


def _versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _publish(staging: Path, model_dir: Path) -> Path:
    """Renames the staged SavedModel to the next free integer version (atomic on one filesystem)."""
    while True:
        target = model_dir / str((_versions(model_dir) or [0])[-1] + 1)
        try:
            os.rename(staging, target)
            return target
        except OSError as err:  # another exporter took this version first: take the next one
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise


def _retire_old_versions(model_dir: Path, keep: int, pinned: frozenset[int] = frozenset()):
    """Deletes all but the newest `keep` versions, never a `pinned` one (served by label or by number)."""
    for version in _versions(model_dir)[:-keep]:
        if version in pinned:
            continue
        doomed = model_dir / f".retired-{version}-{uuid.uuid4().hex}"
        os.rename(model_dir / str(version), doomed)  # invisible to TF Serving before the slow delete
        shutil.rmtree(doomed)


def _staging_dir(model_dir: Path) -> Path:
    """Hidden (TF Serving skips dot-names) and named after its exporter, so a dead one's can be found."""
    return model_dir / f".staging-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_abandoned_staging(model_dir: Path):
    """Deletes the staging directories that exporters on this host left when they were killed.

    Staging of a live exporter, or of another host (whose processes we cannot
    see on a shared filesystem), is left alone.
    """
    host = socket.gethostname()
    for path in model_dir.glob(".staging-*"):
        exporter = path.name[len(".staging-"):].rsplit("-", 2)
        if len(exporter) == 3 and exporter[0] == host and exporter[1].isdigit() and not _is_running(int(exporter[1])):
            shutil.rmtree(path, ignore_errors=True)


def export_model(ranker: tf.keras.Model, config: Config, transform_dir: str | Path,
                 warmup_examples: list[bytes] | None = None) -> Path:
    """Writes a new version of the served model and returns its directory.

    `warmup_examples` (serialized raw `tf.Example`s, e.g. a few sample rows)
    become the version's TF Serving warm-up requests; without them the first
    requests after a load are slow, which is logged.
    """
    model_dir = config.served_model_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(model_dir)
    module = ServingModule(ranker, tft.TFTransformOutput(str(transform_dir)), serving_feature_spec(config))
    staging = _staging_dir(model_dir)
    try:
        tf.saved_model.save(module, str(staging), signatures=signatures.build_signatures(module, config))
        signatures.write_method_names(staging, signatures.signature_methods(config))
        if warmup_examples:
            write_warmup(staging, config, warmup_examples)
        else:
            _LOG.warning("exporting %s without warm-up requests: pass warmup_examples", model_dir)
        version_dir = _publish(staging, model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    pinned = frozenset(config.serving.versions) | frozenset(config.serving.version_labels.values())
    _retire_old_versions(model_dir, config.export.keep_versions, pinned)
    return version_dir
