"""Versioned, idempotent schema migrations from numbered SQL files.

``crmtasks/pg/migrations/NNNN_name.sql`` files are applied in order, each once,
all pending ones in a single transaction under a PostgreSQL advisory lock:
several processes may run ``crmtasks migrate`` at once; the first applies,
the others wait and then find nothing left to do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import psycopg2
from psycopg2.extensions import connection as PgConnection

from crmtasks.errors import CrmtasksError
from crmtasks.pg.advisory_locks import AdvisoryLock

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


class SchemaMissing(CrmtasksError):
    """The database lacks migrations this version of crmtasks needs."""


def available() -> list[Migration]:
    """Every migration shipped with crmtasks, in version order."""
    migrations = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _FILE_PATTERN.match(path.name)
        if not match:
            raise RuntimeError(f"migration file {path.name} is not named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migration files share a version number")
    return migrations


def applied_versions(conn: PgConnection) -> set[int]:
    """Versions recorded as applied; empty when the ledger does not exist yet."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return set()
        cur.execute("SELECT version FROM schema_migrations")
        return {row[0] for row in cur.fetchall()}


def pending(conn: PgConnection) -> list[Migration]:
    done = applied_versions(conn)
    return [m for m in available() if m.version not in done]


def migrate(conn: PgConnection) -> list[Migration]:
    """Apply every pending migration atomically; return those applied by this call.

    Idempotent and safe to run concurrently. Interrupting it (even kill -9)
    leaves the schema as it was before the call: it is one transaction.
    """
    conn.rollback()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (AdvisoryLock.MIGRATIONS.key,))
            cur.execute(_CREATE_LEDGER)
            todo = pending(conn)
            for migration in todo:
                cur.execute(migration.sql)
                cur.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return todo


def require_current(conn: PgConnection) -> None:
    """Raise SchemaMissing when migrations are pending (the jobs need the whole schema)."""
    todo = pending(conn)
    conn.rollback()
    if todo:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in todo)
        raise SchemaMissing(f"the database schema is not up to date (pending: {names}); run `crmtasks migrate`")


def connect(url: str) -> PgConnection:
    """A plain psycopg2 connection for schema work (outside the peewee pool)."""
    return psycopg2.connect(url, application_name="crmtasks-migrate")
