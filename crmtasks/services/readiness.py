"""Getting a process ready to run jobs: reachable database, current schema, demo data on first run.

On the embedded default the database is ours, so a first run migrates and
seeds a demo CRM by itself. A configured DATABASE_URL belongs to the user:
we never write demo data there, and a missing schema is reported with the
command that fixes it.
"""

from __future__ import annotations

import dataclasses

import psycopg2
import redis

from crmtasks import demo
from crmtasks.errors import CrmtasksError
from crmtasks.pg import AdvisoryLock, migrate
from crmtasks.pg.advisory_locks import acquire_polling
from crmtasks.redis_client import get_redis
from crmtasks.services import urls as services
from crmtasks.settings import Settings, mask_url, scrub
from crmtasks.settings.secrets import url_secrets

# Audit rows of the first-run demo: enough for every month of 24 to have some,
# so the audit job has old partitions to archive.
DEMO_AUDIT_ROWS = 200_000


class NotReady(CrmtasksError):
    """The database cannot be used as it is; the message says what to do (one line)."""


@dataclasses.dataclass
class Preparation:
    database_url: str
    migrations_applied: list[str]
    demo_seeded: dict[str, int] | None


def first_line(error: BaseException, url: str | None) -> str:
    """The first line of ``error``'s message with ``url``'s password masked (libpq may echo parts of the URL)."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return scrub(text, url_secrets(url))


def connect_checked(url: str, *, variable: str = "DATABASE_URL") -> psycopg2.extensions.connection:
    """A psycopg2 connection, or NotReady with one line naming the (masked) URL and the cause."""
    try:
        return psycopg2.connect(url, connect_timeout=5, application_name="crmtasks")
    except psycopg2.Error as error:
        raise NotReady(f"cannot connect to {variable} {mask_url(url)}: {first_line(error, url)}") from None


def redis_location(settings: Settings) -> str:
    """``REDIS_URL <masked url>``, or the embedded Redis and its socket: where a Redis failure happened."""
    if settings.redis_url:
        return f"REDIS_URL {mask_url(settings.redis_url)}"
    return f"the embedded Redis {services.redis_url(settings)}"


def database_location(settings: Settings) -> str:
    """``DATABASE_URL <masked url>``, or the embedded PostgreSQL and its URL."""
    if settings.database_url:
        return f"DATABASE_URL {mask_url(settings.database_url)}"
    return f"the embedded PostgreSQL {mask_url(services.database_url(settings))}"


def redis_failure(settings: Settings, error: redis.RedisError) -> str:
    """One line saying which Redis failed and how (a lost connection says "cannot connect")."""
    cause = first_line(error, services.redis_url(settings))
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
        return f"cannot connect to {redis_location(settings)}: {cause}"
    return f"{redis_location(settings)} failed: {type(error).__name__}: {cause}"


def require_redis(settings: Settings) -> None:
    """NotReady (one line naming the masked URL) unless Redis answers a PING.

    Processes check this at start so that a wrong or closed REDIS_URL is one
    line, not a traceback from deep inside the first Redis command.
    """
    try:
        get_redis(settings).ping()
    except redis.RedisError as error:
        raise NotReady(redis_failure(settings, error)) from None


def connect_migrated(settings: Settings) -> psycopg2.extensions.connection:
    """A connection to the configured database with every migration applied, or NotReady (one line).

    For commands that read or write crmtasks' tables: they never migrate by
    themselves, and a database that is behind says which command fixes it.
    The caller closes the connection.
    """
    conn = connect_checked(services.database_url(settings))
    try:
        migrate.require_current(conn)
    except migrate.SchemaMissing as error:
        conn.close()
        raise NotReady(str(error)) from None
    return conn


def prepare_database(settings: Settings, *, seed_demo_if_empty: bool = True, progress=None) -> Preparation:
    """Make the database usable for jobs, or raise NotReady.

    Embedded default: apply pending migrations, then seed the default demo
    CRM when it holds no records (``progress`` is passed to the seeder).
    Safe to call from many processes at once: they take turns, and only the
    first seeds. Configured database: only check that the schema is current.
    """
    url = services.database_url(settings)
    conn = connect_checked(url)
    try:
        if not settings.embedded_database:
            try:
                migrate.require_current(conn)
            except migrate.SchemaMissing as error:
                raise NotReady(str(error)) from None
            return Preparation(url, [], None)
        # Every worker and scheduler process of `honcho start` prepares the database at once:
        # only the first may seed, the others wait, then find it seeded. Freed when conn closes.
        # Taken by polling: a session blocked in pg_advisory_lock would hold a snapshot that the
        # first process's CREATE INDEX CONCURRENTLY (in migrate) waits for, a deadlock.
        acquire_polling(conn, AdvisoryLock.BOOTSTRAP)
        applied = [f"{m.version:04d}_{m.name}" for m in migrate.migrate(conn)]
        seeded = None
        if seed_demo_if_empty:
            if demo.crm_is_empty(conn):
                seeded = demo.seed_demo(conn, demo.DemoSize.first_run(), progress=progress)
                seeded["audit_log"] = demo.seed_audit(conn, DEMO_AUDIT_ROWS)["audit_log"]
        return Preparation(url, applied, seeded)
    finally:
        conn.close()
