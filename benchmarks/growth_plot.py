"""One figure for every growth benchmark: time and peak memory against rows, side by side.

Rows and time are on log axes, so linear growth is a straight line parallel
to the dashed reference (drawn through each series' first point), and memory
starts at zero, so "flat" looks flat.
"""
from __future__ import annotations

from pathlib import Path

Point = tuple[int, float, float]  # rows, seconds, peak memory (in the unit memory_label names)


def plot_growth(series: dict[str, list[Point]], path: Path, title: str, rows_label: str = "input rows",
                seconds_label: str = "seconds", memory_label: str = "peak RSS (MB)"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for label, points in series.items():
        points = sorted(points)
        rows = [p[0] for p in points]
        line, = time_axis.plot(rows, [p[1] for p in points], "o-", label=label)
        if len(points) > 1:
            first_rows, first_seconds = points[0][0], points[0][1]
            time_axis.plot(rows, [first_seconds * n / first_rows for n in rows], "--", color=line.get_color(),
                           alpha=0.4, label=f"{label}: linear in rows")
        memory_axis.plot(rows, [p[2] for p in points], "o-", label=label)
    for axis, label in ((time_axis, seconds_label), (memory_axis, memory_label)):
        axis.set_xscale("log")
        axis.set_xlabel(rows_label)
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize="small")
    time_axis.set_yscale("log")
    memory_axis.set_ylim(0, 1.25 * max(p[2] for points in series.values() for p in points))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
