"""The one place each periodic job is declared.

Everything that needs to know about a job (the Dramatiq actors, the
scheduler, ``python -m crmtasks.run``, settings validation, the dashboard)
reads it from ``JOBS``. A job's code lives in ``crmtasks/jobs/<name>.py`` as
a plain ``run() -> dict`` function that returns its stats, so it can be
tested and run without a broker.

This module imports nothing from crmtasks: settings validation imports it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

QUEUES = ("workflow_io", "workflow_cpu", "default")
OVERLAP_POLICIES = ("skip", "queue_one")


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One periodic job.

    Parameters:
      name(str): CLI name, as in the seed's ``--task`` (``precompute_facets``).
      actor_name(str): Dramatiq actor name, as in the seed (``analytics.precompute_facets``).
      cron(str): Default 5-field cron schedule, in UTC.
      queue(str): Dramatiq queue, one of QUEUES.
      job(str): ``module:function`` of the job's code; it returns a stats dict.
      description(str): One line for listings.
      time_limit_s(int): Seconds a run may take before the worker aborts it.
      max_retries(int): Retries allowed for transient faults (never for bugs or bad data).
      min_backoff_ms(int): First retry delay in milliseconds; doubles each retry.
      max_backoff_ms(int): Longest retry delay in milliseconds.
      overlap(str): What a run that finds the job already running does:
        ``skip`` (recorded as skipped) or ``queue_one`` (waits for the running
        one to finish; at most one waits, later ones are skipped).
    """

    name: str
    actor_name: str
    cron: str
    queue: str
    job: str
    description: str
    time_limit_s: int
    max_retries: int = 3
    min_backoff_ms: int = 5_000
    max_backoff_ms: int = 60_000
    overlap: str = "skip"

    def __post_init__(self) -> None:
        if self.queue not in QUEUES:
            raise ValueError(f"task {self.name}: queue {self.queue!r} is not one of {QUEUES}")
        if self.overlap not in OVERLAP_POLICIES:
            raise ValueError(f"task {self.name}: overlap {self.overlap!r} is not one of {OVERLAP_POLICIES}")

    def load(self) -> Callable[[], dict]:
        """Import and return the job function."""
        module_name, _, function_name = self.job.partition(":")
        return getattr(importlib.import_module(module_name), function_name)


# In the seed's order, which is also the order `python -m crmtasks.run` runs them.
JOBS: tuple[JobSpec, ...] = (
    JobSpec(
        name="precompute_facets",
        actor_name="analytics.precompute_facets",
        cron="*/5 * * * *",
        # workflow_cpu: the run is a heavy aggregation (a full scan and hash
        # grouping of every CRM table, CPU-bound in PostgreSQL); the queue's few
        # workers keep such jobs from running many at once and starving the
        # database, while I/O-light jobs stay on workflow_io / default.
        queue="workflow_cpu",
        job="crmtasks.jobs.precompute_facets:run",
        description="Count search facets (per value and per pair of fields) of leads, deals, accounts, contacts",
        # Well under the 5-minute period, so runs never pile up; also the
        # run's PostgreSQL statement_timeout, which stops SQL Python cannot.
        time_limit_s=240,
        max_retries=3,
        min_backoff_ms=5_000,
        max_backoff_ms=60_000,
    ),
    JobSpec(
        name="precompute_aggregates",
        actor_name="analytics.precompute_aggregates",
        cron="*/10 * * * *",
        # workflow_cpu: set-based SQL that keeps a PostgreSQL core busy (a full
        # rebuild scans every deal, lead and account). Time limit: well inside
        # the 10-minute period.
        queue="workflow_cpu",
        job="crmtasks.jobs.precompute_aggregates:run",
        description="Fold CRM changes into the report aggregates (pipeline, revenue, win rate, ...)",
        time_limit_s=300,
        max_retries=3,
        min_backoff_ms=5_000,
        max_backoff_ms=60_000,
    ),
    JobSpec(
        name="audit_maintenance",
        actor_name="system_config.audit_maintenance",
        cron="0 2 * * *",
        # workflow_io: the job mostly waits on PostgreSQL (DETACH waits for
        # older transactions, COPY) and on the disk (fsync); its CPU share
        # (gzip level 1) is a fraction of one core. One hour covers a first run
        # that archives a backlog of months; a re-run resumes where it stopped.
        queue="workflow_io",
        job="crmtasks.jobs.audit_maintenance:run",
        description="Create upcoming audit_log partitions; archive or delete months past retention",
        time_limit_s=3600,
        max_retries=3,
        min_backoff_ms=5_000,
        max_backoff_ms=60_000,
    ),
    # workflow_io: a warm-up is round trips, one compile statement per active
    # user in PostgreSQL (a few ms each) and pipelined SETs to Redis; its own
    # CPU (JSON of id lists) is small. 1,000 users take seconds; 30 minutes
    # leave room for ~100k users plus the facet and report warmers that join
    # it. A lost connection is retried 3 times, 5 s to 60 s apart; a re-run
    # just overwrites the same entries.
    JobSpec(name="warm_caches", actor_name="analytics.warm_caches", cron="0 3 * * *",
             queue="workflow_io", job="crmtasks.jobs.warm_caches:run",
             description="Warm each active user's compiled sharing visibility in Redis (and, later, facet/report caches)",
             time_limit_s=1800, max_retries=3, min_backoff_ms=5_000, max_backoff_ms=60_000),
)


def names() -> list[str]:
    """CLI names of every registered task, in run order."""
    return [spec.name for spec in JOBS]


def find(name: str) -> JobSpec | None:
    """The task called ``name`` (CLI or actor name), or None: middleware lets other actors pass through."""
    for spec in JOBS:
        if name in (spec.name, spec.actor_name):
            return spec
    return None


def get(name: str) -> JobSpec:
    """The task called ``name`` (CLI or actor name); KeyError listing valid names when unknown."""
    for spec in JOBS:
        if name in (spec.name, spec.actor_name):
            return spec
    raise KeyError(f"unknown task {name!r}; valid tasks: {', '.join(names()) or '(none registered)'}")
