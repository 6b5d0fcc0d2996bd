"""Cron schedules in a job's own IANA time zone (UTC by default), in the shape periodiq expects.

periodiq's own CronSpec follows the host's local zone (a 02:30 job is
skipped on a spring-forward night and runs twice on fall-back) and never
fires a Sunday written as ``0``, ``sun`` or ``@weekly``. ``ZonedCron`` keeps
periodiq's interface (``validate``, ``next_valid_date``) so periodiq's
scheduler loop and middleware still drive it, but matches the expression
with croniter, the reference implementation of cron syntax, against the
wall clock of the job's zone (``zoneinfo``). A slot is always a UTC minute.

What a zone's DST nights do (the rule of Vixie cron, which most crons follow):

- A schedule whose hour field is ``*`` (every minute, every 5 minutes,
  hourly) follows elapsed time: it fires at every real minute whose wall
  clock matches, so through both passes of a repeated hour, and a skipped
  hour's minutes simply do not exist.
- Any other schedule (a fixed hour: ``30 2 * * *``, ``0 */6 * * *``,
  ``@daily``) fires once per matching wall-clock time: on a spring-forward
  night a time inside the skipped gap fires once, at the first valid
  minute after the gap (02:30 in New York on 8 March 2026 runs at 03:00
  EDT); on a fall-back night a repeated time fires once, at its first pass
  (01:30 in New York on 1 November 2026 runs at 01:30 EDT, not again at
  01:30 EST). Several gap times of one schedule make that one run.

In UTC, which has no DST, both rules are plain cron.
"""

from __future__ import annotations

import datetime
import heapq
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pendulum
from croniter import croniter
from periodiq import CronSpec

UTC = datetime.timezone.utc
MINUTE = datetime.timedelta(minutes=1)
# Wider than any DST shift (two hours at most, anywhere): a wall time this far
# from a slot's own cannot map to an instant on the other side of it.
_SHIFT_MARGIN = datetime.timedelta(hours=3)
# The hour field of the nicknames croniter accepts.
_NICKNAME_HOURS = {"@hourly": "*", "@daily": "0", "@midnight": "0", "@weekly": "0", "@monthly": "0",
                   "@yearly": "0", "@annually": "0"}


def to_utc_minute(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` in UTC, truncated to the minute (a schedule slot)."""
    if moment.tzinfo is None:
        raise ValueError("schedule times must be timezone-aware")
    return datetime.datetime.fromtimestamp(int(moment.timestamp()) // 60 * 60, tz=UTC)


def hour_field(expression: str) -> str:
    """The hour field of a 5-field expression or a nickname."""
    stripped = expression.strip()
    if stripped in _NICKNAME_HOURS:
        return _NICKNAME_HOURS[stripped]
    fields = stripped.split()
    return fields[1] if len(fields) == 5 else ""


class ZonedCron(CronSpec):
    """A cron expression matched against the wall clock of an IANA zone; its slots are UTC minutes.

    Parameters:
      expression(str): 5 fields (minute hour day-of-month month day-of-week) or a nickname such as ``@daily``.
      zone(str): IANA zone name (``Europe/Berlin``); ``UTC`` by default. Unknown names raise
        ``zoneinfo.ZoneInfoNotFoundError`` (a KeyError), malformed ones ValueError.
    """

    def __init__(self, expression: str, zone: str = "UTC") -> None:
        if not croniter.is_valid(expression):
            raise ValueError(f"{expression!r} is not a valid cron expression")
        self.expression = expression
        self.parsed_from = expression
        self.zone_name = zone
        self.zone = ZoneInfo(zone)
        self._utc = zone == "UTC"
        # See the module docstring: ``*`` hours follow elapsed time, others the wall clock.
        self.every_hour = hour_field(expression) == "*"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZonedCron) and (other.expression, other.zone_name) == (self.expression, self.zone_name)

    def __hash__(self) -> int:
        return hash((self.expression, self.zone_name))

    def __str__(self) -> str:
        return f"{self.expression} ({self.zone_name})"

    def astuple(self):
        return (self.expression, self.zone_name)

    def validate(self, date: datetime.datetime) -> bool:
        """True when the minute of ``date`` is a slot of this schedule."""
        minute = to_utc_minute(date)
        if self._utc:
            return croniter.match(self.expression, minute)
        local = minute.astimezone(self.zone)
        wall = local.replace(tzinfo=None)
        if self.every_hour:
            return croniter.match(self.expression, wall)
        if local.fold:  # the second pass of a repeated wall time: it fired at the first
            return False
        if croniter.match(self.expression, wall):
            return True
        before = self._wall(minute - MINUTE)
        if wall - before > MINUTE:  # the first minute after a spring-forward gap: the gap's times fire here
            return self._matches_in(before + MINUTE, wall)
        return False

    def next_valid_date(self, last: datetime.datetime) -> pendulum.DateTime:
        """The first slot strictly after ``last``'s minute (a pendulum time, as periodiq expects)."""
        return pendulum.instance(self.next_slot(last))

    def next_slot(self, after: datetime.datetime) -> datetime.datetime:
        """The first slot strictly after ``after``'s minute."""
        if self._utc:
            return croniter(self.expression, to_utc_minute(after)).get_next(datetime.datetime)
        return next(self._walk(after, forward=True))

    def slot_at_or_before(self, moment: datetime.datetime) -> datetime.datetime:
        """The latest slot not later than ``moment``."""
        minute = to_utc_minute(moment)
        if not self._utc:
            return next(self._walk(minute, forward=False))
        if croniter.match(self.expression, minute):
            return minute
        return croniter(self.expression, minute).get_prev(datetime.datetime)

    def next_slots(self, after: datetime.datetime, count: int) -> list[datetime.datetime]:
        """The next ``count`` slots after ``after``."""
        if self._utc:
            iterator = croniter(self.expression, to_utc_minute(after))
            return [iterator.get_next(datetime.datetime) for _ in range(count)]
        walk = self._walk(after, forward=True)
        return [next(walk) for _ in range(count)]

    def slots_between(self, start: datetime.datetime, end: datetime.datetime, limit: int) -> list[datetime.datetime]:
        """Slots in ``(start, end]``, at most ``limit`` of the latest ones."""
        slots = []
        for slot in self._walk(end, forward=False):
            if slot <= start or len(slots) >= limit:
                break
            slots.append(slot)
        return slots[::-1]

    def interval(self, around: datetime.datetime) -> datetime.timedelta:
        """Time between the slot at or before ``around`` and the next one."""
        slot = self.slot_at_or_before(around)
        return self.next_slot(slot) - slot

    # --- wall clock to slots ------------------------------------------------

    def _wall(self, instant: datetime.datetime) -> datetime.datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def _matches_in(self, first: datetime.datetime, end: datetime.datetime) -> bool:
        """Whether a wall time in ``[first, end)`` matches (the minutes of a gap)."""
        if croniter.match(self.expression, first):
            return True
        return croniter(self.expression, first).get_next(datetime.datetime) < end

    def _instants(self, wall: datetime.datetime) -> list[datetime.datetime]:
        """The slots (UTC minutes) a matching wall time makes, per the DST rules of the module docstring."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if self._wall(first) != wall:  # in a spring-forward gap: no such wall time today
            return [] if self.every_hour else [self._end_of_gap(min(first, second), wall)]
        if first != second and self.every_hour:  # a repeated wall time: both passes
            return [first, second]
        return [first]

    def _end_of_gap(self, low: datetime.datetime, wall: datetime.datetime) -> datetime.datetime:
        """The first UTC minute after ``low`` whose wall time is past ``wall`` (which lies in a gap)."""
        low_minute, high_minute = int(low.timestamp()) // 60, int(low.timestamp()) // 60 + 4 * 60
        while low_minute < high_minute:
            middle = (low_minute + high_minute) // 2
            if self._wall(datetime.datetime.fromtimestamp(middle * 60, tz=UTC)) > wall:
                high_minute = middle
            else:
                low_minute = middle + 1
        return datetime.datetime.fromtimestamp(low_minute * 60, tz=UTC)

    def _walk(self, edge: datetime.datetime, *, forward: bool) -> Iterator[datetime.datetime]:
        """Slots strictly after ``edge``'s minute (forward) or at or before it (backward), in order.

        Walks the matching wall times with croniter from a margin before the
        edge and maps each to its slots; a slot is given out once no later
        wall time can map to an instant on its near side. Raises croniter's
        CroniterBadDateError when the schedule has no (further) slot.
        """
        edge = to_utc_minute(edge)
        start = self._wall(edge - _SHIFT_MARGIN if forward else edge + _SHIFT_MARGIN + MINUTE)
        walls = croniter(self.expression, start)
        step = walls.get_next if forward else walls.get_prev
        pending: list[tuple[float, datetime.datetime, datetime.datetime]] = []
        last = None
        while True:
            wall = step(datetime.datetime)
            while pending and abs(wall - pending[0][1]) > _SHIFT_MARGIN:
                _, _, slot = heapq.heappop(pending)
                if slot != last:
                    last = slot
                    yield slot
            for slot in self._instants(wall):
                if (slot > edge) if forward else (slot <= edge):
                    key = slot.timestamp() if forward else -slot.timestamp()
                    heapq.heappush(pending, (key, wall, slot))


class UtcCron(ZonedCron):
    """A cron expression matched against UTC time (``ZonedCron`` in UTC).

    Parameters:
      expression(str): 5 fields (minute hour day-of-month month day-of-week) or a nickname such as ``@daily``.
    """

    def __init__(self, expression: str) -> None:
        super().__init__(expression, "UTC")
