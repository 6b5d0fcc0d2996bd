"""The values a run's status and trigger, a slot's state, a skip's reason and a job's state can take.

They are ``str`` enums so that nothing outside Python changes: a member is
equal to its string (``RunStatus.FAILED == "failed"``), is written to
PostgreSQL as that string (the CHECK constraints of ``task_runs`` and
``schedule_slots`` list the same values), and prints, formats and
serialises to JSON as it. Rows read back from the database hold plain
strings, which compare equal to the members.
"""

from __future__ import annotations

import enum


class _StoredValue(str, enum.Enum):
    """A ``str`` enum whose members print and format as their value.

    Why: since Python 3.11 a ``(str, Enum)`` member formats as
    ``RunStatus.FAILED`` in f-strings and ``str()``; these values end up in
    messages, tables, Prometheus labels and templates, where the stored
    string is what belongs.
    """

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)


class RunStatus(_StoredValue):
    """How a run in ``task_runs`` stands.

    Members:
      RUNNING: Started and not finished (or its worker died; it is marked failed when the message comes back).
      SUCCEEDED: The job returned; its stats are stored.
      FAILED: The job raised (the error and traceback are stored), or its worker died.
      SKIPPED: The job did not run; ``stats.skip_reason`` says why (a SkipReason).
    """

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class Trigger(_StoredValue):
    """Who started a run in ``task_runs``.

    Members:
      SCHEDULE: The scheduler sent it for a schedule slot.
      MANUAL: Someone ran or enqueued it now (``crmtasks run``, the dashboard).
      RETRY: Dramatiq retried it after a transient fault.
    """

    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"


class SlotState(_StoredValue):
    """What became of a schedule slot in ``schedule_slots``.

    Members:
      ENQUEUED: A scheduler claimed the slot and sent its message; no worker has finished with it yet.
      RAN: A worker ran the slot's message (whatever the outcome: the run says).
      SKIPPED: The slot did not run; its ``reason`` (a SkipReason) says why.
    """

    ENQUEUED = "enqueued"
    RAN = "ran"
    SKIPPED = "skipped"


class SkipReason(_StoredValue):
    """Why a job's message or slot did not run (``task_runs.stats.skip_reason``, ``schedule_slots.reason``).

    Members:
      OVERLAP: The job was already running (overlap policy ``skip``, or ``queue_one`` with one waiting already).
      QUEUED: ``queue_one``: re-queued to wait for the running one; not recorded, as it will run.
      DEFERRED: A check the job must pass could not be made (PostgreSQL failed inside it); the message
        was put back to be decided later, when its outcome is recorded. Never recorded itself.
      PAUSED: The job is paused.
      STALE: A scheduled message whose job's next slot had already come.
      MISSED: A slot that passed while no scheduler ran (``schedule_slots`` only).
    """

    OVERLAP = "overlap"
    QUEUED = "queued"
    DEFERRED = "deferred"
    PAUSED = "paused"
    STALE = "stale"
    MISSED = "missed"


class JobState(_StoredValue):
    """Whether a job's slots are enqueued and its messages run (``crmtasks pause`` / ``resume``).

    Members:
      ACTIVE: Its slots are enqueued and its messages run.
      PAUSED: Schedulers record its slots as skipped and workers skip its messages.
    """

    ACTIVE = "active"
    PAUSED = "paused"


#: ``schedule_slots.reason`` of a slot a starting scheduler caught up (kept when it runs; a skip sets its SkipReason).
CATCH_UP_REASON = "catch_up"
