"""ratios.png: every row's ratio (ours / baseline) as a horizontal bar, log scale, lower is better.

Drawn with matplotlib's Agg canvas on a Figure of our own (no pyplot global
state, no display needed), like ``crmtasks.reports.plots``. A bar is green
when its row met its target, red when it missed, grey without a verdict; a
black tick marks the largest ratio that meets the target, the dashed line
parity with the baseline.
"""

from __future__ import annotations

from pathlib import Path

from benchsuite.rows import Row

_COLORS = {True: "#55A868", False: "#C44E52", None: "#8C8C8C"}


def draw(rows: list[Row], path: Path, title: str) -> Path:
    """Draw the rows that have a ratio to the PNG file ``path``; return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    plotted = [row for row in rows if row.ratio is not None and row.ratio > 0]
    figure = Figure(figsize=(11, 1.2 + 0.42 * max(1, len(plotted))), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    labels = [_label(row) for row in plotted]
    positions = list(range(len(plotted)))[::-1]
    axes.barh(positions, [row.ratio for row in plotted], color=[_COLORS[row.met] for row in plotted], height=0.6)
    for position, row in zip(positions, plotted):
        if row.target_ratio:
            axes.plot([row.target_ratio] * 2, [position - 0.4, position + 0.4], color="black", linewidth=2)
        axes.annotate(_ratio_text(row.ratio), (row.ratio, position), xytext=(4, 0), textcoords="offset points",
                      va="center", fontsize=8)
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_xscale("log")
    axes.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    axes.set_xlabel("ours / baseline (log scale; lower is better; black tick = target)")
    if not plotted:
        axes.text(0.5, 0.5, "no ratios measured", transform=axes.transAxes, ha="center", va="center")
    figure.suptitle(title)
    path = Path(path)
    figure.savefig(path, format="png")
    return path


def _label(row: Row) -> str:
    prefix = "SEED: " if row.claim else f"{row.suite}: "
    text = prefix + row.metric
    return text if len(text) <= 70 else text[:67] + "..."


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.3f}" if ratio < 10 else f"{ratio:.1f}"
