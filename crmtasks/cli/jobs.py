"""``crmtasks tasks|check|pause|resume``: what the jobs are doing, and steering them.

A pause or resume is written to the operator trail (``crmtasks trail``) first, as the OS user at this host.
"""

from __future__ import annotations

import dataclasses

import click

from crmtasks.cli.common import (
    CommandError,
    load_settings_or_exit,
    print_json,
    print_table,
    require_migrated,
    stderr,
)
from crmtasks.jobs import registry
from crmtasks.runs.health import run_checks
from crmtasks.runs.overview import job_overviews
from crmtasks.runs.trail import Operator, OperatorAction, record_operator_action
from crmtasks.scheduler import pauses
from crmtasks.scheduler.runtime import schedule_label
from crmtasks.user_text import check_text


@click.command(name="tasks")
@click.option("--json", "as_json", is_flag=True)
def list_tasks(as_json: bool) -> None:
    """List the jobs: schedule (and its zone), next three fire times (UTC), last run and state."""
    settings = load_settings_or_exit()
    require_migrated(settings)
    overviews = job_overviews(settings)
    if as_json:
        print_json([dataclasses.asdict(o) for o in overviews])
        return
    if not overviews:
        stderr.print("no jobs are registered")
        return
    print_table("crmtasks jobs", ["task", "queue", "schedule", "next runs (UTC)", "state", "last run", "status"], [
        [o.task, o.queue, schedule_label(o.schedule, o.zone, o.schedule_source), "\n".join(t.strftime("%Y-%m-%d %H:%M") for t in o.next_runs) or "never",
         o.state + (f" ({o.pause_note})" if o.pause_note else ""),
         o.last_started_at.strftime("%Y-%m-%d %H:%M:%S") if o.last_started_at else "never",
         (o.last_status or "") + (f" {o.last_duration_s:.1f} s" if o.last_duration_s is not None else "")]
        for o in overviews])


def _task_name(name: str) -> str:
    try:
        return registry.get(name).name
    except KeyError as error:
        raise CommandError(error.args[0]) from None


@click.command()
@click.option("--json", "as_json", is_flag=True)
def check(as_json: bool) -> None:
    """Check Redis, PostgreSQL, schema, workers per queue, scheduler, overdue and failing jobs.

    Exit 0 when healthy, 1 with the list of problems.
    """

    settings = load_settings_or_exit()
    findings = run_checks(settings)
    if as_json:
        print_json([dataclasses.asdict(f) for f in findings])
    else:
        for finding in findings:
            click.echo(f"{'ok     ' if finding.ok else 'PROBLEM'} {finding.area:<9} {finding.message}")
    if not all(f.ok for f in findings):
        raise SystemExit(1)


@click.command()
@click.argument("job")
@click.option("--note", default="", help="Why it is paused (shown in listings and the dashboard).")
def pause(job: str, note: str) -> None:
    """Pause a job: schedulers stop enqueuing it and workers skip its messages."""
    settings = load_settings_or_exit()
    task = _task_name(job)
    try:
        check_text(note, "--note")
    except ValueError as error:
        raise CommandError(str(error)) from None
    require_migrated(settings)
    record_operator_action(OperatorAction.PAUSE, Operator.from_shell(), target=task, details={"note": note})
    pauses.pause(task, note)
    click.echo(f"{task}: paused" + (f" ({note})" if note else ""))


@click.command()
@click.argument("job")
def resume(job: str) -> None:
    """Resume a paused job."""
    settings = load_settings_or_exit()
    task = _task_name(job)
    require_migrated(settings)
    record_operator_action(OperatorAction.RESUME, Operator.from_shell(), target=task)
    click.echo(f"{task}: resumed" if pauses.resume(task) else f"{task}: was not paused")
