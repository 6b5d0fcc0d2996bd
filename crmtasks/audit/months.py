"""Calendar months in UTC: the unit of audit_log partitioning.

A ``Month`` is the only source of partition names and bounds: both are
computed from it (``audit_log_pYYYYMM``, ``[first instant, first instant of
the next month)`` in UTC), never taken from user input or from a table's name.
"""

from __future__ import annotations

import dataclasses
import datetime
import re

UTC = datetime.timezone.utc
PARENT_TABLE = "audit_log"
_MONTH_TEXT = re.compile(r"([0-9]{4})-([0-9]{2})")  # ASCII digits: \d would take "2026-0٥" as 2026-05


@dataclasses.dataclass(frozen=True, order=True)
class Month:
    """One calendar month, UTC.

    Parameters:
      year(int): 1..9999.
      month(int): 1..12.
    """

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 1 <= self.year <= 9999:
            raise ValueError(f"{self.year:04d}-{self.month:02d} is not a month")

    @classmethod
    def parse(cls, text: str) -> Month:
        """``YYYY-MM`` -> Month; ValueError with a one-line reason otherwise."""
        match = _MONTH_TEXT.fullmatch(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not a month written YYYY-MM")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, moment: datetime.datetime | datetime.date) -> Month:
        """The month containing ``moment`` (an aware datetime is converted to UTC; a date is taken as is)."""
        if isinstance(moment, datetime.datetime):
            if moment.tzinfo is None:
                raise ValueError("a naive datetime has no month in UTC; pass an aware one")
            moment = moment.astimezone(UTC)
        return cls(moment.year, moment.month)

    @classmethod
    def from_start(cls, start: datetime.datetime) -> Month | None:
        """The month whose first instant (UTC) is ``start``, or None if ``start`` is not such an instant."""
        start = start.astimezone(UTC)
        month = cls(start.year, start.month)
        return month if month.start == start else None

    def plus(self, months: int) -> Month:
        """The month ``months`` later (negative: earlier)."""
        index = self.year * 12 + (self.month - 1) + months
        return Month(index // 12, index % 12 + 1)

    @property
    def start(self) -> datetime.datetime:
        """First instant of the month, UTC (inclusive partition bound)."""
        return datetime.datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime.datetime:
        """First instant of the next month, UTC (exclusive partition bound)."""
        return self.plus(1).start

    @property
    def first_day(self) -> datetime.date:
        return datetime.date(self.year, self.month, 1)

    @property
    def partition_name(self) -> str:
        """``audit_log_pYYYYMM``: computed, so it is always a safe identifier (still quoted when used)."""
        return f"{PARENT_TABLE}_p{self.year:04d}{self.month:02d}"

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def current_month(now: datetime.datetime | None = None) -> Month:
    """The UTC month of ``now`` (default: the clock)."""
    return Month.of(now or datetime.datetime.now(UTC))
