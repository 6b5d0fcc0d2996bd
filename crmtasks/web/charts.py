"""The duration chart of a job's page: one bar per run, drawn as inline SVG.

Inline SVG needs no image route, no plotting library in the request path and
no change to the Content-Security-Policy (which allows no images from
anywhere); it scales with the page and each bar carries a tooltip. Every
text in it is escaped.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence

from markupsafe import Markup, escape

from crmtasks.models import TaskRun
from crmtasks.runs.status import RunStatus
from crmtasks.web.rendering import format_seconds, format_utc

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 34
GRID_LINES = 4
# Pixels; a few runs make narrow bars, not slabs.
MOST_BAR_WIDTH = 28
COLOURS = {RunStatus.SUCCEEDED: "#2e8b57", RunStatus.FAILED: "#c0392b", RunStatus.SKIPPED: "#9aa5b1",
           RunStatus.RUNNING: "#1a5fa8"}


def duration(run: TaskRun) -> float | None:
    """Seconds the run took; None while it runs.

    Parameters:
      run(TaskRun): A row of ``task_runs``.
    """
    if run.finished_at is None:
        return None
    return max((run.finished_at - run.started_at).total_seconds(), 0.0)


def duration_chart(runs: Sequence[TaskRun]) -> Markup:
    """An SVG bar chart of ``runs``' durations, oldest on the left, coloured by status; a note when none finished.

    Parameters:
      runs(Sequence[TaskRun]): The runs, in any order (they are sorted by start).
    """
    ordered = sorted(runs, key=lambda run: (run.started_at, run.id))
    finished = [seconds for seconds in map(duration, ordered) if seconds is not None]
    if not finished:
        return Markup('<p class="muted" id="duration-chart-empty">No finished runs to chart yet.</p>')
    top = _nice_ceiling(max(finished))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(ordered)
    parts = [f'<svg id="duration-chart" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="Durations of the last {len(ordered)} runs" xmlns="http://www.w3.org/2000/svg" '
             'font-family="system-ui, sans-serif" font-size="11">']
    for step in range(GRID_LINES + 1):
        value = top * step / GRID_LINES
        y = TOP + plot_h - plot_h * step / GRID_LINES
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e1e6ec"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#6b7a8c">'
                     f'{escape(format_seconds(value))}</text>')
    for index, run in enumerate(ordered):
        seconds = duration(run)
        height = 0.0 if seconds is None else max(plot_h * seconds / top, 1.0)
        width = min(max(slot * 0.7, 1.0), MOST_BAR_WIDTH)
        x = LEFT + index * slot + (slot - width) / 2
        tooltip = (f"run {run.id} · {run.status} · {format_seconds(seconds)} · started "
                   f"{format_utc(run.started_at)} UTC")
        parts.append(f'<rect class="bar bar-{escape(run.status)}" x="{x:.1f}" y="{TOP + plot_h - height:.1f}" '
                     f'width="{width:.1f}" height="{height:.1f}" '
                     f'fill="{COLOURS.get(run.status, "#9aa5b1")}"><title>{escape(tooltip)}</title></rect>')
    parts.append(_time_axis(ordered[0].started_at, ordered[-1].started_at, plot_h))
    parts.append("</svg>")
    return Markup("".join(parts))


def _time_axis(first: datetime.datetime, last: datetime.datetime, plot_h: float) -> str:
    y = TOP + plot_h
    return (f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#8895a7"/>'
            f'<text x="{LEFT}" y="{y + 18:.1f}" fill="#6b7a8c">{escape(format_utc(first))}</text>'
            f'<text x="{WIDTH - RIGHT}" y="{y + 18:.1f}" text-anchor="end" fill="#6b7a8c">'
            f'{escape(format_utc(last))} UTC</text>')


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least ``value`` (a round top for the axis)."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude
