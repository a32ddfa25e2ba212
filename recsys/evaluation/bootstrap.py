"""Bootstrap confidence intervals, vectorised over resamples, and paired for comparing models.

Each resample draws the eval rows with replacement; a metric's interval is the
percentile range of its values over resamples. Models compared on the same
rows share the same draws (a paired bootstrap), so the interval of a
difference reflects the difference's own noise, which is far smaller than the
noise of either metric alone.

AUC in a resample is computed from per-bin counts of positives and negatives
over rank bins of the scores (up to `MAX_RANK_BINS` quantile bins; exact when
there are fewer distinct scores). Pairs inside one bin count as ties, so a
resampled AUC can differ from the exact one by at most half the share of pairs
that fall into one bin: below 1/(2 * 4096) ≈ 1.2e-4, well inside any interval.
Resampled AUCs are then shifted by (exact AUC - binned AUC on all rows), so
the interval is centred where the exact metric is. That turns each resample
into a few sums over bins instead of a sort over rows.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from recsys.evaluation.metrics import _EPSILON, auc

MAX_RANK_BINS = 4096
PAIRED_RANK_BINS = 1024  # per model when models are resampled together: cells grow as bins**models


def rank_bins(scores: np.ndarray, max_bins: int = MAX_RANK_BINS) -> tuple[np.ndarray, int]:
    """Each score's bin (0 = lowest) and the number of bins."""
    distinct = np.unique(scores)
    if len(distinct) <= max_bins:
        return np.searchsorted(distinct, scores), len(distinct)
    edges = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, max_bins + 1)[1:-1]))
    return np.searchsorted(edges, scores, side="right"), len(edges) + 1


def binned_auc(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """AUC from per-bin counts (last axis: bins in ascending score order); ties count one half."""
    below = np.cumsum(negatives, axis=-1) - negatives
    pairs = positives.sum(axis=-1) * negatives.sum(axis=-1)
    wins = np.sum(positives * (below + 0.5 * negatives), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.maximum(pairs, 1), np.nan)


def _cells(labels: np.ndarray, bins: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Groups rows that no resampled metric can tell apart: the same label and the same bin in every model.

    Returns each row's cell and the number of rows per cell.
    """
    key = labels.astype(np.int64)
    for row_bin, num_bins in bins:  # 2 * 4096**4 still fits in int64: four models at once
        key = key * num_bins + row_bin
    _, cell_of_row, sizes = np.unique(key, return_inverse=True, return_counts=True)
    return cell_of_row.ravel(), sizes


def _cells_to_bins(cell_of_row: np.ndarray, row_bin: np.ndarray, cells: int, num_bins: int):
    """A sparse 0/1 matrix [cells, bins]: which rank bin of one model each cell lies in."""
    cell_bin = np.zeros(cells, dtype=np.int64)
    cell_bin[cell_of_row] = row_bin
    return sparse.csr_matrix((np.ones(cells), (np.arange(cells), cell_bin)), shape=(cells, num_bins))


def _cell_sums(cell_of_row: np.ndarray, values: np.ndarray, cells: int) -> np.ndarray:
    return np.bincount(cell_of_row, weights=values, minlength=cells)


def resampled_metrics(labels: np.ndarray, predictions: dict[str, np.ndarray], task_type: str,
                      resamples: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Each model's headline metrics over the same `resamples` draws of rows: {model: {metric: [resamples]}}.

    Binary tasks: auc, logloss, calibration (mean prediction / mean label).
    Regression tasks: rmse, mae.

    Drawing n rows with replacement is the same as drawing how many rows of
    each cell are taken, one multinomial over cells, so a resample costs
    O(cells), not O(rows). A cell holds rows with the same label and rank bin
    (binary) or error bin (regression) in every model; a cell's rows enter a
    resample with their mean loss / score / error, which changes a resampled
    mean only by the spread inside one of up to 4096 quantile bins.
    """
    rows = len(labels)
    labels = np.asarray(labels, dtype=float)
    if rows == 0 or resamples == 0:
        return {}
    names = list(predictions)
    scores = {name: np.asarray(predictions[name], dtype=float) for name in names}
    max_bins = MAX_RANK_BINS if len(names) == 1 else PAIRED_RANK_BINS
    if task_type == "binary":
        bins = {name: rank_bins(scores[name], max_bins) for name in names}
    else:
        bins = {name: rank_bins(scores[name] - labels, max_bins) for name in names}
    cell_of_row, sizes = _cells(labels if task_type == "binary" else np.zeros(rows), [bins[n] for n in names])
    cells = len(sizes)
    counts = np.random.default_rng(seed).multinomial(rows, sizes / rows, size=resamples).astype(float)
    cell_positive = _cell_sums(cell_of_row, labels, cells) / sizes
    values = {}
    for name in names:
        if task_type == "binary":
            clipped = np.clip(scores[name], _EPSILON, 1 - _EPSILON)
            loss = -(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
            cell_loss = _cell_sums(cell_of_row, loss, cells) / sizes
            cell_score = _cell_sums(cell_of_row, scores[name], cells) / sizes
            row_bin, num_bins = bins[name]
            to_bins = _cells_to_bins(cell_of_row, row_bin, cells, num_bins)
            positives = np.asarray((to_bins.T @ (counts * cell_positive).T).T)
            negatives = np.asarray((to_bins.T @ (counts * (1 - cell_positive)).T).T)
            label_sums = positives.sum(axis=1)
            # Centre the resampled AUCs on the exact AUC: removes the (tiny) bias of counting in-bin pairs as ties.
            full = to_bins.T @ (sizes * cell_positive), to_bins.T @ (sizes * (1 - cell_positive))
            shift = auc(labels, scores[name]) - float(binned_auc(*full))
            with np.errstate(invalid="ignore", divide="ignore"):
                values[name] = {"auc": binned_auc(positives, negatives) + shift,
                                "logloss": counts @ cell_loss / rows,
                                "calibration": np.where(label_sums > 0, counts @ cell_score / label_sums, np.nan)}
        else:
            errors = scores[name] - labels
            cell_square = _cell_sums(cell_of_row, errors ** 2, cells) / sizes
            cell_absolute = _cell_sums(cell_of_row, np.abs(errors), cells) / sizes
            values[name] = {"rmse": np.sqrt(counts @ cell_square / rows), "mae": counts @ cell_absolute / rows}
    return values


def interval(values: np.ndarray, confidence: float) -> list[float]:
    """The central `confidence` percentile range of resampled values, ignoring undefined resamples."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return [float("nan"), float("nan")]
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def metric_intervals(labels: np.ndarray, scores: np.ndarray, task_type: str, resamples: int,
                     confidence: float, seed: int = 0) -> dict[str, list[float]]:
    """{metric: [low, high]} for one model's headline metrics."""
    found = resampled_metrics(labels, {"model": scores}, task_type, resamples, seed)
    return {metric: interval(values, confidence) for metric, values in found.get("model", {}).items()}
