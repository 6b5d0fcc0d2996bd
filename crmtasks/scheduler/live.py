"""The schedule a running process follows, re-read from PostgreSQL: no restart after ``crmtasks schedule set``.

Each job's actor carries a ``LiveSchedule`` as periodiq's ``periodic``
option. It tells periodiq to wake at every minute boundary and, at each
wake-up, answers from the schedule in force as the process's
``ScheduleBook`` read it from ``job_schedules`` (one small query per
``max_age_s``, shared by every job), so every running scheduler follows a
change from the first minute after it, and workers judge a message's
staleness by the same schedule. Which slot gets enqueued once across
schedulers is still decided by the slot claim (crmtasks.scheduler.slots).

When the database cannot be read, the book keeps the schedules it read
last (before the first read: the defaults and environment overrides) and
logs a warning; slots cannot be claimed without the database anyway.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time

import pendulum
from periodiq import CronSpec

from crmtasks.scheduler import runtime
from crmtasks.scheduler.cron import MINUTE, ZonedCron, to_utc_minute
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)
# Seconds a read of job_schedules is reused: one read serves every job of a scheduler's tick.
DEFAULT_MAX_AGE_S = 5.0


class ScheduleBook:
    """The schedules in force in one process, read from the database at most every ``max_age_s`` seconds.

    Parameters:
      settings(Settings): The process's settings (environment overrides, defaults).
      max_age_s(float): Seconds a read is reused before the next call reads again.
      clock(callable): Monotonic seconds (tests pass their own).
    """

    def __init__(self, settings: Settings, max_age_s: float = DEFAULT_MAX_AGE_S, clock=time.monotonic) -> None:
        self.settings = settings
        self.max_age_s = max_age_s
        self.clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._stored: dict[str, runtime.StoredSchedule] = {}
        self._parsed: dict[tuple[str, str], ZonedCron] = {}

    def in_force(self, task: str) -> runtime.ScheduleInForce:
        """``task``'s schedule in force, reading the table again when the last read is older than ``max_age_s``."""
        with self._lock:
            now = self.clock()
            if self._read_at is None or now - self._read_at >= self.max_age_s:
                self._refresh(now)
            return runtime.in_force(self.settings, task, self._stored.get(task))

    def cron(self, task: str) -> ZonedCron:
        """``task``'s schedule in force, parsed (parses are kept)."""
        schedule = self.in_force(task)
        key = (schedule.cron, schedule.zone)
        if key not in self._parsed:
            try:
                self._parsed[key] = schedule.parsed()
            except (ValueError, KeyError) as error:  # a row written around the validation: keep the default
                logger.error("%s: stored schedule %s (%s) is unusable (%s); following %s (UTC)", task,
                             schedule.cron, schedule.zone, error, self.settings.schedule(task))
                self._parsed[key] = ZonedCron(self.settings.schedule(task))
        return self._parsed[key]

    def _refresh(self, now: float) -> None:
        try:
            stored = runtime.stored_schedules()
        except Exception as error:
            logger.warning("schedules not re-read from the database (%s); keeping the last ones read", error)
            self._read_at = now
            return
        if self._read_at is not None:
            for task in sorted(_changed(self._stored, stored)):
                now_in_force = runtime.in_force(self.settings, task, stored.get(task))
                logger.info("%s: now following %s (%s) from %s", task, now_in_force.cron, now_in_force.zone,
                            now_in_force.source)
        self._stored, self._read_at = stored, now


def _changed(before: dict[str, runtime.StoredSchedule], after: dict[str, runtime.StoredSchedule]) -> set[str]:
    def schedule(rows, task):
        return (rows[task].cron, rows[task].zone) if task in rows else None
    return {task for task in before.keys() | after.keys() if schedule(before, task) != schedule(after, task)}


class LiveSchedule(CronSpec):
    """The ``periodic`` option of a job's actor: the job's schedule in force, as its ScheduleBook reads it.

    Parameters:
      task(str): The job's CLI name.
      book(ScheduleBook): The process's book.
    """

    def __init__(self, task: str, book: ScheduleBook) -> None:
        self.task = task
        self.book = book

    def current(self) -> ZonedCron:
        return self.book.cron(self.task)

    def __str__(self) -> str:
        return str(self.current())  # periodiq's start-up table: the schedule in force then

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LiveSchedule) and (other.task, other.book) == (self.task, self.book)

    def __hash__(self) -> int:
        return hash((self.task, id(self.book)))

    def astuple(self):
        return (self.task,)

    def validate(self, date: datetime.datetime) -> bool:
        return self.current().validate(date)

    def next_valid_date(self, last: datetime.datetime) -> pendulum.DateTime:
        """The next minute boundary: periodiq wakes each minute and asks ``validate`` with the schedule read then."""
        return pendulum.instance(to_utc_minute(last) + MINUTE)

    def next_slot(self, after: datetime.datetime) -> datetime.datetime:
        return self.current().next_slot(after)

    def next_slots(self, after: datetime.datetime, count: int) -> list[datetime.datetime]:
        return self.current().next_slots(after, count)

    def slot_at_or_before(self, moment: datetime.datetime) -> datetime.datetime:
        return self.current().slot_at_or_before(moment)

    def slots_between(self, start: datetime.datetime, end: datetime.datetime, limit: int) -> list[datetime.datetime]:
        return self.current().slots_between(start, end, limit)

    def interval(self, around: datetime.datetime) -> datetime.timedelta:
        return self.current().interval(around)
