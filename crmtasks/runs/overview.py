"""What an operator wants to know about each job, in one place for the CLI, the dashboard and checks.

Reads the registry, the schedules in force, pauses, the last runs and the
next fire times. Read-only.
"""

from __future__ import annotations

import dataclasses
import datetime

from croniter import CroniterBadDateError

from crmtasks.jobs import registry
from crmtasks.models import TaskRun
from crmtasks.pg import db
from crmtasks.runs.status import JobState, RunStatus
from crmtasks.scheduler import pauses
from crmtasks.scheduler.cron import ZonedCron
from crmtasks.scheduler.runtime import ScheduleInForce, schedules_in_force
from crmtasks.settings import Settings

UTC = datetime.timezone.utc


@dataclasses.dataclass
class JobOverview:
    """One job as an operator sees it.

    Parameters:
      task, actor, queue(str): From the registry.
      schedule(str): The cron expression in force, in ``zone``.
      zone(str): Its IANA zone (UTC unless an operator stored another).
      schedule_source(str): ``environment``, ``stored`` or ``default`` (crmtasks.scheduler.runtime.Source).
      next_runs(list[datetime]): The next three fire times (none for a schedule that never fires).
      state(JobState): ``active`` or ``paused``.
      pause_note(str|None): Why it is paused.
      last_status(str|None): Status of the latest run, a RunStatus value (running, succeeded, failed, skipped).
      last_started_at(datetime|None), last_duration_s(float|None): Of the latest finished or running run.
      last_success_at(datetime|None): When the latest successful run finished.
      last_error(str|None): The last line of the latest run's error.
      interval_s(float|None): Seconds between slots (used to judge "overdue"); None when the schedule never fires.
    """

    task: str
    actor: str
    queue: str
    schedule: str
    zone: str
    schedule_source: str
    time_limit_s: int
    overlap: str
    next_runs: list[datetime.datetime]
    state: JobState
    pause_note: str | None
    last_status: str | None
    last_started_at: datetime.datetime | None
    last_duration_s: float | None
    last_success_at: datetime.datetime | None
    last_error: str | None
    interval_s: float | None


def _upcoming(cron: ZonedCron, now: datetime.datetime) -> tuple[list[datetime.datetime], float | None]:
    """The next three slots and the interval around ``now``; ([], None) for a schedule that never fires.

    Settings refuse such a schedule (``0 0 31 2 *``), but a listing must
    still show the other jobs if one reaches it some other way.
    """
    try:
        return cron.next_slots(now, 3), cron.interval(now).total_seconds()
    except CroniterBadDateError:
        return [], None


def _parsed(schedule: ScheduleInForce) -> ZonedCron:
    """The schedule parsed; the default for a stored row no validation saw (written by hand), so listings work."""
    try:
        return schedule.parsed()
    except (ValueError, KeyError):
        return ZonedCron(schedule.default)


def job_overviews(settings: Settings, now: datetime.datetime | None = None) -> list[JobOverview]:
    now = now or datetime.datetime.now(UTC)
    paused = pauses.pauses()
    schedules = schedules_in_force(settings)
    overviews = []
    with db.connection():
        for spec in registry.JOBS:
            schedule: ScheduleInForce = schedules[spec.name]
            cron = _parsed(schedule)
            next_runs, interval_s = _upcoming(cron, now)
            last = TaskRun.select().where(TaskRun.task == spec.name).order_by(TaskRun.started_at.desc()).first()
            success = (TaskRun.select(TaskRun.finished_at)
                       .where((TaskRun.task == spec.name) & (TaskRun.status == RunStatus.SUCCEEDED))
                       .order_by(TaskRun.finished_at.desc()).first())
            duration = None
            if last is not None and last.finished_at is not None:
                duration = (last.finished_at - last.started_at).total_seconds()
            overviews.append(JobOverview(
                task=spec.name, actor=spec.actor_name, queue=spec.queue, schedule=cron.expression,
                zone=cron.zone_name, schedule_source=schedule.source,
                time_limit_s=spec.time_limit_s, overlap=spec.overlap, next_runs=next_runs,
                state=JobState.PAUSED if spec.name in paused else JobState.ACTIVE,
                pause_note=paused[spec.name].note if spec.name in paused else None,
                last_status=last.status if last else None, last_started_at=last.started_at if last else None,
                last_duration_s=duration, last_success_at=success.finished_at if success else None,
                # Scrubbed again on reading: a row written before errors were scrubbed may still hold a password.
                last_error=(settings.scrub(last.error.strip().splitlines()[-1]) if last and last.error else None),
                interval_s=interval_s,
            ))
    return overviews


def recent_runs(limit: int = 50, task: str | None = None) -> list[TaskRun]:
    """The latest runs, newest first."""
    with db.connection():
        query = TaskRun.select().order_by(TaskRun.started_at.desc(), TaskRun.id.desc()).limit(limit)
        if task:
            query = query.where(TaskRun.task == task)
        return list(query)
