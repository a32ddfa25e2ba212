"""Where each artifact lives under a run's directory: the contract between the stages.

    <artifacts>/train/*.tfrecord.gz, eval/*.tfrecord.gz   transformed examples
    <artifacts>/transform_fn/, transformed_metadata/, metadata/   tf.Transform output
    <artifacts>/dead_letter/*.jsonl   rejected rows with reasons
    <artifacts>/manifest.json   counts, vocabulary sizes, model inputs
    <model_dir>/   weights, checkpoints, TensorBoard logs, training.json (default <artifacts>/model)
    <model_dir>/evaluation/   evaluation.json, summary.txt, report.html, blessing.json
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Artifacts:
    root: Path
    model_dir: Path | None = None

    @classmethod
    def of(cls, config) -> "Artifacts":
        return cls(config.artifacts, config.model_dir)

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            raise FileNotFoundError(f"{self.manifest_path} does not exist; run `recsys preprocess` first")
        return json.loads(self.manifest_path.read_text())

    def split_dir(self, split: str) -> Path:
        return self.root / split

    @property
    def dead_letter_dir(self) -> Path:
        return self.root / "dead_letter"

    @property
    def weights_path(self) -> Path:
        return self.model_dir / "weights" / "ranker"

    @property
    def evaluation_dir(self) -> Path:
        return self.model_dir / "evaluation"
