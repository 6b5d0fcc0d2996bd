"""Running jobs now, in this process: what ``python -m crmtasks.run`` does.

A run here behaves like a worker's run: it takes the same cluster-wide
mutex (a job already running elsewhere is recorded as skipped, not run
twice), and it is recorded in ``task_runs`` with trigger ``manual``. The
lock names this process, so if it is killed, the next run on this host (a
worker's or another ``crmtasks run``) takes the lock over at once and
closes this run as failed, instead of waiting out the lock's TTL.
"""

from __future__ import annotations

import dataclasses
import time
import uuid

from crmtasks.broker.holders import LockHolder
from crmtasks.broker.middleware.job_mutex import job_mutex, take_job_lock
from crmtasks.jobs import registry
from crmtasks.pg import db
from crmtasks.runs import history as runs
from crmtasks.runs.status import RunStatus, SkipReason, Trigger
from crmtasks.settings import Settings


@dataclasses.dataclass
class Outcome:
    """How one run ended.

    Parameters:
      task(str): CLI name of the job.
      status(RunStatus): succeeded, failed or skipped.
      duration_s(float): Wall-clock seconds.
      stats(dict): What the job returned (or the skip reason).
      error(str|None): One line: the error's type and message, passwords masked.
      run_id(int|None): The task_runs row.
    """

    task: str
    status: RunStatus
    duration_s: float
    stats: dict
    error: str | None = None
    run_id: int | None = None


def run_now(spec: registry.JobSpec, settings: Settings, *, trigger: Trigger = Trigger.MANUAL,
            started_by: str | None = None) -> Outcome:
    """Run one job in this process under its mutex and record it (``started_by``: who, for task_runs).

    Never raises for a job's failure.
    """
    db.bind(settings).connect(reuse_if_open=True)
    mutex = job_mutex(settings, spec)
    holder = LockHolder.this_process(f"run-now-{uuid.uuid4()}")
    started = time.perf_counter()
    if not take_job_lock(settings, mutex, holder, spec.name):
        run_id = runs.record_skip(spec.name, trigger, SkipReason.OVERLAP, started_by=started_by)
        return Outcome(spec.name, RunStatus.SKIPPED, 0.0, {"skip_reason": SkipReason.OVERLAP}, run_id=run_id)
    try:
        runs.abandon_dead_runs_here(spec.name)
        run_id = runs.start_run(spec.name, trigger, started_by=started_by)
        try:
            stats = spec.load()()
        except Exception as error:  # noqa: BLE001 - a job's failure is an outcome, recorded below
            runs.finish_run(run_id, error=error)
            return Outcome(spec.name, RunStatus.FAILED, time.perf_counter() - started, {},
                           error=settings.scrub(f"{type(error).__name__}: {error}".splitlines()[0]), run_id=run_id)
        runs.finish_run(run_id, stats=stats)
        return Outcome(spec.name, RunStatus.SUCCEEDED, time.perf_counter() - started, dict(stats or {}), run_id=run_id)
    finally:
        mutex.release(holder)


def resolve(names: list[str] | None) -> list[registry.JobSpec]:
    """The specs for ``names`` in registry order (all when empty); KeyError for an unknown name."""
    if not names:
        return list(registry.JOBS)
    wanted = [registry.get(name) for name in names]
    return [spec for spec in registry.JOBS if spec in wanted]
