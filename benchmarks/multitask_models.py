"""Every multi-task model on the same generated data, against DeepCTR's MMoE and PLE, in one run.

    python benchmarks/multitask_models.py --rows 150000 --epochs 3

Writes benchmarks/results/multitask_models.{md,json}: per model the CTR AUC,
CVR AUC on clicked impressions, CTCVR AUC, training examples/second (training
batches only; over all epochs, which includes tracing and XLA compilation, and
warm: the median epoch after the first), parameters, and the p50/p99 latency of
scoring 100 candidates. Ours stream gzip TFRecord shards and parse each batch
unless the name says `in_memory`; DeepCTR is handed NumPy arrays already in
memory, as its API expects (loading them is not timed). `_xla` variants turn
on `training.jit_compile`; `_xla_in_memory` also holds the data in memory, like
for like with DeepCTR.
Ours are timed through the exported `serving_default` (raw tf.Examples in,
transform graph inside); DeepCTR (an optional dependency: `pip install
--no-deps deepctr==0.9.4`) is timed calling its Keras model (in a tf.function)
on already transformed tensors, which is less work, so the latency columns are
not like for like. Both sides use the same embedding sizes, 4 experts of [64], towers
of [64], batch 512 and Adam at 1e-3 for the same number of epochs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402

from features.artifacts import Artifacts  # noqa: E402
from features.config import parse_config  # noqa: E402
from features.examples import to_example  # noqa: E402
from pipelines import synthetic  # noqa: E402
from pipelines.preprocess import run_preprocess  # noqa: E402
from pipelines.sources import read_sample_rows  # noqa: E402
from pipelines.validation import RowValidator  # noqa: E402
from recsys.data import make_dataset, split_files, transformed_feature_spec  # noqa: E402
from recsys.evaluation import metrics  # noqa: E402
from recsys.evaluation.evaluate import evaluate  # noqa: E402
from recsys.training import load_trained_ranker, train  # noqa: E402
from serving.export import export_model  # noqa: E402
from serving.scoring import ExportedModel  # noqa: E402

SAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "data_samples" / "synthetic.yaml"
EXPERTS = {"num_experts": 4, "task_experts": 2, "shared_experts": 1, "num_levels": 2, "units": [64]}
XLA = {"jit_compile": True}
OURS = {  # name → (bottom, backbone, structure, bottom units, training overrides)
    "shared_bottom": ("shared", "shared_bottom", "independent", [128], {}),
    "esmm": ("shared", "shared_bottom", "esmm", [], {}),
    "mmoe": ("shared", "mmoe", "independent", [], {}),
    "mmoe_xla": ("shared", "mmoe", "independent", [], XLA),
    "mmoe_xla_in_memory": ("shared", "mmoe", "independent", [], {**XLA, "in_memory": True}),
    "cgc": ("shared", "cgc", "independent", [], {}),
    "ple": ("shared", "ple", "independent", [], {}),
    "ple_xla": ("shared", "ple", "independent", [], XLA),
    "ple_xla_in_memory": ("shared", "ple", "independent", [], {**XLA, "in_memory": True}),
    "adatt": ("shared", "adatt", "independent", [], {}),
    "esmm_mmoe": ("shared", "mmoe", "esmm", [], {}),
    "dtrn_ple": ("dtrn", "ple", "independent", [], {}),
}
CANDIDATES = 100


def _config(workdir: Path, data: Path, name: str, bottom: str, backbone: str, structure: str, bottom_units: list,
            training: dict, epochs: int, engine: str = "beam"):
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    raw["pipeline"]["engine"] = engine
    raw["input"]["path"] = str(data)
    raw["artifacts_dir"] = str(workdir / "artifacts")
    raw["tasks"] = raw["tasks"][:2]  # ctr and cvr: what DeepCTR's models are given too
    raw["evaluation"]["truth"] = {"ctr": "true_ctr", "cvr": "true_cvr"}
    raw["model"].update(bottom=bottom, backbone=backbone, structure=structure, bottom_units=bottom_units,
                        tower_units=[64],
                        experts=EXPERTS, dropout=0.0, embedding_l2=0.0)
    if structure != "esmm":
        raw["model"].pop("esmm")
    raw["training"].update(batch_size=512, learning_rate=1e-3, epochs=epochs, early_stopping_patience=epochs,
                           model_dir=str(workdir / "models" / name), **training)
    raw["export"].update(model_name=name, base_path=str(workdir / "serving"))
    return parse_config(raw)


def _latency(score, batch, calls: int = 100) -> dict:
    for _ in range(10):
        score(batch)
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        score(batch)
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(timings, 50)), "p99_ms": float(np.percentile(timings, 99))}


def _steady(rows: int, epoch_seconds: list[float]) -> float:
    """Examples/second once warm: the median epoch after the first (which includes tracing and XLA)."""
    return rows / float(np.median(epoch_seconds[1:] or epoch_seconds))


class _EpochClock(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = getattr(self, "seconds", []) + [time.monotonic() - self._started]


def run_ours(name: str, config, candidates: list[bytes]) -> dict:
    summary = train(config, verbose=False)
    ranker = load_trained_ranker(config)
    report = evaluate(config, ranker)
    model = ExportedModel(export_model(ranker, config, config.artifacts))
    tasks = report["tasks"]
    return {"model": name, "ctr_auc": tasks["ctr"]["auc"], "cvr_auc_clicked": tasks["cvr"]["auc"],
            "ctcvr_auc": tasks["ctcvr"]["auc"], "examples_per_second": summary["train_examples_per_second"],
            "steady_examples_per_second": _steady(Artifacts.of(config).manifest()["rows"]["train"],
                                                  summary["epoch_train_seconds"]),
            "parameters": int(ranker.count_params()), **_latency(model.score, candidates)}


def _as_arrays(dataset) -> dict[str, np.ndarray]:
    batches = list(dataset)
    return {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}


def _deepctr_columns(model_inputs: list[dict]):
    from deepctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat

    columns = []
    for spec in model_inputs:
        if spec["kind"] == "numeric":
            columns.append(DenseFeat(spec["name"], 1))
            continue
        sparse = SparseFeat(spec["name"], spec["vocabulary_size"], embedding_dim=spec["embedding_dim"],
                            embedding_name=spec["table"])
        columns.append(sparse if spec["kind"] == "categorical"
                       else VarLenSparseFeat(sparse, maxlen=spec["length"], combiner="mean"))
    return columns


def run_deepctr(kind: str, config, epochs: int) -> dict:
    from deepctr.models.multitask import MMOE, PLE

    artifacts = Artifacts.of(config)
    spec = transformed_feature_spec(artifacts.root)
    train_data = _as_arrays(make_dataset(split_files(artifacts.root, "train"), spec, 4096))
    eval_data = _as_arrays(make_dataset(split_files(artifacts.root, "eval"), spec, 4096))
    model_inputs = artifacts.manifest()["model_inputs"]
    columns = _deepctr_columns(model_inputs)
    tf.keras.utils.set_random_seed(config.seed)
    common = dict(tower_dnn_hidden_units=(64,), task_types=("binary", "binary"), task_names=("ctr", "ctcvr"),
                  gate_dnn_hidden_units=(), seed=config.seed)
    if kind == "mmoe":
        model = MMOE(columns, num_experts=4, expert_dnn_hidden_units=(64,), **common)
    else:
        model = PLE(columns, shared_expert_num=1, specific_expert_num=2, num_levels=2,
                    expert_dnn_hidden_units=(64,), **common)
    model.compile(tf.keras.optimizers.Adam(1e-3), loss=["binary_crossentropy", "binary_crossentropy"])
    names = [spec["name"] for spec in model_inputs]
    features = {n: train_data[n] for n in names}
    labels = [train_data["click"], train_data["click"] * train_data["conversion"]]
    clock = _EpochClock()
    model.fit(features, labels, batch_size=512, epochs=epochs, verbose=0, shuffle=True, callbacks=[clock])
    ctr, ctcvr = (p.ravel() for p in model.predict({n: eval_data[n] for n in names}, batch_size=4096, verbose=0))
    clicked = eval_data["click"] > 0
    batch = {n: tf.constant(eval_data[n][:CANDIDATES]) for n in names}
    return {"model": f"deepctr_{kind}", "ctr_auc": metrics.auc(eval_data["click"], ctr),
            "cvr_auc_clicked": metrics.auc(eval_data["conversion"][clicked], ctcvr[clicked]),
            "ctcvr_auc": metrics.auc(eval_data["click"] * eval_data["conversion"], ctcvr),
            "examples_per_second": len(labels[0]) * epochs / sum(clock.seconds),
            "steady_examples_per_second": _steady(len(labels[0]), clock.seconds),
            "parameters": int(model.count_params()),
            **_latency(tf.function(lambda b: model(b, training=False)), batch)}


def _table(rows: list[dict]) -> str:
    header = ("| model | CTR AUC | CVR AUC (clicked) | CTCVR AUC | train ex/s (all epochs) | train ex/s (warm) | "
              f"parameters | p50 ms ({CANDIDATES} cand.) | p99 ms |\n|---|---|---|---|---|---|---|---|---|\n")
    return header + "".join(
        f"| {r['model']} | {r['ctr_auc']:.4f} | {r['cvr_auc_clicked']:.4f} | {r['ctcvr_auc']:.4f} | "
        f"{r['examples_per_second']:.0f} | {r['steady_examples_per_second']:.0f} | {r['parameters']:,} | "
        f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |\n"
        for r in rows)


PAIRS = tuple((f"{model}{variant}", f"deepctr_{model}") for model in ("mmoe", "ple")
              for variant in ("", "_xla", "_xla_in_memory"))


def _throughput_ratios(rows: list[dict]) -> list[str]:
    by_name = {r["model"]: r for r in rows}
    lines = []
    for ours, theirs in PAIRS:
        if ours in by_name and theirs in by_name:
            mine, other = by_name[ours], by_name[theirs]
            lines.append(
                f"- {ours} trains at {mine['examples_per_second'] / other['examples_per_second']:.2f}× "
                f"{theirs}'s examples/second over all epochs and "
                f"{mine['steady_examples_per_second'] / other['steady_examples_per_second']:.2f}× once warm; "
                f"CTR AUC {mine['ctr_auc'] - other['ctr_auc']:+.4f}, "
                f"CTCVR AUC {mine['ctcvr_auc'] - other['ctcvr_auc']:+.4f}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--models", default=",".join(OURS) + ",deepctr_mmoe,deepctr_ple")
    parser.add_argument("--engine", choices=["beam", "columnar"], default="beam",
                        help="preprocessing engine; columnar prepares 1M rows in minutes rather than most of an hour")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "multitask_models"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-models-"))
    data = workdir / "logs.csv"
    synthetic.write(synthetic.SyntheticSpec(rows=args.rows, seed=args.seed), str(data))
    base = _config(workdir, data, "base", "shared", "shared_bottom", "independent", [], {}, args.epochs, args.engine)
    manifest = run_preprocess(base, base.artifacts)
    validate = RowValidator(base)
    candidates = [to_example(base, validate(row)) for row in read_sample_rows(base, CANDIDATES)]
    rows = []
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        if name.startswith("deepctr_"):
            rows.append(run_deepctr(name.removeprefix("deepctr_"), base, args.epochs))
        else:
            rows.append(run_ours(name, _config(workdir, data, name, *OURS[name], args.epochs, args.engine),
                                 candidates))
        print(rows[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    setup = (f"{args.rows} generated rows (seed {args.seed}; train {manifest['rows']['train']}, "
             f"eval {manifest['rows']['eval']}; {args.engine} preprocessing), {args.epochs} epochs, batch 512, "
             f"Adam 1e-3, {os.cpu_count()} CPU cores")
    out.with_suffix(".json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(f"# Multi-task models\n\n{setup}\n\n{_table(rows)}\n"
                                      + "\n".join(_throughput_ratios(rows)) + "\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
