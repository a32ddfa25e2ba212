"""Where each artifact lives under a run's directory: the contract between the stages.

    <artifacts>/train/*.tfrecord.gz, eval/*.tfrecord.gz   transformed examples
    <artifacts>/transform_fn/, transformed_metadata/, metadata/   tf.Transform output
    <artifacts>/dead_letter/*.jsonl   rejected rows with reasons
    <artifacts>/manifest.json   counts, vocabulary sizes, model inputs
    <artifacts>/items/*.tfrecord.gz   with ssl on: one transformed row per distinct training item
    <artifacts>/item_feature_mi.json   with ssl on: pairwise mutual information of item features (train)
    <artifacts>/item_feature_mi.png   the same as a heatmap
    <model_dir>/   weights, checkpoints, TensorBoard logs, training.json (default <artifacts>/model)
    <model_dir>/evaluation/   evaluation.json, summary.txt, report.html, blessing.json
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from features.errors import RecsysError


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

    def trainable_manifest(self) -> dict:
        """The manifest, refused when preprocessing found splits that cannot train or evaluate a model."""
        manifest = self.manifest()
        if manifest.get("problems"):
            raise RecsysError(f"{self.manifest_path}: the data cannot train and evaluate a model: "
                              + "; ".join(manifest["problems"]) + " (fix the input and run `recsys preprocess`)")
        return manifest

    def split_dir(self, split: str) -> Path:
        return self.root / split

    @property
    def dead_letter_dir(self) -> Path:
        return self.root / "dead_letter"

    @property
    def item_corpus_dir(self) -> Path:
        return self.root / "items"

    @property
    def item_feature_mi_path(self) -> Path:
        return self.root / "item_feature_mi.json"

    @property
    def item_feature_mi_plot_path(self) -> Path:
        return self.root / "item_feature_mi.png"

    def item_feature_mi(self, names: list[str]) -> list[list[float]]:
        """The stored mutual-information matrix, rows and columns in the order of `names`."""
        path = self.item_feature_mi_path
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; run `recsys preprocess` with ssl.enabled: true")
        document = json.loads(path.read_text())
        missing = [n for n in names if n not in document["features"]]
        if missing:
            raise RecsysError(f"{path}: no mutual information for item feature(s) {', '.join(missing)}; "
                              "run `recsys preprocess` again with this config")
        order = [document["features"].index(n) for n in names]
        return [[document["mutual_information"][i][j] for j in order] for i in order]

    @property
    def weights_path(self) -> Path:
        return self.model_dir / "weights" / "ranker"

    @property
    def evaluation_dir(self) -> Path:
        return self.model_dir / "evaluation"

    def report_dir(self, split: str = "eval", beam: bool = False) -> Path:
        """Where a split's report goes: the evaluation directory for eval (what blessing reads), a subfolder
        for the held-out test split; `recsys evaluate --beam` writes beside it in evaluation_beam/."""
        directory = self.model_dir / ("evaluation_beam" if beam else "evaluation")
        return directory if split == "eval" else directory / split
