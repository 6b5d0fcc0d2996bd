"""Cron schedules evaluated in UTC by croniter, in the shape periodiq expects.

periodiq's own CronSpec follows the host's local zone (a 02:30 job is
skipped on a spring-forward night and runs twice on fall-back) and never
fires a Sunday written as ``0``, ``sun`` or ``@weekly``. ``UtcCron`` keeps
periodiq's interface (``validate``, ``next_valid_date``) so periodiq's
scheduler loop and middleware still drive it, but answers with croniter, the
reference implementation of cron syntax, on UTC times.
"""

from __future__ import annotations

import datetime

import pendulum
from croniter import croniter
from periodiq import CronSpec

UTC = datetime.timezone.utc


def to_utc_minute(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` in UTC, truncated to the minute (a schedule slot)."""
    if moment.tzinfo is None:
        raise ValueError("schedule times must be timezone-aware")
    return datetime.datetime.fromtimestamp(int(moment.timestamp()) // 60 * 60, tz=UTC)


class UtcCron(CronSpec):
    """A cron expression matched against UTC time.

    Parameters:
      expression(str): 5 fields (minute hour day-of-month month day-of-week) or a nickname such as ``@daily``.
    """

    def __init__(self, expression: str) -> None:  # noqa: D107 - periodiq's fields are not used
        if not croniter.is_valid(expression):
            raise ValueError(f"{expression!r} is not a valid cron expression")
        self.expression = expression
        self.parsed_from = expression

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UtcCron) and other.expression == self.expression

    def __hash__(self) -> int:
        return hash(self.expression)

    def __str__(self) -> str:
        return f"{self.expression} (UTC)"

    def astuple(self):
        return (self.expression,)

    def validate(self, date: datetime.datetime) -> bool:
        """True when the minute of ``date`` is a slot of this schedule."""
        return croniter.match(self.expression, to_utc_minute(date))

    def next_valid_date(self, last: datetime.datetime) -> pendulum.DateTime:
        """The first slot strictly after ``last``'s minute (a pendulum time, as periodiq expects)."""
        return pendulum.instance(self.next_slot(last))

    def next_slot(self, after: datetime.datetime) -> datetime.datetime:
        return croniter(self.expression, to_utc_minute(after)).get_next(datetime.datetime)

    def slot_at_or_before(self, moment: datetime.datetime) -> datetime.datetime:
        """The latest slot not later than ``moment``."""
        minute = to_utc_minute(moment)
        if croniter.match(self.expression, minute):
            return minute
        return croniter(self.expression, minute).get_prev(datetime.datetime)

    def next_slots(self, after: datetime.datetime, count: int) -> list[datetime.datetime]:
        """The next ``count`` slots after ``after``."""
        iterator = croniter(self.expression, to_utc_minute(after))
        return [iterator.get_next(datetime.datetime) for _ in range(count)]

    def slots_between(self, start: datetime.datetime, end: datetime.datetime, limit: int) -> list[datetime.datetime]:
        """Slots in ``(start, end]``, at most ``limit`` of the latest ones."""
        slots = []
        iterator = croniter(self.expression, to_utc_minute(end) + datetime.timedelta(minutes=1))
        while len(slots) < limit:
            slot = iterator.get_prev(datetime.datetime)
            if slot <= start:
                break
            slots.append(slot)
        return slots[::-1]

    def interval(self, around: datetime.datetime) -> datetime.timedelta:
        """Time between the slot at or before ``around`` and the next one."""
        slot = self.slot_at_or_before(around)
        return self.next_slot(slot) - slot
