"""Decide whether a job's message should run at all: paused jobs and stale slots are skipped.

Replaces periodiq's middleware (and keeps its ``periodic`` actor option).
periodiq skips any scheduled message older than a fixed 30 s, which also
throws away the retries of a periodic job. Here a scheduled message is
stale only once the job's *next* slot has come (a newer message supersedes
it), so retries within the interval still run; a catch-up message may run
within the catch-up window. A paused job's messages are skipped, whoever
sent them. The job's name and schedule are its actor's options
(``job_name``, ``periodic``); an actor without ``job_name`` passes.

The guard fails closed: when the pause check cannot be made (PostgreSQL
fails inside it), the message is deferred, not run
(crmtasks.broker.middleware.fail_closed); when it comes back and the check
can be made, the slot is recorded as skipped with the reason, or runs. A
message whose slot cannot be read fails with JobNotStarted.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pendulum
from dramatiq.middleware import SkipMessage
from periodiq import PeriodiqMiddleware

from crmtasks.broker.actors import CATCH_UP_OPTION, SLOT_OPTION
from crmtasks.broker.middleware.fail_closed import (
    SKIP_REASON_OPTION,
    JobNotStarted,
    defer,
)
from crmtasks.broker.options import JOB_NAME_OPTION, job_options
from crmtasks.runs.status import SkipReason
from crmtasks.scheduler import pauses
from crmtasks.scheduler.cron import to_utc_minute
from crmtasks.settings import Settings

# A scheduled message may start this long after its next slot came (clock skew, a busy queue).
GRACE = datetime.timedelta(seconds=30)


def message_slot(message) -> datetime.datetime | None:
    """The UTC slot a scheduled message is for, or None for a message nobody scheduled."""
    if SLOT_OPTION in message.options:
        return datetime.datetime.fromisoformat(message.options[SLOT_OPTION])
    if "scheduled_at" in message.options:
        return to_utc_minute(pendulum.parse(message.options["scheduled_at"]))
    return None


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class ScheduleGuard(PeriodiqMiddleware):
    """Parameters:
      settings(Settings): The catch-up window. The schedule in force is the
        actor's ``periodic`` option: a LiveSchedule that follows the stored
        schedule (crmtasks.scheduler.live), so a changed schedule decides staleness too.
      clock(Callable[[], datetime]): The present, timezone-aware; the system clock unless a test drives it
        (the ``clock`` attribute may be replaced on a running broker's guard).
    """

    def __init__(self, settings: Settings, clock: Callable[[], datetime.datetime] = utc_now) -> None:
        super().__init__(skip_delay=None)
        self.settings = settings
        self.clock = clock

    @property
    def actor_options(self) -> set[str]:
        return super().actor_options | {JOB_NAME_OPTION}  # periodiq's ``periodic``, and the job

    def before_process_message(self, broker, message):
        options = job_options(broker, message)
        if options is None:
            return
        name = options[JOB_NAME_OPTION]
        try:
            paused = pauses.is_paused(name)
        except Exception as error:  # noqa: BLE001
            # Dramatiq would log this and run the job: a paused job would run.
            defer(broker, message, job=name, what="the pause check", error=error)
        if paused:
            self._skip(message, SkipReason.PAUSED, f"{name} is paused")
        try:
            stale = self._is_stale(message, options)
        except Exception as error:
            # A malformed slot will not read better later: fail the message.
            raise JobNotStarted(f"{name} not started: its slot could not be read ({error})") from error
        if stale is not None:
            self._skip(message, SkipReason.STALE, f"{name} slot {stale.isoformat()} is stale")

    def _is_stale(self, message, options) -> datetime.datetime | None:
        """The message's slot when it is stale (its next slot came, or the catch-up window ended), else None."""
        slot = message_slot(message)
        if slot is None:
            return None
        now = self.clock()
        if message.options.get(CATCH_UP_OPTION):
            deadline = slot + datetime.timedelta(seconds=self.settings.catch_up_s) + GRACE
        else:
            deadline = options["periodic"].next_slot(slot) + GRACE
        return slot if now > deadline else None

    @staticmethod
    def _skip(message, reason: SkipReason, text: str):
        message.options[SKIP_REASON_OPTION] = reason
        raise SkipMessage(text)
