"""``python -m crmtasks.run [--task NAME ...] [--enqueue] [--json]``: run the periodic jobs now.

The Dramatiq counterpart of the seed's ``manage.py run_periodic_tasks``.
Each job run or sent is written to the operator trail first, as the OS user
at this host, and its task_runs row names them. Exit status: 0 when every
job succeeded (or was skipped because it was already running), 1 when any
failed, 2 for usage or settings errors.
"""

from __future__ import annotations

import click

from crmtasks.broker.actors import manual_message
from crmtasks.broker.factory import build_runtime
from crmtasks.cli.common import (
    CommandError,
    OneLineCommand,
    demo_data_progress,
    load_settings_or_exit,
    print_json,
    print_table,
    require_migrated,
    stderr,
    summarize_stats,
)
from crmtasks.jobs import registry
from crmtasks.jobs.precompute_facets import JOB_NAME as FACETS_JOB
from crmtasks.pg import db
from crmtasks.runs import runner
from crmtasks.runs.status import RunStatus
from crmtasks.runs.trail import (
    Operator,
    OperatorAction,
    record_operator_action,
    started_by,
)
from crmtasks.search.precompute import request_full_build
from crmtasks.services.readiness import NotReady, prepare_database, require_redis
from crmtasks.settings import Settings


@click.command(name="run", cls=OneLineCommand)
@click.option("--task", "tasks", multiple=True, metavar="NAME",
              help="Run only this job (repeatable); default: every job, in order.")
@click.option("--enqueue", is_flag=True, help="Send the jobs to the Dramatiq workers instead of running them here.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option("--full", is_flag=True,
              help="precompute_facets builds the search index from scratch, not a delta (with --task precompute_facets).")
def run_command(tasks: tuple[str, ...], enqueue: bool, as_json: bool, full: bool) -> None:
    """Run the periodic jobs now and print a summary."""
    settings = load_settings_or_exit()
    try:
        specs = runner.resolve(list(tasks))
    except KeyError as error:
        raise CommandError(error.args[0]) from None
    if not specs:
        raise CommandError("no jobs are registered")
    if full and [spec.name for spec in specs] != [FACETS_JOB]:
        raise CommandError(f"--full applies to one job: give --task {FACETS_JOB}")
    try:
        require_redis(settings)  # the job mutex and the broker live there: say so now, in one line
    except NotReady as error:
        raise CommandError(str(error)) from None
    if enqueue:
        require_migrated(settings)  # the operator trail lives there: a run is never sent unrecorded
        if full:
            _request_full_build(settings)
        _enqueue(settings, specs, as_json)
        return
    try:
        with demo_data_progress(enabled=not as_json) as progress:
            prepared = prepare_database(settings, progress=progress)
    except NotReady as error:
        raise CommandError(str(error)) from None
    if prepared.migrations_applied and not as_json:
        stderr.print(f"embedded database: applied migrations {', '.join(prepared.migrations_applied)}")
    if full:
        _request_full_build(settings)
    if prepared.demo_seeded and not as_json:
        counts = ", ".join(f"{count:,} {table}" for table, count in prepared.demo_seeded.items())
        stderr.print(f"embedded database was empty: seeded a demo CRM ({counts})")

    operator = Operator.from_shell()
    outcomes = []
    for spec in specs:
        record_operator_action(OperatorAction.RUN_NOW, operator, target=spec.name, details={"in_process": True})
        if as_json:
            outcomes.append(runner.run_now(spec, settings, started_by=started_by(operator)))
            continue
        with stderr.status(f"running {spec.name} ({spec.actor_name})"):
            outcome = runner.run_now(spec, settings, started_by=started_by(operator))
        outcomes.append(outcome)
        stderr.print(f"{spec.name}: {outcome.status} in {outcome.duration_s:.2f} s")

    if as_json:
        print_json([vars(outcome) for outcome in outcomes])
    else:
        print_table("crmtasks run", ["task", "status", "duration", "what it did"],
                    [[o.task, o.status, f"{o.duration_s:.2f} s", o.error or summarize_stats(o.stats)]
                     for o in outcomes])
    if any(outcome.status == RunStatus.FAILED for outcome in outcomes):
        raise SystemExit(1)


def _request_full_build(settings: Settings) -> None:
    """Flag the search index for a full build: the job's next run (here or on a worker) does one."""
    with db.using_connection(settings=settings) as conn:
        request_full_build(conn)


def _enqueue(settings: Settings, specs: list[registry.JobSpec], as_json: bool) -> None:
    actors = build_runtime(settings).actors  # the broker is built only when sending
    operator = Operator.from_shell()
    sent = []
    for spec in specs:
        message = manual_message(actors[spec.name], started_by(operator))
        # The trail first: a run is never started unrecorded.
        record_operator_action(OperatorAction.RUN_NOW, operator, target=spec.name,
                               details={"message_id": message.message_id, "queue": spec.queue})
        message = actors[spec.name].broker.enqueue(message)
        sent.append({"task": spec.name, "actor": spec.actor_name, "queue": spec.queue, "message_id": message.message_id})
    if as_json:
        print_json(sent)
    else:
        print_table("enqueued", ["task", "actor", "queue", "message id"],
                    [[s["task"], s["actor"], s["queue"], s["message_id"]] for s in sent])


def main() -> None:
    run_command(prog_name="python -m crmtasks.run")

