"""The evaluation report as one self-contained HTML page: tables and plots, no external assets.

Plots are matplotlib PNGs inlined as base64 data URIs, so the page can be
mailed, attached to a review or opened from a model directory offline.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np

_STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px 40px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin-bottom: 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th { background: #f3f5f7; } td:first-child, th:first-child { text-align: left; }
.note { color: #666; font-size: 12px; } .plots { display: flex; flex-wrap: wrap; gap: 16px; }
img { border: 1px solid #eee; max-width: 100%; }
"""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure, layout: bool = True) -> str:
    buffer = io.BytesIO()
    if layout:
        figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    _plt().close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{encoded}">'


def _number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c if isinstance(c, str) else _number(c))}</td>"
                                    for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _with_interval(metrics: dict, name: str) -> str:
    interval = metrics.get("intervals", {}).get(name)
    value = _number(metrics.get(name))
    return f"{value} [{_number(interval[0])}, {_number(interval[1])}]" if interval else value


def _binary(tasks: dict) -> dict:
    return {name: m for name, m in tasks.items() if "auc" in m}


def _task_tables(report: dict) -> str:
    tasks = report["tasks"]
    binary = _binary(tasks)
    confidence = next((m["intervals"]["confidence"] for m in tasks.values() if "intervals" in m), None)
    parts = []
    if binary:
        parts.append(_table(
            ["output", "sample space", "rows", "positives", "AUC", "GAUC", "log loss", "normalised entropy",
             "calibration (pred/actual)", "ECE"],
            [[name, m.get("sample_space", ""), m["rows"], m["positives"], _with_interval(m, "auc"),
              m.get("gauc", {}).get("gauc"), _with_interval(m, "logloss"), m["normalized_entropy"],
              _with_interval(m, "calibration"), m["ece"]] for name, m in binary.items()]))
    regression = {name: m for name, m in tasks.items() if "rmse" in m}
    if regression:
        parts.append(_table(["output", "sample space", "rows", "RMSE", "MAE"],
                            [[name, m.get("sample_space", ""), m["rows"], _with_interval(m, "rmse"),
                              _with_interval(m, "mae")] for name, m in regression.items()]))
    if confidence:
        parts.append(f'<p class="note">[low, high]: {confidence:.0%} bootstrap interval over eval rows.</p>')
    gauc = [[name, m["gauc"]["gauc"], m["gauc"]["groups"], m["gauc"]["groups_skipped"]]
            for name, m in binary.items() if "gauc" in m]
    if gauc:
        parts.append("<h3>GAUC (grouped by user, impression-weighted)</h3>"
                     + _table(["output", "GAUC", "groups used", "single-class groups skipped"], gauc))
    thresholds = [[name, p["threshold"], p["precision"], p["recall"], p["predicted_positive"]]
                  for name, m in binary.items() for p in m["precision_recall"]]
    if thresholds:
        parts.append("<h3>Precision and recall at thresholds</h3>"
                     + _table(["output", "threshold", "precision", "recall", "predicted positive"], thresholds))
    return "".join(parts)


def _roc_plot(binary: dict) -> str:
    figure, axes = _plt().subplots(figsize=(5, 4.5))
    for name, m in binary.items():
        if m.get("roc", {}).get("fpr"):
            axes.plot(m["roc"]["fpr"], m["roc"]["tpr"], label=f"{name} (AUC {m['auc']:.3f})")
    axes.plot([0, 1], [0, 1], color="#bbb", linestyle="--", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="lower right", fontsize=8)
    return _png(figure)


def _reliability_plot(binary: dict) -> str:
    figure, axes = _plt().subplots(figsize=(5, 4.5))
    highest = 0.0
    for name, m in binary.items():
        curve = m["reliability"]
        if curve["predicted"]:
            axes.plot(curve["predicted"], curve["observed"], marker="o", markersize=3,
                      label=f"{name} (ECE {m['ece']:.4f})")
            highest = max(highest, max(curve["predicted"]), max(curve["observed"]))
    top = min(1.0, highest * 1.05) or 1.0
    axes.plot([0, top], [0, top], color="#bbb", linestyle="--", linewidth=1)
    axes.set(xlabel="mean predicted probability", ylabel="observed rate", title="Reliability (equal-count bins)",
             xlim=(0, top), ylim=(0, top))
    axes.legend(loc="upper left", fontsize=8)
    return _png(figure)


def _slice_plot(slice_name: str, values: dict) -> str:
    """AUC and calibration ratio per slice value, one bar per binary output; row counts under each value."""
    names = list(values)
    outputs = [o for o in next(iter(values.values())) if "auc" in values[names[0]][o]]
    if not outputs:
        return ""
    figure, (auc_axes, calibration_axes) = _plt().subplots(
        1, 2, figsize=(min(4.0 + 1.1 * len(names) * len(outputs) ** 0.5, 14), 3.8))
    width = 0.8 / len(outputs)
    positions = np.arange(len(names))
    for i, output in enumerate(outputs):
        offset = positions + i * width - 0.4 + width / 2
        auc_axes.bar(offset, [values[n][output]["auc"] for n in names], width, label=output)
        calibration_axes.bar(offset, [values[n][output]["calibration"] for n in names], width, label=output)
    aucs = [values[n][o]["auc"] for n in names for o in outputs if not math.isnan(values[n][o]["auc"])]
    if aucs:
        auc_axes.set_ylim(max(0.0, min(aucs) - 0.05), min(1.0, max(aucs) + 0.05))
    calibration_axes.axhline(1.0, color="#888", linestyle="--", linewidth=1)
    first = outputs[0]
    labels = [f"{n}\n(n={values[n][first]['rows']:,})" for n in names]
    rotate = len(names) > 5
    for axes, title in ((auc_axes, "AUC"), (calibration_axes, "calibration (pred / actual)")):
        axes.set_xticks(positions, labels, rotation=35 if rotate else 0, ha="right" if rotate else "center",
                        fontsize=7)
        axes.set_title(f"{title} by {slice_name}", fontsize=10)
    handles, legend_labels = auc_axes.get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="upper center", ncol=len(outputs), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    return _png(figure, layout=False)


def _slice_table(values: dict) -> str:
    first = next(iter(values.values()))
    outputs = list(first)
    header = ["value"]
    for output in outputs:
        header += ([f"{output} rows", f"{output} AUC", f"{output} calib."] if "auc" in first[output]
                   else [f"{output} rows", f"{output} RMSE", f"{output} MAE"])
    truth = [o for o in outputs if any("truth_bias" in found[o] for found in values.values())]
    header += [f"{o} bias vs truth" for o in truth]
    rows = []
    for value, found in values.items():
        row = [value]
        for output in outputs:
            m = found[output]
            row += [m["rows"], m["auc"], m["calibration"]] if "auc" in m else [m["rows"], m["rmse"], m["mae"]]
        rows.append(row + [found[o].get("truth_bias") for o in truth])
    return _table(header, rows)


def _utilisation_plot(utilisation: dict) -> str:
    from recsys.evaluation.gates import plot_expert_utilisation

    buffer = io.BytesIO()
    plot_expert_utilisation(utilisation, buffer)
    return f'<img alt="expert utilisation" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _about(about: dict | None) -> str:
    """Which model, config, data and code the report describes."""
    if not about:
        return ""
    rows = ", ".join(f"{split} {count:,}" for split, count in about["data"]["rows"].items())
    lines = [["model", about["model"]], ["trained", about["trained_at"] or "unknown"],
             ["config", f"{about['config_name']}" + (f" ({about['config_file']})" if about["config_file"] else "")],
             ["data", f"{about['data']['input']}; rows per split: {rows}"], ["evaluated", about["evaluated_at"]],
             ["code", about["code_version"]]]
    return _table(["about", ""], lines)


def render_html(report: dict, title: str = "evaluation") -> str:
    """The whole page as a string."""
    binary = _binary(report["tasks"])
    body = [f"<h1>Offline evaluation: {html.escape(title)}</h1>", _about(report.get("about")),
            f'<p class="note">{report["rows"]:,} {html.escape(report.get("split", "eval"))} rows; '
            "each output in its own sample space.</p>",
            "<h2>Metrics</h2>", _task_tables(report)]
    if binary:
        roc = _roc_plot(binary) if any("roc" in m for m in binary.values()) else ""
        body += ["<h2>ROC and calibration</h2>" if roc else "<h2>Calibration</h2>",
                 f'<div class="plots">{roc}{_reliability_plot(binary)}</div>']
    if report.get("precision"):
        body.append(f'<p class="note">Precision: {html.escape(report["precision"])}.</p>')
    if report.get("baselines") or report.get("truth"):
        body.append("<h2>Baselines and ground truth</h2>")
        body += [_table(["baseline", "CTR AUC"], [[name, b["ctr_auc"]] for name, b in report["baselines"].items()])
                 if report.get("baselines") else ""]
        if report.get("truth"):
            body.append("<h3>Error against the true probabilities (synthetic data, all eval impressions)</h3>"
                        + _table(["output", "MAE", "RMSE", "bias"],
                                 [[name, e["mae"], e["rmse"], e["bias"]] for name, e in report["truth"].items()]))
    for slice_name, values in report.get("slices", {}).items():
        body += [f"<h2>By {html.escape(slice_name)}</h2>", _slice_plot(slice_name, values), _slice_table(values),
                 '<p class="note">Slices with few rows or positives give noisy AUC and calibration; '
                 "read them with their row counts.</p>"]
    if report.get("expert_utilisation"):
        body += ["<h2>Expert utilisation (mean gate weight)</h2>", _utilisation_plot(report["expert_utilisation"])]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def write_html_report(report: dict, path: Path, title: str = "evaluation") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, title))
    return path
