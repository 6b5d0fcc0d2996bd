"""``crmtasks check``: is the system healthy, and if not, what exactly is wrong.

The seed guide's troubleshooting list (is Redis running, are workers and
beat running, is the database reachable, did tasks fail) as one command
that any host can run: it reads heartbeats and run history, not processes.
"""

from __future__ import annotations

import dataclasses
import datetime

import redis

from crmtasks.audit import status as audit_status
from crmtasks.audit.stores import StoreError
from crmtasks.broker import heartbeats
from crmtasks.jobs import registry
from crmtasks.pg import migrate
from crmtasks.redis_client import get_redis
from crmtasks.runs import connections
from crmtasks.runs.overview import job_overviews
from crmtasks.runs.status import JobState, RunStatus
from crmtasks.services import urls as services
from crmtasks.services.readiness import NotReady, connect_checked, first_line
from crmtasks.settings import Settings, mask_url

UTC = datetime.timezone.utc


@dataclasses.dataclass
class Finding:
    ok: bool
    area: str
    message: str


def run_checks(settings: Settings, now: datetime.datetime | None = None) -> list[Finding]:
    """Every check, in order; later checks are skipped when what they need is down."""
    now = now or datetime.datetime.now(UTC)
    findings = [_check_redis(settings)]
    redis_ok = findings[-1].ok
    findings.extend(_check_database(settings))
    database_ok = all(f.ok for f in findings[1:])
    if redis_ok:
        findings.extend(_check_workers(settings))
        findings.append(_check_scheduler(settings))
    if database_ok:
        findings.extend(_check_jobs(settings, now))
        findings.extend(_check_audit_archives(settings))
    if redis_ok and database_ok:
        findings.append(_check_connections(settings))
    return findings


def _check_redis(settings: Settings) -> Finding:
    url = services.redis_url(settings)
    try:
        get_redis(settings).ping()
    except redis.RedisError as error:
        return Finding(False, "redis", f"Redis at {mask_url(url)} is unreachable: {first_line(error, url)}")
    return Finding(True, "redis", f"Redis at {mask_url(url)} answers")


def _check_database(settings: Settings) -> list[Finding]:
    url = services.database_url(settings)
    try:
        conn = connect_checked(url)
    except NotReady as error:
        return [Finding(False, "postgres", str(error))]
    try:
        problem = migrate.schema_problem(conn)
    finally:
        conn.close()
    found = [Finding(True, "postgres", f"PostgreSQL at {mask_url(url)} answers")]
    if problem:
        found.append(Finding(False, "schema", f"schema not current ({problem}); run `crmtasks migrate`"))
    else:
        found.append(Finding(True, "schema", "schema is up to date"))
    return found


def _check_workers(settings: Settings) -> list[Finding]:
    workers = heartbeats.alive(settings, "worker")
    consumed: dict[str, int] = {}
    for worker in workers:
        for queue in worker.get("queues", []):
            consumed[queue] = consumed.get(queue, 0) + 1
    findings = []
    for queue in sorted({spec.queue for spec in registry.JOBS}):
        if consumed.get(queue):
            findings.append(Finding(True, "workers", f"queue {queue}: {consumed[queue]} live worker process(es)"))
        else:
            findings.append(Finding(False, "workers", f"queue {queue}: no live worker; start "
                                                      f"`dramatiq crmtasks.tasks --queues {queue}`"))
    return findings


def _check_scheduler(settings: Settings) -> Finding:
    schedulers = heartbeats.alive(settings, "scheduler")
    if not schedulers:
        return Finding(False, "scheduler", "no live scheduler; start `periodiq crmtasks.tasks`")
    hosts = ", ".join(sorted(f"{s['host']}:{s['pid']}" for s in schedulers))
    return Finding(True, "scheduler", f"{len(schedulers)} live scheduler(s): {hosts}")


def _check_connections(settings: Settings) -> Finding:
    """Would the deployment's pools, all full, fit in the server's max_connections? (crmtasks.runs.connections)"""
    demand = connections.deployment_demand(
        heartbeats.alive(settings, "worker"), heartbeats.alive(settings, "scheduler"),
        heartbeats.alive(settings, "dashboard"), api_processes=settings.api_processes,
        pool_size=settings.db_pool_size)
    conn = connect_checked(services.database_url(settings))
    try:
        limit = connections.server_limit(conn)
    finally:
        conn.close()
    accepted = (f"the {limit.available} PostgreSQL accepts (max_connections {limit.max_connections} minus "
                f"{limit.reserved} reserved; {limit.open_now} open now, from every client)")
    if demand.total > limit.available:
        return Finding(False, "connections", f"this deployment may open {demand.total} connections "
                                             f"({demand.describe()}), more than {accepted}: lower "
                                             "CRMTASKS_DB_POOL_SIZE or worker threads, or raise max_connections")
    return Finding(True, "connections", f"this deployment opens at most {demand.total} connections "
                                        f"({demand.describe()}) of {accepted}")


def _check_jobs(settings: Settings, now: datetime.datetime) -> list[Finding]:
    findings = []
    for job in job_overviews(settings, now):
        if job.state == JobState.PAUSED:
            findings.append(Finding(True, "jobs", f"{job.task} is paused ({job.pause_note or 'no note'})"))
            continue
        if job.last_status == RunStatus.FAILED:
            findings.append(Finding(False, "jobs", f"{job.task} failed on its last run: {job.last_error}"))
        if job.interval_s is None:
            findings.append(Finding(False, "jobs", f"{job.task}: schedule {job.schedule!r} never fires"))
            continue
        allowed = datetime.timedelta(seconds=2 * job.interval_s)
        if job.last_success_at is None:
            findings.append(Finding(False, "jobs", f"{job.task} has never succeeded"))
        elif now - job.last_success_at > allowed:
            findings.append(Finding(False, "jobs", f"{job.task} is overdue: last success "
                                                   f"{job.last_success_at:%Y-%m-%d %H:%M} UTC, more than twice "
                                                   f"its interval ({job.interval_s / 60:.0f} min) ago"))
        elif job.last_status != RunStatus.FAILED:
            findings.append(Finding(True, "jobs", f"{job.task} last succeeded {job.last_success_at:%Y-%m-%d %H:%M} UTC"))
    return findings


def _check_audit_archives(settings: Settings) -> list[Finding]:
    """Every month the audit ledger says was archived still has its manifest and data file (not re-read: cheap).

    `crmtasks audit verify` re-reads the files; this only makes sure none is gone unnoticed.
    """
    try:
        conn = connect_checked(services.database_url(settings))
    except NotReady as error:
        return [Finding(False, "audit", str(error))]
    try:
        entries = [entry for entry in audit_status.archives(conn, settings) if entry["ledger"]]
    except StoreError as error:
        return [Finding(False, "audit", str(error))]
    finally:
        conn.close()
    lost = [Finding(False, "audit", f"archive of {entry['month']}: {entry['state']}; "
                                    f"see `crmtasks audit verify`")
            for entry in entries if entry["state"] != "complete"]
    if lost:
        return lost
    return [Finding(True, "audit", f"{len(entries)} archived audit month(s), every archive in place in "
                                   f"{settings.archive_url}")]
