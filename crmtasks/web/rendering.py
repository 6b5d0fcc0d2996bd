"""Server-side HTML: the jinja2 templates of our pages and the filters they use.

Autoescaping is on for every template, so job names, notes, stats and
error texts from the database are always shown as text, never as markup.
"""

from __future__ import annotations

import datetime
import json

import jinja2

UTC = datetime.timezone.utc


def make_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("crmtasks.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(utc=format_utc, seconds=format_seconds, compact_json=compact_json,
                               error_headline=error_headline)
    return environment


def format_utc(moment: datetime.datetime | None) -> str:
    """``2026-11-29 05:23:43`` in UTC, or an em dash when there is no time."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_seconds(seconds: float | None) -> str:
    """A duration for people: ``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def compact_json(value: object) -> str:
    """``value`` as one line of JSON with sorted keys (``{}`` for nothing)."""
    return json.dumps(value if value is not None else {}, separators=(",", ":"), sort_keys=True, default=str,
                      ensure_ascii=False)


def error_headline(error: str | None) -> str:
    """The line of an error text worth reading first: a traceback's last line (the exception), else the first."""
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1].strip() if lines[0].startswith("Traceback") else lines[0].strip()
