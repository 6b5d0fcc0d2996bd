"""PNG charts of the reports people would rather look at: pipeline by stage, revenue by period, win rate by period.

Drawn with matplotlib's Agg canvas on a Figure of our own (no pyplot global
state, no display needed), so it works in workers, servers and CI alike.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from crmtasks.reports.errors import ReportError
from crmtasks.reports.queries import Report

_COLORS = ("#4C72B0", "#DD8452")


def plot(report: Report, path: Path | str) -> Path:
    """Draw ``report`` (its all-owner or one-owner rows) to the PNG file ``path`` and return the path.

    Raises ValueError for a report that has no chart or rows split per owner,
    and ReportError (a ValueError) naming ``path`` when the file cannot be
    written (a directory, a missing or read-only directory).
    """
    if report.name not in _DRAW:
        raise ValueError(f"report {report.name} has no plot; plots: {', '.join(_DRAW)}")
    if report.filters.get("by_owner") and report.filters.get("owner") is None:
        raise ValueError("a plot shows all owners together or one owner (--owner ID), not one series per owner")
    figure = Figure(figsize=(10, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    _DRAW[report.name](axes, report)
    if not report.rows:
        axes.text(0.5, 0.5, "no data", transform=axes.transAxes, ha="center", va="center", fontsize=14)
    figure.suptitle(_title(report))
    path = Path(path)
    try:
        figure.savefig(path, format="png")
    except OSError as error:
        raise ReportError(f"cannot write the plot to {str(path)!r}: {error.strerror or error}") from None
    return path


def _title(report: Report) -> str:
    who = "all owners"
    if report.filters.get("owner") is not None:
        name = report.rows[0].get("owner_name") if report.rows else None
        who = f"owner {report.filters['owner']}" + (f" ({name})" if name else "")
    return f"{report.name.replace('_', ' ')} — {who} — as of {report.as_of:%Y-%m-%d %H:%M %Z}"


def _money(axes) -> None:
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))


def _pipeline(axes, report: Report) -> None:
    stages = [row["stage"] for row in report.rows]
    positions = range(len(stages))
    width = 0.4
    axes.bar([p - width / 2 for p in positions], [float(row["amount_total"]) for row in report.rows], width,
             label="amount", color=_COLORS[0])
    axes.bar([p + width / 2 for p in positions], [float(row["weighted_amount"]) for row in report.rows], width,
             label="weighted (amount x probability)", color=_COLORS[1])
    for position, row in zip(positions, report.rows):
        axes.annotate(f"{row['deal_count']:,} deals", (position, float(row["amount_total"])), ha="center",
                      va="bottom", fontsize=8)
    axes.set_xticks(list(positions), stages, rotation=20, ha="right")
    axes.set_ylabel("open pipeline")
    axes.margins(y=0.2)  # headroom for the labels and the legend
    _money(axes)
    axes.legend(loc="upper right")


def _revenue(axes, report: Report) -> None:
    periods = [row["period"] for row in report.rows]
    axes.bar(periods, [float(row["revenue"]) for row in report.rows], color=_COLORS[0])
    axes.set_ylabel("closed-won revenue")
    axes.tick_params(axis="x", labelrotation=45)
    _money(axes)


def _win_rate(axes, report: Report) -> None:
    periods = [row["period"] for row in report.rows]
    axes.plot(periods, [float(row["win_rate"]) for row in report.rows], marker="o", color=_COLORS[0])
    for period, row in zip(periods, report.rows):
        axes.annotate(f"{row['won']}/{row['won'] + row['lost']}", (period, float(row["win_rate"])),
                      textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    axes.set_ylim(0, 1.05)
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_ylabel("win rate (won / closed)")
    axes.tick_params(axis="x", labelrotation=45)


# The reports that have a chart, and how each is drawn.
_DRAW = {"pipeline": _pipeline, "revenue": _revenue, "win_rate": _win_rate}
