"""Server-side HTML: the jinja2 templates of our pages (Flask renders them) and the filters they use.

Autoescaping is on for every template, so job names, notes, stats and
error texts from the database are always shown as text, never as markup.
A name a template does not know is an error, not an empty string.
"""

from __future__ import annotations

import datetime
import json

import flask
import jinja2

UTC = datetime.timezone.utc


def configure_templates(app: flask.Flask) -> None:
    """Make ``app`` render our templates strictly, with the filters below.

    Parameters:
      app(Flask): The dashboard app.
    """
    app.jinja_env.autoescape = True
    app.jinja_env.undefined = jinja2.StrictUndefined
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.jinja_env.filters.update(utc=format_utc, seconds=format_seconds, compact_json=compact_json,
                                 error_headline=error_headline, stat_value=format_stat_value,
                                 stat_label=format_stat_label)


def render_page(template: str, status: int, **context) -> flask.Response:
    """One of our templates as a response with ``status`` (the context processor adds visitor, nav, login state).

    Parameters:
      template(str): A file of ``crmtasks/web/templates``.
      status(int): The HTTP status.
      context: The template's variables.
    """
    return flask.make_response(flask.render_template(template, **context), status)


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


def format_stat_label(name: object) -> str:
    """A stats key for people: ``rows_written`` -> ``rows written``."""
    return str(name).replace("_", " ")


def format_stat_value(value: object) -> str:
    """A stats value for people: numbers with thousands separators, lists joined, nested objects as compact JSON."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if 1000 <= abs(value) < 1e15 else f"{value:.4g}"
    if isinstance(value, list) and all(isinstance(item, (str, int, float)) for item in value):
        return ", ".join(str(item) for item in value) if value else "none"
    if isinstance(value, (dict, list)):
        return compact_json(value)
    return str(value)
