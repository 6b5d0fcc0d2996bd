"""Calendar periods of the reports: grains, labels, date bounds and their validation.

Aggregates are kept per calendar month (UTC for timestamps) and rolled up to
quarters and years, so a date range can only be answered exactly when it
covers whole periods of the report's grain: ``date_from`` must be the first
day of a period and ``date_to`` the last day of one. Anything else is
refused with one line saying what would work, rather than silently widened.
"""

from __future__ import annotations

import datetime
import re

from crmtasks.reports.errors import ReportError

GRAINS = ("month", "quarter", "year")

_BOUND_FORMATS = "YYYY-MM-DD, YYYY-MM, YYYY-Qn or YYYY"
# ASCII digits only: \d would also match "٢٠٢٤", which int() reads as 2024.
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_QUARTER = re.compile(r"([0-9]{4})-[Qq]([1-4])")
_YEAR = re.compile(r"([0-9]{4})")


def check_grain(grain: str) -> str:
    if grain not in GRAINS:
        raise ReportError(f"grain {grain!r} is not one of {', '.join(GRAINS)}")
    return grain


def period_start(day: datetime.date, grain: str) -> datetime.date:
    """The first day of the period of ``grain`` containing ``day``."""
    if grain == "month":
        return day.replace(day=1)
    if grain == "quarter":
        return datetime.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    return datetime.date(day.year, 1, 1)


def period_end(day: datetime.date, grain: str) -> datetime.date:
    """The last day of the period of ``grain`` containing ``day``."""
    start = period_start(day, grain)
    months = {"month": 1, "quarter": 3, "year": 12}[grain]
    month_index = start.month - 1 + months
    if start.year + month_index // 12 > datetime.MAXYEAR:
        return datetime.date.max  # 9999-12-31 ends every period of the last year (no next period to step back from)
    next_start = datetime.date(start.year + month_index // 12, month_index % 12 + 1, 1)
    return next_start - datetime.timedelta(days=1)


def label(start: datetime.date, grain: str) -> str:
    """``2024-03``, ``2024-Q1`` or ``2024``."""
    if grain == "month":
        return f"{start.year:04d}-{start.month:02d}"
    if grain == "quarter":
        return f"{start.year:04d}-Q{(start.month - 1) // 3 + 1}"
    return f"{start.year:04d}"


def parse_bound(text: str, *, end: bool, option: str = "date") -> datetime.date:
    """Parse a range bound: ``YYYY-MM-DD``, or a whole ``YYYY-MM``, ``YYYY-Qn`` or ``YYYY``.

    A whole month, quarter or year stands for its first day when ``end`` is
    false (``--from``) and for its last day when true (``--to``).
    """
    value = text.strip()
    try:
        if match := _MONTH.fullmatch(value):
            day, grain = datetime.date(int(match.group(1)), int(match.group(2)), 1), "month"
        elif match := _QUARTER.fullmatch(value):
            day, grain = datetime.date(int(match.group(1)), 3 * int(match.group(2)) - 2, 1), "quarter"
        elif match := _YEAR.fullmatch(value):
            day, grain = datetime.date(int(match.group(1)), 1, 1), "year"
        else:
            return datetime.date.fromisoformat(value)
    except ValueError:
        raise ReportError(f"{option} {text!r} is not a date (use {_BOUND_FORMATS})") from None
    return period_end(day, grain) if end else day


def check_range(date_from: datetime.date | None, date_to: datetime.date | None, grain: str) -> None:
    """Refuse a range that is reversed or does not cover whole periods of ``grain``."""
    for value, name in ((date_from, "from"), (date_to, "to")):
        if value is not None and (isinstance(value, datetime.datetime) or not isinstance(value, datetime.date)):
            raise ReportError(f"date_{name} must be a date, not {type(value).__name__}")
    if date_from is not None and date_from != period_start(date_from, grain):
        start = period_start(date_from, grain)
        raise ReportError(f"--from {date_from} does not start a {grain}: aggregates answer whole {grain}s "
                          f"(try {start} or {label(start, grain)})")
    if date_to is not None and date_to != period_end(date_to, grain):
        end = period_end(date_to, grain)
        raise ReportError(f"--to {date_to} does not end a {grain}: aggregates answer whole {grain}s "
                          f"(try {end} or {label(period_start(date_to, grain), grain)})")
    if date_from is not None and date_to is not None and date_from > date_to:
        raise ReportError(f"--from {date_from} is after --to {date_to}")
