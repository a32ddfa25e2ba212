"""Scoring serialized raw examples with an exported SavedModel, exactly as TF Serving would."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from serving.signatures import FEATURES_SIGNATURE


def latest_version(model_dir: str | Path) -> Path:
    """The highest integer version under `<base>/<model_name>/`, the one TF Serving serves by default."""
    model_dir = Path(model_dir)
    versions = sorted((int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()))
    if not versions:
        raise FileNotFoundError(f"no exported version under {model_dir}; run `recsys export` first")
    return model_dir / str(versions[-1])


class ExportedModel:
    """A loaded SavedModel's `serving_default` signature."""

    def __init__(self, version_dir: str | Path):
        self.version_dir = Path(version_dir)
        self._saved_model = tf.saved_model.load(str(version_dir))  # keeps the signature's variables alive
        self._signature = self._saved_model.signatures["serving_default"]
        # Looked up once, not per batch; None for a SavedModel that serving.export did not write.
        self._features_signature = self._saved_model.signatures.get(FEATURES_SIGNATURE)

    @property
    def signature(self):
        """The loaded `serving_default` concrete function (examples → scores), for timing and profiling."""
        return self._signature

    def score(self, examples: list[bytes]) -> dict[str, np.ndarray]:
        outputs = self._signature(examples=tf.constant(examples, dtype=tf.string))
        return {name: value.numpy() for name, value in outputs.items()}

    def score_features(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Scores through `predict_features`: one array per raw feature column, lists joined by their separator.

        The same transform and model as `score`, without building and parsing
        tf.Examples: what batch prediction uses on columnar input.
        """
        if self._features_signature is None:
            raise ValueError(f"{self.version_dir} has no '{FEATURES_SIGNATURE}' signature; re-export it with "
                             "`recsys export`")
        outputs = self._features_signature(**{name: tf.constant(values) for name, values in columns.items()})
        return {name: value.numpy() for name, value in outputs.items()}
