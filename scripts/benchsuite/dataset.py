"""The benchmark's data: the scales, a database of its own, and crmtasks pointed at it.

Every run creates its databases on the PostgreSQL server of DATABASE_URL
(or the embedded server under CRMTASKS_HOME when unset), named
``crmtasks_bench_<run id>[_<label>]``, applies the migrations, seeds them
with ``crmtasks.demo.seed_demo_parallel`` (the rows of ``crmtasks seed``,
loaded by two sessions at once) and ``crmtasks.demo.seed_audit``
(deterministic for a seed) and drops them at the end unless ``--keep``. A
Redis key prefix of its own (``crmtasks-bench-<run id>``) keeps the job
locks and caches it touches apart from any real deployment's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
from psycopg2 import sql

from crmtasks.demo import AUDIT_HISTORY_MONTHS, DemoSize, seed_audit, seed_demo_parallel
from crmtasks.pg import db, migrate
from crmtasks.services import urls as services
from crmtasks.settings import Settings, get_settings, load_settings


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big the data is and how many samples each suite takes.

    Parameters:
      name(str): small, medium or large.
      crm(DemoSize): Rows per CRM table.
      audit_rows(int): Audit rows seeded over the last 24 months.
      search_repeat(int): Timed searches per query shape and side.
      report_repeat(int): Reads per report and method (the median is reported).
      change_cycles(int): "1% of deals changed, then refresh" cycles (the median is reported).
      writer_seconds(float): Seconds the audit writer runs before maintenance starts (its baseline).
      sharing_checks(int): (user, record) pairs checked per sharing checker.
      growth_fractions(tuple): The sizes of the growth suite, as fractions of ``crm`` and of the archived month.
      load_seconds(float): Seconds each cell of the load suite runs (a call, a number of callers, a side).
      growth_on_main(bool): Measure the growth suite's full size (fraction 1.0) on the main dataset
        instead of seeding it again (xlarge: a second 10M-lead seed would double the run).
    """

    name: str
    crm: DemoSize
    audit_rows: int
    search_repeat: int
    report_repeat: int
    change_cycles: int
    writer_seconds: float
    sharing_checks: int
    growth_fractions: tuple[float, ...] = (0.1, 0.3, 1.0)
    load_seconds: float = 5.0
    growth_on_main: bool = False

    @property
    def month_rows(self) -> int:
        """Rows in the month the audit suite archives: as many as the busiest month of the seed.

        The seed's activity grows over its 24 months (twice the density at the
        recent end as at the old end), so its latest month holds about 1/12 of
        the rows while its oldest months are nearly empty: the month archived
        is filled to the busy size rather than taken from the sparse old end.
        """
        return max(1, self.audit_rows // 12)

    def crm_at(self, fraction: float) -> DemoSize:
        """The CRM with every table's rows scaled by ``fraction`` (users kept: owners do not grow with data)."""
        size = self.crm
        return DemoSize(users=size.users, accounts=max(1, round(size.accounts * fraction)),
                        contacts=round(size.contacts * fraction), leads=round(size.leads * fraction),
                        deals=round(size.deals * fraction))

    def describe(self) -> str:
        size = self.crm
        return (f"{size.leads:,} leads, {size.deals:,} deals, {size.contacts:,} contacts, {size.accounts:,} accounts, "
                f"{size.users:,} users, {self.audit_rows:,} audit rows over {AUDIT_HISTORY_MONTHS} months")


SCALES: dict[str, Scale] = {
    # The CI smoke size: the whole run takes well under two minutes.
    "small": Scale("small", DemoSize(users=100, accounts=4_000, contacts=10_000, leads=20_000, deals=6_000),
                   audit_rows=100_000, search_repeat=40, report_repeat=9, change_cycles=2, writer_seconds=2.0,
                   sharing_checks=300, load_seconds=0.5),
    "medium": Scale("medium", DemoSize(users=300, accounts=60_000, contacts=150_000, leads=300_000, deals=90_000),
                    audit_rows=1_500_000, search_repeat=80, report_repeat=9, change_cycles=3, writer_seconds=4.0,
                    sharing_checks=1_000, load_seconds=3.0),
    # The seed's scale: 1M leads, 300k deals, 500k contacts, 200k accounts, 1,000 users, 5M audit rows.
    "large": Scale("large", DemoSize.large(), audit_rows=5_000_000, search_repeat=100, report_repeat=9,
                   change_cycles=3, writer_seconds=5.0, sharing_checks=3_000),
    # Issue 12: ten times the seed's CRM (users and audit as at large); growth from 100k to 10M leads.
    "xlarge": Scale("xlarge", DemoSize(users=1_000, accounts=2_000_000, contacts=5_000_000, leads=10_000_000,
                                       deals=3_000_000),
                    audit_rows=5_000_000, search_repeat=100, report_repeat=9, change_cycles=3, writer_seconds=5.0,
                    sharing_checks=3_000, growth_fractions=(0.01, 0.03, 0.1, 1.0), growth_on_main=True),
}


# Sessions loading the CRM at once: one per core of the 2-core machine the figures are quoted for.
SEED_SESSIONS = 2


def log(message: str) -> None:
    """Progress for the person watching (stderr; stdout carries the final table)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server (query string, e.g. a socket host, kept)."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


class BenchServer:
    """Creates and drops this run's databases on one PostgreSQL server.

    Parameters:
      server_url(str): Any database URL on the server; a new database is made next to it.
      run_id(str): Short hex id naming this run's databases and Redis keys.
    """

    def __init__(self, server_url: str, run_id: str) -> None:
        self.server_url = server_url
        self.run_id = run_id
        self._admin = psycopg2.connect(server_url, application_name="crmtasks-bench")
        self._admin.autocommit = True
        self.created: list[str] = []

    def database_name(self, label: str = "") -> str:
        return f"crmtasks_bench_{self.run_id}" + (f"_{label}" if label else "")

    def create(self, label: str = "") -> str:
        """Create an empty database and return its URL."""
        name = self.database_name(label)
        with self._admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return with_database(self.server_url, name)

    def drop(self, url: str) -> None:
        """Drop the database of ``url`` (ending its sessions)."""
        name = urlsplit(url).path.lstrip("/")
        with self._admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            self.drop(with_database(self.server_url, name))

    def close(self) -> None:
        self._admin.close()


@dataclasses.dataclass
class BenchRun:
    """Where this run's data lives.

    Parameters:
      server(BenchServer): The server and its databases.
      url(str): The main benchmark database.
      settings(Settings): crmtasks' settings pointing at it (also what get_settings() returns).
      environment(dict): The variables those settings were built from (children use them too).
      archive_dir(Path): Temporary directory of audit archives, removed at the end.
    """

    server: BenchServer
    url: str
    settings: Settings
    environment: dict[str, str]
    archive_dir: Path


def resolve_servers(environ: Mapping[str, str]) -> tuple[str, str]:
    """(PostgreSQL URL, Redis URL) of the configured servers, starting the embedded ones when unset."""
    settings = load_settings(environ)
    return services.database_url(settings), services.redis_url(settings)


# Variables the benchmark unsets whatever the caller's environment says.
_SWITCHED_OFF = ("CRMTASKS_AUDIT_PAUSE_AT",)


def bench_environment(environ: Mapping[str, str], database_url: str, redis_url: str, run_id: str,
                      archive_dir: Path) -> dict[str, str]:
    """The variables crmtasks reads, pointing at this run's database, Redis prefix and archive directory.

    The archive policy is set and the legal hold and test pause points are
    switched off whatever the caller's environment says: the audit suite
    must archive.
    """
    environment = {**environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
                   "CRMTASKS_REDIS_PREFIX": f"crmtasks-bench-{run_id}", "CRMTASKS_ARCHIVE_DIR": str(archive_dir),
                   "CRMTASKS_AUDIT_RETENTION_POLICY": "archive", "CRMTASKS_AUDIT_HOLD": "0"}
    for name in _SWITCHED_OFF:  # unset, not empty: settings refuse a variable that is set but empty
        environment.pop(name, None)
    return environment


def point_crmtasks_at(environment: dict[str, str]) -> Settings:
    """Build the settings of ``environment``, make them this process's settings, and bind crmtasks.pg.db to them.

    ``faceted_search`` and the jobs' ``run()`` take their settings from
    ``get_settings()``, which reads ``os.environ`` once; so the variables are
    written to ``os.environ`` here, before anything has loaded settings (a
    RuntimeError otherwise), and child processes inherit them.
    """
    settings = load_settings(environment)
    if get_settings.cache_info().currsize:
        raise RuntimeError("crmtasks settings were loaded before the benchmark pointed them at its database")
    os.environ.update({name: value for name, value in environment.items() if os.environ.get(name) != value})
    for name in _SWITCHED_OFF:
        if name not in environment:
            os.environ.pop(name, None)
    if get_settings() != settings:
        raise RuntimeError("get_settings() disagrees with the benchmark's settings")
    db.bind(settings)
    return settings


def start(environ: Mapping[str, str]) -> BenchRun:
    """Create the main database (migrated, empty) and point crmtasks at it."""
    server_url, redis_url = resolve_servers(environ)
    run_id = uuid.uuid4().hex[:8]
    server = BenchServer(server_url, run_id)
    archive_dir = Path(tempfile.mkdtemp(prefix=f"crmtasks-bench-{run_id}-"))
    try:
        url = server.create()
        environment = bench_environment(environ, url, redis_url, run_id, archive_dir)
        settings = point_crmtasks_at(environment)
    except BaseException:
        server.drop_all()
        server.close()
        shutil.rmtree(archive_dir, ignore_errors=True)
        raise
    return BenchRun(server, url, settings, environment, archive_dir)


def finish(run: BenchRun, *, keep: bool) -> None:
    """Close crmtasks' connections, drop the databases (unless ``keep``), delete the Redis keys and archives."""
    if db.database.obj is not None:
        db.database.obj.close_all()
    try:
        if keep:
            log(f"kept database {run.server.database_name()} ({run.url}) and archives in {run.archive_dir}")
        else:
            run.server.drop_all()
            shutil.rmtree(run.archive_dir, ignore_errors=True)
        _delete_redis_keys(run.settings)
    finally:
        run.server.close()


def _delete_redis_keys(settings: Settings) -> None:
    from crmtasks.redis_client import get_redis

    client = get_redis(settings)
    keys = list(client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000))
    for first in range(0, len(keys), 500):
        client.delete(*keys[first:first + 500])


def seed(url: str, crm: DemoSize, audit_rows: int, seed_value: int) -> dict:
    """Migrate the database of ``url``, seed the CRM and ``audit_rows`` audit rows, then VACUUM ANALYZE.

    The CRM is loaded by :data:`SEED_SESSIONS` sessions at once (the same
    rows as ``crmtasks seed``; the database is the run's own and dropped on
    failure), each table vacuumed as it is done. The vacuum sets the
    visibility map and hint bits, as on a database that has been running
    for a while: without it the first reader of every page pays for the
    load (and index-only scans are not index-only). The closing
    database-wide VACUUM ANALYZE covers the audit log and skips the CRM's
    pages, all visible by then. Returns seconds per step, the CRM load's seconds per phase
    and rows per table.
    """
    conn = migrate.connect(url)
    try:
        timings = {}
        started = time.perf_counter()
        migrate.migrate(conn)
        timings["migrate_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        load = seed_demo_parallel(url, crm, seed_value, sessions=SEED_SESSIONS, vacuum=True,
                                  log=lambda line: log(f"seed: {line}"))
        counts = dict(load.rows)
        timings["crm_s"] = round(time.perf_counter() - started, 2)
        if audit_rows:
            started = time.perf_counter()
            counts["audit_log"] = seed_audit(conn, audit_rows, seed_value, defer_indexes=True)["audit_log"]
            timings["audit_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
        timings["vacuum_s"] = round(time.perf_counter() - started, 2)
        return {"seconds": timings, "crm_phases_s": load.seconds, "rows": counts}
    finally:
        conn.close()


def temp_bytes(url: str) -> int:
    """Bytes of temporary files PostgreSQL has written for the database of ``url`` so far.

    Counters reach pg_stat_database when a session ends (or at most once a
    second while it runs): read this after the measured sessions closed.
    """
    with psycopg2.connect(url, application_name="crmtasks-bench-stats") as conn, conn.cursor() as cur:
        cur.execute("SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()")
        value = cur.fetchone()[0]
    conn.close()
    return int(value or 0)
