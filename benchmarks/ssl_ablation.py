"""Self-supervised item augmentation, ablated: no SSL vs RFM vs CFM on data with a steep item long tail.

    python benchmarks/ssl_ablation.py --rows 150000 --epochs 1 --seeds 1,2,3

Generates one dataset (a power law over item popularity, steeper than the
default), preprocesses it once (item corpus and mutual information included),
then trains the same ESMM ranker under each variant with each training seed.
Every run is scored on the same eval rows: CTR AUC over all impressions and CVR
AUC over clicked ones, overall and per popularity bucket (head, torso, tail by
the training split's impressions, see `recsys.evaluation.popularity`). Reports
the mean and standard deviation over seeds, and each variant's paired
difference from no SSL (same seed, same data).

Writes benchmarks/results/ssl_ablation.{md,json,png}.
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
import yaml  # noqa: E402

from features.artifacts import Artifacts  # noqa: E402
from features.config import parse_config  # noqa: E402
from pipelines import synthetic  # noqa: E402
from pipelines.preprocess import run_preprocess  # noqa: E402
from recsys.data import make_dataset, split_files, transformed_feature_spec  # noqa: E402
from recsys.evaluation import metrics  # noqa: E402
from recsys.evaluation.evaluate import predict  # noqa: E402
from recsys.evaluation.popularity import (BUCKETS, auc_by_bucket, bucket_of, impression_counts,  # noqa: E402
                                          popularity_buckets)
from recsys.training import load_trained_ranker, train  # noqa: E402

SAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "data_samples" / "synthetic.yaml"
VARIANTS = {"none": None, "rfm": "rfm", "cfm": "cfm"}
SLICES = ("all",) + BUCKETS


def _config(workdir: Path, data: Path, variant: str, seed: int, args) -> object:
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    raw.update(seed=seed, artifacts_dir=str(workdir / "artifacts"))
    raw["input"]["path"] = str(data)
    raw["tasks"] = raw["tasks"][:2]  # ctr and cvr
    raw["evaluation"]["truth"] = {"ctr": "true_ctr", "cvr": "true_cvr"}
    raw["training"].update(batch_size=args.batch_size, learning_rate=args.learning_rate, epochs=args.epochs,
                           early_stopping_patience=args.epochs, model_dir=str(workdir / "models" / f"{variant}-{seed}"))
    # The pipeline always writes the corpus and MI (ssl on), so every variant reads the same artifacts.
    raw["ssl"] = {"enabled": variant != "none", "strategy": VARIANTS.get(variant) or "cfm",
                  "alpha": args.alpha, "temperature": args.temperature, "encoder_units": [128, 64],
                  "item_sampling": args.item_sampling}
    return parse_config(raw)


def _item_buckets(config) -> tuple[dict, dict]:
    artifacts = Artifacts.of(config)
    spec = transformed_feature_spec(artifacts.root)
    counts = impression_counts(make_dataset(split_files(artifacts.root, "train"), {"item_id": spec["item_id"]},
                                            8192), "item_id")
    return counts, popularity_buckets(counts)


def _score(config, row_buckets_of) -> dict:
    """CTR and CVR AUC, overall and per bucket, of the trained (plain) ranker on the eval split."""
    artifacts = Artifacts.of(config)
    dataset = make_dataset(split_files(artifacts.root, "eval"), transformed_feature_spec(artifacts.root), 4096)
    outputs, columns, _ = predict(load_trained_ranker(config), dataset, ["click", "conversion", "item_id"])
    buckets = row_buckets_of(columns["item_id"])
    clicks, conversions = columns["click"], columns["conversion"]
    ctr = auc_by_bucket(clicks, outputs["ctr"], buckets)
    cvr = auc_by_bucket(conversions, outputs["cvr"], buckets, sample_space=clicks)
    clicked = clicks > 0
    result = {"ctr_auc/all": metrics.auc(clicks, outputs["ctr"]),
              "cvr_auc/all": metrics.auc(conversions[clicked], outputs["cvr"][clicked])}
    for bucket in BUCKETS:
        result[f"ctr_auc/{bucket}"], result[f"cvr_auc/{bucket}"] = ctr[bucket]["auc"], cvr[bucket]["auc"]
    return result


def _summary(runs: list[dict], variants: list[str]) -> dict:
    """Per variant and metric: mean and std over seeds, and the paired difference from no SSL."""
    by_key = {(r["variant"], r["seed"]): r["metrics"] for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    summary = {}
    for variant in variants:
        summary[variant] = {}
        for metric in runs[0]["metrics"]:
            values = np.array([by_key[(variant, s)][metric] for s in seeds])
            entry = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(seeds) > 1 else 0.0}
            if variant != "none" and "none" in variants:
                deltas = values - np.array([by_key[("none", s)][metric] for s in seeds])
                entry.update(delta_mean=float(deltas.mean()),
                             delta_std=float(deltas.std(ddof=1)) if len(seeds) > 1 else 0.0,
                             delta_positive_seeds=int((deltas > 0).sum()))
            summary[variant][metric] = entry
    return summary


def _markdown(setup: str, buckets: dict, summary: dict) -> str:
    lines = ["# Self-supervised item augmentation: ablation", "", setup, "",
             "Popularity buckets (training impressions): " + ", ".join(
                 f"{b}: {v['items']} items, {v['train_share']:.0%} of training impressions, "
                 f"{v['eval_rows']} eval rows" for b, v in buckets.items()), "",
             "AUC, mean ± std over seeds; Δ is the paired difference from no SSL (same seed), "
             "with how many seeds it was positive.", ""]
    for task in ("ctr", "cvr"):
        space = "all impressions" if task == "ctr" else "clicked impressions"
        lines += [f"## {task.upper()} AUC ({space})", "", "| variant | " + " | ".join(SLICES) + " |",
                  "|---|" + "---|" * len(SLICES)]
        for variant, entries in summary.items():
            cells = []
            for s in SLICES:
                entry = entries[f"{task}_auc/{s}"]
                cell = f"{entry['mean']:.4f} ± {entry['std']:.4f}"
                if "delta_mean" in entry:
                    cell += f"<br>Δ {entry['delta_mean']:+.4f} ± {entry['delta_std']:.4f} ({entry['delta_positive_seeds']}+)"
                cells.append(cell)
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _plot(summary: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v in summary if v != "none"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=False)
    for ax, task in zip(axes, ("ctr", "cvr")):
        width = 0.8 / max(len(variants), 1)
        for k, variant in enumerate(variants):
            entries = [summary[variant][f"{task}_auc/{s}"] for s in SLICES]
            ax.bar(np.arange(len(SLICES)) + k * width, [e["delta_mean"] for e in entries], width,
                   yerr=[e["delta_std"] for e in entries], capsize=3, label=variant)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(SLICES)) + width * (len(variants) - 1) / 2, SLICES)
        ax.set_title(f"{task.upper()} AUC: SSL minus no SSL (paired by seed)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--popularity-exponent", type=float, default=1.2)
    parser.add_argument("--data-seed", type=int, default=5)
    parser.add_argument("--seeds", default="1,2,3", help="training seeds, one run per variant each")
    parser.add_argument("--variants", default="none,rfm,cfm")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=0.003)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--item-sampling", choices=("catalogue", "impressions"), default="catalogue")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ssl_ablation"))
    parser.add_argument("--workdir", help="keep data and artifacts here; a later run with the same data "
                                          "arguments reuses them (to vary only the SSL knobs)")
    args = parser.parse_args()
    started = time.monotonic()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-ssl-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "logs.csv"
    base = _config(workdir, data, "base", 0, args)
    if (Artifacts.of(base).manifest_path).exists():
        manifest = Artifacts.of(base).manifest()
        print(f"reusing the data and artifacts in {workdir}", flush=True)
    else:
        synthetic.write(synthetic.SyntheticSpec(rows=args.rows, seed=args.data_seed, num_items=args.items,
                                                item_popularity_exponent=args.popularity_exponent), str(data))
        manifest = run_preprocess(base, base.artifacts)
        print(f"preprocessed in {manifest['seconds']}s: {manifest['rows']}, {manifest['ssl']['items']} items",
              flush=True)
    counts, buckets = _item_buckets(base)
    row_buckets_of = lambda ids: bucket_of(ids, buckets)  # noqa: E731
    variants, seeds = args.variants.split(","), [int(s) for s in args.seeds.split(",")]
    runs = []
    for seed in seeds:
        for variant in variants:
            config = _config(workdir, data, variant, seed, args)
            run_started = time.monotonic()
            summary = train(config, verbose=False)
            runs.append({"variant": variant, "seed": seed, "metrics": _score(config, row_buckets_of),
                         "train_seconds": summary["seconds"],
                         "final_ssl_loss": summary["history"].get("ssl_loss", [None])[-1]})
            print(f"{variant} seed {seed} ({time.monotonic() - run_started:.0f}s): {runs[-1]}", flush=True)
    eval_rows = bucket_of(np.concatenate([b["item_id"].numpy() for b in make_dataset(
        split_files(base.artifacts, "eval"), {"item_id": transformed_feature_spec(base.artifacts)["item_id"]}, 8192)]),
        buckets)
    total = sum(counts.values())
    bucket_info = {b: {"items": sum(1 for v in buckets.values() if v == b),
                       "train_share": sum(c for i, c in counts.items() if buckets[i] == b) / total,
                       "eval_rows": int((eval_rows == b).sum())} for b in BUCKETS}
    summary = _summary(runs, variants)
    setup = (f"{args.rows} generated rows, {args.items} items, popularity exponent {args.popularity_exponent} "
             f"(data seed {args.data_seed}; train {manifest['rows']['train']}, eval {manifest['rows']['eval']}, "
             f"{manifest['ssl']['items']} distinct training items); ESMM shared-bottom ranker, {args.epochs} epoch(s), "
             f"batch {args.batch_size}, Adam {args.learning_rate}; SSL alpha {args.alpha}, temperature "
             f"{args.temperature}, mask rate 0.5, value dropout 0.1, item tower [128, 64], {args.item_sampling} sampling; "
             f"training seeds {seeds}; {os.cpu_count()} CPU cores (shared); "
             f"whole run {time.monotonic() - started:.0f}s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = {suffix: out.parent / f"{out.name}.{suffix}" for suffix in ("json", "md", "png")}  # names may hold dots
    written["json"].write_text(json.dumps(
        {"setup": setup, "args": vars(args), "buckets": bucket_info, "summary": summary, "runs": runs},
        indent=2) + "\n")
    written["md"].write_text(_markdown(setup, bucket_info, summary))
    if "none" in variants and len(variants) > 1:
        _plot(summary, written["png"])
    print(written["md"].read_text())


if __name__ == "__main__":
    main()
