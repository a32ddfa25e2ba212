"""Serving latency and batch-prediction throughput: our exported MMoE against DeepCTR's, in one run.

    python benchmarks/serving_vs_deepctr.py --rows 80000

Both models are trained for one epoch on the same generated, tf.Transform-ed
data (latency does not depend on quality) and exported as SavedModels whose
`serving_default` takes the same input: serialized raw `tf.Example`s. Both
parse them with the same raw feature spec and apply the same preprocessing:
the pipeline's own tf.Transform graph (`transform_features_layer`), so
vocabularies, OOV buckets, hashing, bucket boundaries and z-score statistics
are identical by construction and the measured difference is the model and
the serving function around it, not two encodings that could disagree.
DeepCTR's MMoE (an optional dependency: `pip install --no-deps
deepctr==0.9.4`) gets the same embedding sizes, 4 experts of [64], towers
of [64].

Measured, interleaved (ours, DeepCTR, ours, DeepCTR, ... so both see the
same load on a shared machine):
* p50/p99 latency of one `serving_default` call for 1, 10, 100 and 1000
  candidates, both SavedModels loaded with `tf.saved_model.load` and called
  the same way, and the floor: a function that only parses the same examples
  with the same spec (what any model behind this signature must pay);
* batch prediction throughput on the eval split repeated to `--predict-rows`
  rows, in batches of `--batch-size`: our `serving.batch_scoring.BatchScorer`
  (one XLA compilation, fixed batch) and our ranker's Keras `predict` against
  DeepCTR's `model.predict` on the same transformed arrays, and end to end
  (serialized raw examples through each `serving_default`).

Writes benchmarks/results/serving_vs_deepctr.{md,json}.
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
import tensorflow_transform as tft  # noqa: E402

from benchmarks.deepctr_mmoe import deepctr_mmoe  # noqa: E402
from benchmarks.multitask_models import _as_arrays, _config  # noqa: E402
from features.artifacts import Artifacts  # noqa: E402
from features.examples import to_example  # noqa: E402
from features.schema import serving_feature_spec  # noqa: E402
from pipelines import synthetic  # noqa: E402
from pipelines.preprocess import run_preprocess  # noqa: E402
from pipelines.sources import read_sample_rows  # noqa: E402
from pipelines.validation import RowValidator  # noqa: E402
from recsys.data import make_dataset, split_files, transformed_feature_spec  # noqa: E402
from recsys.training import load_trained_ranker, train  # noqa: E402
from serving.batch_scoring import BatchScorer  # noqa: E402
from serving.export import export_model  # noqa: E402
from serving.profiling import summarise, time_by_scope, trace_signature  # noqa: E402
from serving.scoring import ExportedModel  # noqa: E402

CANDIDATES = (1, 10, 100, 1000)


class DeepCtrServing(tf.Module):
    """DeepCTR's Keras model behind our signature: raw tf.Examples → parse → tf.Transform → scores."""

    def __init__(self, model: tf.keras.Model, transform_output: tft.TFTransformOutput, raw_spec: dict,
                 input_names: list[str]):
        super().__init__()
        self.model = model
        self.transform_layer = transform_output.transform_features_layer()
        self._raw_spec = raw_spec
        self._input_names = input_names

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        transformed = self.transform_layer(tf.io.parse_example(examples, self._raw_spec))
        # DeepCTR's inputs are [batch, 1] for single-valued features, [batch, length] for lists.
        inputs = {name: tf.reshape(transformed[name], [-1, 1]) if transformed[name].shape.rank == 1
                  else transformed[name] for name in self._input_names}
        ctr, ctcvr = self.model(inputs, training=False)
        return {"ctr": tf.reshape(ctr, [-1]), "ctcvr": tf.reshape(ctcvr, [-1])}


def parse_floor(raw_spec: dict):
    """The least any model behind this signature can cost: parse the same examples, score nothing.

    It returns one feature's string lengths, which reads the parse's output, so
    Grappler cannot prune the parse away.
    """
    first_string = next(name for name, spec in raw_spec.items()
                        if isinstance(spec, tf.io.FixedLenFeature) and spec.dtype == tf.string)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def parse_only(examples):
        return {"lengths": tf.strings.length(tf.io.parse_example(examples, raw_spec)[first_string])}

    return parse_only


def train_deepctr_mmoe(config) -> tuple[tf.keras.Model, list[str], dict]:
    """DeepCTR's MMoE trained one epoch on our transformed train split; returns it, its input names, eval arrays."""
    artifacts = Artifacts.of(config)
    spec = transformed_feature_spec(artifacts.root)
    train_data = _as_arrays(make_dataset(split_files(artifacts.root, "train"), spec, 4096))
    eval_data = _as_arrays(make_dataset(split_files(artifacts.root, "eval"), spec, 4096))
    model_inputs = artifacts.manifest()["model_inputs"]
    tf.keras.utils.set_random_seed(config.seed)
    model = deepctr_mmoe(model_inputs, config.seed)
    model.compile(tf.keras.optimizers.Adam(1e-3), loss=["binary_crossentropy", "binary_crossentropy"])
    names = [spec["name"] for spec in model_inputs]
    labels = [train_data["click"], train_data["click"] * train_data["conversion"]]
    model.fit({n: train_data[n] for n in names}, labels, batch_size=512, epochs=1, verbose=0, shuffle=True)
    return model, names, eval_data


def _export_deepctr(model, config, names: list[str], out: Path) -> Path:
    module = DeepCtrServing(model, tft.TFTransformOutput(str(config.artifacts)), serving_feature_spec(config), names)
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve_examples})
    return out


def _percentiles(timings: list[float]) -> dict:
    return {"p50_ms": float(np.percentile(timings, 50)), "p99_ms": float(np.percentile(timings, 99)),
            "calls": len(timings)}


def measure_latency(callers: dict, counts, repeats: int, warmup: int = 20) -> dict:
    """count → name → p50/p99 ms, calling in turn (A, B, A, B, ...) so the machine's load hits all alike.

    `callers[name](count)` returns a no-argument function that makes one call with `count` candidates.
    """
    results = {}
    for count in counts:
        calls = {name: make(count) for name, make in callers.items()}
        timings = {name: [] for name in calls}
        for _ in range(warmup):
            for call in calls.values():
                call()
        for _ in range(repeats):
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                timings[name].append((time.perf_counter() - started) * 1000)
        results[count] = {name: _percentiles(t) for name, t in timings.items()}
        print(f"  {count:>5} candidates: " + ", ".join(
            f"{name} p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms" for name, r in results[count].items()),
            flush=True)
    return results


def measure_throughput(predictors: dict, rounds: int) -> dict:
    """name → rows/second (best of `rounds` interleaved runs: the least disturbed by other load)."""
    seconds = {name: [] for name in predictors}
    for _ in range(rounds):
        for name, (predict, rows) in predictors.items():
            started = time.perf_counter()
            predict()
            seconds[name].append(time.perf_counter() - started)
    return {name: {"rows_per_second": predictors[name][1] / min(s), "rows": predictors[name][1],
                   "seconds": s} for name, s in seconds.items()}


def _signature_caller(signature, examples: list[bytes]):
    def make(count: int):
        batch = tf.constant(examples[:count], dtype=tf.string)
        return lambda: signature(examples=batch)

    return make


def _model_caller(model, arrays: dict, names: list[str], expand: bool):
    """The Keras model alone on already transformed tensors (in a tf.function): what serving costs beyond it."""
    forward = tf.function(lambda features: model(features, training=False))

    def make(count: int):
        features = {n: tf.constant(arrays[n][:count].reshape(count, -1) if expand else arrays[n][:count])
                    for n in names}
        return lambda: forward(features)

    return make


def _shared_preprocessing_share(deepctr_scopes: dict[str, float]) -> float:
    """Parsing and tf.Transform's share of DeepCTR's op time: both sides run them, so ours/DeepCTR ≥ this share."""
    shared = sum(micros for scope, micros in deepctr_scopes.items()
                 if "ParseExample" in scope or "transform_features_layer" in scope)
    return shared / sum(deepctr_scopes.values())


def _tiled(arrays: dict, rows: int) -> dict:
    return {name: np.resize(values, (rows,) + values.shape[1:]) for name, values in arrays.items()}


def _batched_signature(signature, examples: list[bytes], batch_size: int):
    batches = [tf.constant(examples[i:i + batch_size]) for i in range(0, len(examples), batch_size)]

    def run():
        for batch in batches:
            signature(examples=batch)

    return run


def _latency_rows(latency: dict, ours_key: str, theirs_key: str) -> list[str]:
    """A p50/p99 table by candidate count, ours against DeepCTR's."""
    rows = ["| candidates | ours p50 ms | ours p99 ms | DeepCTR p50 ms | DeepCTR p99 ms | p99 ours / DeepCTR |",
            "|---|---|---|---|---|---|"]
    for count, by_model in latency.items():
        ours, theirs = by_model[ours_key], by_model[theirs_key]
        rows.append(f"| {count} | {ours['p50_ms']:.2f} | {ours['p99_ms']:.2f} | {theirs['p50_ms']:.2f} | "
                    f"{theirs['p99_ms']:.2f} | {ours['p99_ms'] / theirs['p99_ms']:.2f}× |")
    return rows


def _floor_rows(latency: dict) -> list[str]:
    """The parse-only floor against both: how low any model behind this signature could go, and what is left."""
    rows = ["| candidates | floor p50 ms | floor p99 ms | p99 floor / DeepCTR | "
            "p50 above the floor, ours / DeepCTR |", "|---|---|---|---|---|"]
    for count, by_model in latency.items():
        floor, ours, theirs = by_model["parse_floor"], by_model["ours"], by_model["deepctr"]
        above = (ours["p50_ms"] - floor["p50_ms"]) / max(theirs["p50_ms"] - floor["p50_ms"], 1e-9)
        rows.append(f"| {count} | {floor['p50_ms']:.2f} | {floor['p99_ms']:.2f} | "
                    f"{floor['p99_ms'] / theirs['p99_ms']:.2f}× | {above:.2f}× |")
    return rows


def _markdown(setup: str, latency: dict, throughput: dict, profiles: dict, shared: float) -> str:
    lines = [f"# Serving: our exported MMoE against DeepCTR's MMoE\n\n{setup}\n",
             "## Latency of one `serving_default` call (raw tf.Examples in, tf.Transform inside)\n",
             *_latency_rows(latency, "ours", "deepctr"),
             "", "## The floor: parsing the same examples and scoring nothing\n",
             "`tf.io.parse_example` with the same raw spec, in a signature of its own, called in the same "
             "interleaved loop. No model behind a serialized-tf.Example signature can be faster than this, so "
             "`p99 floor / DeepCTR` is the lowest `ours / DeepCTR` could reach; the last column compares the median time "
             "each side adds on top of the parse (transform and model).\n",
             *_floor_rows(latency),
             "", "## The Keras model alone (transformed tensors in, in a tf.function)\n",
             *_latency_rows(latency, "ours_model", "deepctr_model")]
    lines += ["", "## Batch prediction throughput\n", "| path | rows/s | ours / DeepCTR |", "|---|---|---|"]
    scorer, theirs = throughput["ours_batch_scorer"], throughput["deepctr_model"]
    lines.append(f"| model: ours, `serving.batch_scoring.BatchScorer` (XLA, fixed batch) | "
                 f"{scorer['rows_per_second']:,.0f} | {scorer['rows_per_second'] / theirs['rows_per_second']:.2f}× |")
    for kind in ("model", "serving"):
        ours, theirs = throughput[f"ours_{kind}"], throughput[f"deepctr_{kind}"]
        ratio = ours["rows_per_second"] / theirs["rows_per_second"]
        label = "Keras `predict`" if kind == "model" else "batches through `serving_default`"
        lines.append(f"| {kind}: ours, {label} | {ours['rows_per_second']:,.0f} | {ratio:.2f}× |")
        lines.append(f"| {kind}: DeepCTR, {label} | {theirs['rows_per_second']:,.0f} | |")
    lines += ["", f"Parsing and the tf.Transform graph, which both sides run, are {shared:.0%} of DeepCTR's op time "
              f"per 100-candidate call (profiles below): with the same preprocessing, ours / DeepCTR cannot go "
              f"below {shared:.2f}× even with a model that costs nothing."]
    for name, profile in profiles.items():
        lines += ["", f"## Profile of one `serving_default` call, 100 candidates: {name}\n", "```", profile, "```"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=80_000, help="generated rows (train and eval)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=300, help="timed calls per model and candidate count")
    parser.add_argument("--predict-rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--throughput-rounds", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "serving_vs_deepctr"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    data = workdir / "logs.csv"
    print(f"generating {args.rows} rows in {workdir}", flush=True)
    synthetic.write(synthetic.SyntheticSpec(rows=args.rows, seed=args.seed), str(data))
    config = _config(workdir, data, "mmoe", "shared", "mmoe", "independent", [], {}, 1)
    print("preprocessing", flush=True)
    manifest = run_preprocess(config, config.artifacts)
    validate = RowValidator(config)
    examples = [to_example(config, validate(row)) for row in read_sample_rows(config, max(CANDIDATES))]

    print("training and exporting ours", flush=True)
    train(config, verbose=False)
    ranker = load_trained_ranker(config)
    ours = ExportedModel(export_model(ranker, config, config.artifacts, warmup_examples=examples[:4]))
    print("training and exporting DeepCTR's MMoE", flush=True)
    deepctr, names, eval_data = train_deepctr_mmoe(config)
    deepctr_dir = _export_deepctr(deepctr, config, names, workdir / "deepctr_serving" / "1")
    theirs = tf.saved_model.load(str(deepctr_dir))
    theirs_signature = theirs.signatures["serving_default"]
    ours_signature = ours.signature

    print("latency (interleaved)", flush=True)
    latency = measure_latency({"ours": _signature_caller(ours_signature, examples),
                               "deepctr": _signature_caller(theirs_signature, examples),
                               "parse_floor": _signature_caller(parse_floor(serving_feature_spec(config)), examples),
                               "ours_model": _model_caller(ranker, eval_data, names, expand=False),
                               "deepctr_model": _model_caller(deepctr, eval_data, names, expand=True)},
                              CANDIDATES, args.repeats)
    print("profiles of one serving call (100 candidates)", flush=True)
    traces = {"ours": trace_signature(ours_signature, examples[:100], 50),
              "deepctr": trace_signature(theirs_signature, examples[:100], 50)}
    profiles = {name: summarise(events, 50) for name, events in traces.items()}
    shared = _shared_preprocessing_share(time_by_scope(traces["deepctr"], 50))
    for name, profile in profiles.items():
        print(f"{name}:\n{profile}", flush=True)

    print("batch throughput (interleaved)", flush=True)
    arrays = _tiled({n: eval_data[n] for n in names}, args.predict_rows)
    deepctr_arrays = {n: v.reshape(-1, 1) if v.ndim == 1 else v for n, v in arrays.items()}
    many = (examples * (args.predict_rows // len(examples) + 1))[:args.predict_rows]
    scorer = BatchScorer(ranker, batch_size=args.batch_size)
    started = time.perf_counter()
    scorer.score({n: v[:1] for n, v in arrays.items()})
    compile_seconds = time.perf_counter() - started
    throughput = measure_throughput({
        "ours_batch_scorer": (lambda: scorer.score(arrays), args.predict_rows),
        "ours_model": (lambda: ranker.predict(arrays, batch_size=args.batch_size, verbose=0), args.predict_rows),
        "deepctr_model": (lambda: deepctr.predict(deepctr_arrays, batch_size=args.batch_size, verbose=0),
                          args.predict_rows),
        "ours_serving": (_batched_signature(ours_signature, many, args.batch_size), args.predict_rows),
        "deepctr_serving": (_batched_signature(theirs_signature, many, args.batch_size), args.predict_rows),
    }, args.throughput_rounds)
    for name, result in throughput.items():
        print(f"  {name}: {result['rows_per_second']:,.0f} rows/s", flush=True)

    setup = (f"{args.rows} generated rows (seed {args.seed}; train {manifest['rows']['train']}, eval "
             f"{manifest['rows']['eval']}), 1 epoch each; MMoE with 4 experts of [64], towers of [64]; "
             f"{args.repeats} interleaved calls per candidate count; throughput on {args.predict_rows:,} rows in "
             f"batches of {args.batch_size}, best of {args.throughput_rounds} interleaved rounds "
             f"(BatchScorer's one XLA compilation, {compile_seconds:.1f} s, not included); "
             f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(
        {"setup": setup, "latency": {str(k): v for k, v in latency.items()}, "throughput": throughput,
         "profiles": profiles, "shared_preprocessing_share": shared},
        indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(setup, latency, throughput, profiles, shared))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
