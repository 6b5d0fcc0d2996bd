"""``crmtasks schedule show|set|reset``: a job's schedule, changed without a redeploy.

``set`` checks the job, the cron expression and the zone, prints the next
five fire times, then stores the schedule in PostgreSQL, with its operator trail row (who
at which host); every running
scheduler follows it from its next minute (crmtasks.scheduler.live).
``--dry-run`` prints the times and stores nothing. Wherever
``CRMTASKS_SCHEDULE_<TASK>`` is set (this shell, or a running scheduler's
environment as its heartbeat tells) the override still wins, and the
commands say so.
"""

from __future__ import annotations

import dataclasses
import datetime

import click

from crmtasks.cli.common import (
    load_settings_or_exit,
    print_json,
    print_table,
    require_migrated,
)
from crmtasks.jobs import registry
from crmtasks.runs.trail import Operator
from crmtasks.scheduler import runtime
from crmtasks.scheduler.cron import ZonedCron
from crmtasks.scheduler.overrides import overriding_schedulers
from crmtasks.settings import Settings

UTC = datetime.timezone.utc


def fire_time(moment: datetime.datetime, cron: ZonedCron) -> str:
    """A fire time in the schedule's zone, and in UTC when that differs: ``2026-03-08 03:00 EDT (07:00 UTC)``."""
    local = moment.astimezone(cron.zone)
    shown = local.strftime("%Y-%m-%d %H:%M %Z")
    return shown if cron.zone_name == "UTC" else f"{shown} ({moment.astimezone(UTC).strftime('%H:%M UTC')})"


def _override_lines(settings: Settings, task: str) -> list[str]:
    """What overrides ``task``'s stored schedule: this shell's environment, running schedulers' environments."""
    lines = []
    variable = runtime.override_variable(task)
    if task in settings.schedule_overrides:
        lines.append(f"note: {variable}={settings.schedule(task)!r} is set in this environment; wherever it is "
                     "set it wins over the stored schedule")
    elsewhere = (overriding_schedulers(settings) or {}).get(task)
    if elsewhere:
        lines.append(f"note: running scheduler(s) {', '.join(elsewhere)} have {variable} set and follow it, "
                     "not the stored schedule")
    return lines


@click.group(name="schedule")
def schedule_group() -> None:
    """Show, set and reset the jobs' schedules (stored in PostgreSQL, followed by running schedulers within a minute)."""


@schedule_group.command(name="show")
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True)
def show(job: str | None, as_json: bool) -> None:
    """Each job's schedule in force, where it comes from, and its next five fire times."""
    settings = load_settings_or_exit()
    task = runtime.job_name(job) if job else None
    require_migrated(settings)
    schedules = [s for s in runtime.schedules_in_force(settings).values() if task in (None, s.task)]
    now = datetime.datetime.now(UTC)
    if as_json:
        print_json([dict(dataclasses.asdict(s), next_runs=runtime.preview(s.parsed(), now)) for s in schedules])
        return
    print_table("crmtasks schedules", ["task", "schedule in force", "from", "stored", "next runs"], [
        [s.task, f"{s.cron} ({s.zone})", s.override_variable if s.overridden else s.source,
         f"{s.stored.cron} ({s.stored.zone}), by {s.stored.changed_by}" if s.stored else "—",
         "\n".join(fire_time(t, s.parsed()) for t in runtime.preview(s.parsed(), now))]
        for s in schedules])
    for s in schedules:
        for line in _override_lines(settings, s.task) if s.stored else ():
            click.echo(line)


@schedule_group.command(name="set")
@click.argument("job")
@click.argument("cron")
@click.option("--tz", "zone", default="UTC", show_default=True, help="IANA time zone the expression is read in.")
@click.option("--dry-run", is_flag=True, help="Print the next fire times; store nothing.")
def set_command(job: str, cron: str, zone: str, dry_run: bool) -> None:
    """Store JOB's schedule: CRON (5 fields or @daily...) read in --tz; prints the next five fire times first."""
    settings = load_settings_or_exit()
    task = runtime.job_name(job)
    parsed = runtime.parse_schedule(cron, zone)
    click.echo(f"{task}: {parsed.expression} ({parsed.zone_name}) next fires at:")
    for moment in runtime.preview(parsed):
        click.echo(f"  {fire_time(moment, parsed)}")
    if dry_run:
        click.echo("dry run: nothing stored")
        return
    require_migrated(settings)
    runtime.set_schedule(task, parsed.expression, parsed.zone_name, operator=Operator.from_shell())
    click.echo(f"{task}: schedule stored; running schedulers follow it from their next minute")
    for line in _override_lines(settings, task):
        click.echo(line)


@schedule_group.command(name="reset")
@click.argument("job")
def reset(job: str) -> None:
    """Remove JOB's stored schedule: the default (or an environment override) applies again."""
    settings = load_settings_or_exit()
    task = runtime.job_name(job)
    require_migrated(settings)
    default = registry.get(task).cron
    if runtime.reset_schedule(task, operator=Operator.from_shell()):
        click.echo(f"{task}: stored schedule removed; back to the default {default} (UTC)")
    else:
        click.echo(f"{task}: no stored schedule; the default {default} (UTC) applies")
    if task in settings.schedule_overrides:
        click.echo(f"note: {runtime.override_variable(task)} is set in this environment and wins wherever it is set")
