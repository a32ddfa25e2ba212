"""Beam RunInference over an exported SavedModel: validated raw rows in, every output's score out.

The handler loads the version's `serving_default` once per worker process
(RunInference shares it between the worker's threads) and scores batches that
RunInference forms (`BatchElements`, `min_batch_size` to `max_batch_size` rows).
Each batch becomes serialized raw `tf.Example`s in one call (tfx-bsl's C++
encoder) and the version's own transform graph does the rest, so any version
scores its rows its own way, exactly as TF Serving would.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from features.config import Config
from features.examples import to_examples
from serving.scoring import ExportedModel


class SavedModelHandler(ModelHandler[dict, PredictionResult, ExportedModel]):
    """A `ModelHandler` for RunInference: typed rows (column → value) → {output: score} per row."""

    def __init__(self, config: Config, version_dir: str, min_batch_size: int = 256, max_batch_size: int = 8192):
        super().__init__()
        self._config, self._version_dir = config, str(version_dir)
        self._batch_sizes = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}

    def load_model(self) -> ExportedModel:
        return ExportedModel(self._version_dir)

    def run_inference(self, batch: Sequence[dict], model: ExportedModel,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        scores = model.score(to_examples(self._config, list(batch)))
        columns = {name: values.reshape(-1).tolist() for name, values in scores.items()}
        return [PredictionResult(row, {name: values[i] for name, values in columns.items()})
                for i, row in enumerate(batch)]

    def batch_elements_kwargs(self) -> dict:
        return dict(self._batch_sizes)

    def get_metrics_namespace(self) -> str:
        return "recsys.SavedModelHandler"
