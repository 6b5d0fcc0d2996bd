"""Schedules edited at runtime: stored in PostgreSQL, validated, and which one is in force.

An operator sets a job's schedule (``crmtasks schedule set``, the
dashboard's form): a cron expression and an IANA zone, kept in
``job_schedules`` so every scheduler and worker on every host reads the
same one; ``reset`` deletes the row and the registry's default is back.
Which schedule a process follows, first match wins:

1. ``CRMTASKS_SCHEDULE_<TASK>`` in that process's environment (in UTC): the
   deployment's word, so an operator cannot undo it from the dashboard;
2. the stored schedule;
3. the registry's default (in UTC).

Writes are one statement each (an upsert or a delete) in one transaction
with their operator trail row (``record_schedule_change``, the one call
into crmtasks.runs.trail): atomic, idempotent, safe to kill and re-run.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import zoneinfo

from crmtasks.errors import CrmtasksError
from crmtasks.jobs import registry
from crmtasks.models import JobSchedule
from crmtasks.pg import db
from crmtasks.pg.db import database
from crmtasks.runs.trail import (
    Operator,
    OperatorAction,
    record_operator_action,
    started_by,
)
from crmtasks.scheduler.cron import ZonedCron
from crmtasks.settings import Settings, cron_problem
from crmtasks.user_text import check_text

logger = logging.getLogger(__name__)
UTC = datetime.timezone.utc
# Fire times shown before a schedule is saved.
PREVIEW_COUNT = 5
# Longest cron expression and zone name accepted (the table's CHECKs say the same).
MAX_CRON_LENGTH = 200
MAX_ZONE_LENGTH = 64


class ScheduleError(CrmtasksError, ValueError):
    """A schedule that cannot be stored: unknown job, bad cron expression or unknown zone (one line)."""


class Source:
    """Where the schedule in force comes from."""

    ENVIRONMENT = "environment"
    STORED = "stored"
    DEFAULT = "default"


@dataclasses.dataclass(frozen=True)
class StoredSchedule:
    """A row of ``job_schedules``.

    Parameters:
      task(str): The job's CLI name.
      cron(str): The cron expression, in ``zone``.
      zone(str): IANA zone name.
      changed_at(datetime): When it was set (UTC).
      changed_by(str): Who set it, through what (``ops (dashboard)``, ``root@host (cli)``).
    """

    task: str
    cron: str
    zone: str
    changed_at: datetime.datetime
    changed_by: str


@dataclasses.dataclass(frozen=True)
class ScheduleInForce:
    """The schedule a process follows for one job, and what else there is.

    Parameters:
      task(str): The job's CLI name.
      cron(str): The expression in force.
      zone(str): Its zone (UTC for an environment override or the default).
      source(str): A ``Source`` value.
      default(str): The registry's default (UTC).
      stored(StoredSchedule|None): The stored schedule, even when an override wins over it.
      override_variable(str): The environment variable that would override it.
    """

    task: str
    cron: str
    zone: str
    source: str
    default: str
    stored: StoredSchedule | None
    override_variable: str

    @property
    def overridden(self) -> bool:
        return self.source == Source.ENVIRONMENT

    def parsed(self) -> ZonedCron:
        return ZonedCron(self.cron, self.zone)


def schedule_label(cron: str, zone: str, source: str) -> str:
    """``cron (zone)``, and where it comes from unless it is the default: how listings show a schedule."""
    return f"{cron} ({zone})" + ("" if source == Source.DEFAULT else f" [{source}]")


def override_variable(task: str) -> str:
    return f"CRMTASKS_SCHEDULE_{task.upper()}"


def job_name(name: str) -> str:
    """The CLI name of job ``name`` (CLI or actor name); ScheduleError naming the valid ones otherwise."""
    spec = registry.find(name)
    if spec is None:
        shown = name if len(name) <= 60 else name[:60] + "…"
        raise ScheduleError(f"unknown job {shown!r}; valid jobs: {', '.join(registry.names()) or '(none registered)'}")
    return spec.name


def parse_schedule(expression: str, zone: str = "UTC") -> ZonedCron:
    """``expression`` in ``zone`` as a ZonedCron; ScheduleError with one line saying what is wrong otherwise."""
    for value, what, longest in ((expression, "the cron expression", MAX_CRON_LENGTH),
                                 (zone, "the time zone", MAX_ZONE_LENGTH)):
        try:
            check_text(value, what)
        except ValueError as error:
            raise ScheduleError(str(error)) from None
        if len(value) > longest:
            raise ScheduleError(f"{what} is longer than {longest} characters")
    expression = " ".join(expression.split())
    problem = cron_problem(expression)
    if problem:
        raise ScheduleError(problem)
    try:
        return ZonedCron(expression, zone.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"{zone!r} is not an IANA time zone (such as UTC, Europe/Berlin, America/New_York)") from None


def preview(cron: ZonedCron, now: datetime.datetime | None = None, count: int = PREVIEW_COUNT) -> list[datetime.datetime]:
    """The next ``count`` fire times of ``cron`` after ``now`` (UTC; convert to ``cron.zone`` to show local times)."""
    return cron.next_slots(now or datetime.datetime.now(UTC), count)


def stored_schedules() -> dict[str, StoredSchedule]:
    """Every stored schedule, by job name (a database error propagates)."""
    with db.connection():
        return {row.task: StoredSchedule(row.task, row.cron, row.zone, row.changed_at, row.changed_by)
                for row in JobSchedule.select()}


def in_force(settings: Settings, task: str, stored: StoredSchedule | None) -> ScheduleInForce:
    """Which schedule ``task`` follows in a process with ``settings``, given what is stored (module docstring)."""
    default = registry.get(task).cron
    base = {"task": task, "default": default, "stored": stored, "override_variable": override_variable(task)}
    if task in settings.schedule_overrides:
        return ScheduleInForce(cron=settings.schedule(task), zone="UTC", source=Source.ENVIRONMENT, **base)
    if stored is not None:
        return ScheduleInForce(cron=stored.cron, zone=stored.zone, source=Source.STORED, **base)
    return ScheduleInForce(cron=settings.schedule(task), zone="UTC", source=Source.DEFAULT, **base)


def schedules_in_force(settings: Settings) -> dict[str, ScheduleInForce]:
    """Every registered job's schedule in force, read from the database now."""
    stored = stored_schedules()
    return {spec.name: in_force(settings, spec.name, stored.get(spec.name)) for spec in registry.JOBS}


def set_schedule(task: str, expression: str, zone: str = "UTC", *, operator: Operator) -> StoredSchedule:
    """Validate and store ``task``'s schedule (upsert: idempotent); returns what was stored.

    Parameters:
      task(str): The job (CLI or actor name).
      expression(str): Cron expression, in ``zone``.
      zone(str): IANA zone name.
      operator(Operator): Who sets it, through what, from where: for the row and the operator trail.
    """
    task = job_name(task)
    cron = parse_schedule(expression, zone)
    now = datetime.datetime.now(UTC)
    who = started_by(operator)
    with db.connection(), database.atomic():
        before = JobSchedule.get_or_none(JobSchedule.task == task)
        (JobSchedule.insert(task=task, cron=cron.expression, zone=cron.zone_name, changed_at=now, changed_by=who)
         .on_conflict(conflict_target=[JobSchedule.task],
                      update={JobSchedule.cron: cron.expression, JobSchedule.zone: cron.zone_name,
                              JobSchedule.changed_at: now, JobSchedule.changed_by: who}).execute())
        stored = StoredSchedule(task, cron.expression, cron.zone_name, now, who)
        record_schedule_change(OperatorAction.SCHEDULE_SET, task, before, stored, operator)
    return stored


def reset_schedule(task: str, *, operator: Operator) -> bool:
    """Delete ``task``'s stored schedule (back to the default); False when none was stored (nothing recorded)."""
    task = job_name(task)
    with db.connection(), database.atomic():
        before = JobSchedule.get_or_none(JobSchedule.task == task)
        deleted = bool(JobSchedule.delete().where(JobSchedule.task == task).execute())
        if deleted:
            record_schedule_change(OperatorAction.SCHEDULE_RESET, task, before, None, operator)
    return deleted


def _described(row: JobSchedule | StoredSchedule | None) -> dict | None:
    return {"cron": row.cron, "zone": row.zone} if row is not None else None


def record_schedule_change(action: OperatorAction, task: str, before: JobSchedule | None,
                           after: StoredSchedule | None, operator: Operator) -> None:
    """Write a schedule change to the operator trail, in the change's own transaction (they commit together).

    ``details`` keeps the schedule before and after (None: the default),
    and the default, so the trail reads on its own.
    """
    record_operator_action(action, operator, target=task, connection=database.connection(),
                           details={"before": _described(before), "after": _described(after),
                                    "default": registry.get(task).cron})
    logger.info("%s: schedule %s by %s: %s -> %s", task, "set" if after else "reset", operator.who,
                _described(before) or "default", _described(after) or "default")
