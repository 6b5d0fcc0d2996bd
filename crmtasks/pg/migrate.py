"""Versioned, idempotent schema migrations from numbered SQL files.

``crmtasks/pg/migrations/NNNN_name.sql`` files are applied in order, each
once, each in one transaction. A migration may have a companion
``NNNN_name.concurrent.sql``: ``CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT
EXISTS`` statements for indexes on tables that may already hold rows (the
CRM's leads, deals, accounts, contacts, users...). Built inside the
transaction, such an index would hold a SHARE lock on its table, blocking
every write to it, for the whole build; built concurrently, writes go on.
Those statements run one by one in autocommit mode, after the transactional
part committed; the migration is recorded as applied with ``complete =
false`` and becomes complete once every index is built and valid.

Safe from several processes at once: the whole run holds the migrations
advisory lock (a session lock, as the concurrent builds run outside any
transaction), taken by polling (see ``acquire_polling``); the others wait,
then find nothing left to do. Safe to kill -9 and re-run: a transactional
part is all or nothing, and an index build cut short leaves an invalid
index (``pg_index.indisvalid = false``) that the next run drops
(``DROP INDEX CONCURRENTLY``) and builds again; until then
``require_current`` says the schema is not current.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from pathlib import Path

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection

from crmtasks.errors import CrmtasksError
from crmtasks.pg.advisory_locks import AdvisoryLock, acquire_polling
from crmtasks.pg.sql_files import load_sql
from crmtasks.pg.transactions import quietly, transaction

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
CONCURRENT_SUFFIX = ".concurrent.sql"
_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_CONCURRENT_STATEMENT = re.compile(
    r"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+([a-z_][a-z0-9_]*)\s+ON\s", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ConcurrentIndex:
    """One statement of a ``.concurrent.sql`` file.

    Parameters:
      name(str): The index name (unquoted, lower case), to find it in the catalog.
      statement(str): ``CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS name ON ...``.
    """

    name: str
    statement: str


@dataclasses.dataclass(frozen=True)
class Migration:
    """One numbered migration: its transactional SQL file, and the companion of concurrent index builds, if any."""

    version: int
    name: str
    path: Path

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def concurrent_path(self) -> Path:
        return self.path.with_name(self.path.name[: -len(".sql")] + CONCURRENT_SUFFIX)

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def indexes(self) -> tuple[ConcurrentIndex, ...]:
        """The concurrent index builds, in file order (none without a companion file)."""
        if not self.concurrent_path.is_file():
            return ()
        return parse_concurrent(self.concurrent_path.read_text(), self.concurrent_path.name)

    @property
    def checksum(self) -> str:
        digest = hashlib.sha256(self.path.read_bytes())
        if self.concurrent_path.is_file():
            digest.update(self.concurrent_path.read_bytes())
        return digest.hexdigest()


class SchemaMissing(CrmtasksError):
    """The database lacks migrations this version of crmtasks needs."""


def parse_concurrent(text: str, file_name: str) -> tuple[ConcurrentIndex, ...]:
    """The statements of a ``.concurrent.sql`` file: ``--`` comments dropped, one statement per ``;``."""
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    indexes = []
    for statement in (part.strip() for part in code.split(";")):
        if not statement:
            continue
        match = _CONCURRENT_STATEMENT.match(statement)
        if not match:
            raise RuntimeError(f"{file_name}: not a CREATE INDEX CONCURRENTLY IF NOT EXISTS statement: "
                               f"{statement[:60]!r}")
        indexes.append(ConcurrentIndex(match.group(1).lower(), statement))
    return tuple(indexes)


def available() -> list[Migration]:
    """Every migration shipped with crmtasks, in version order."""
    migrations = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name.endswith(CONCURRENT_SUFFIX):
            if not path.with_name(path.name[: -len(CONCURRENT_SUFFIX)] + ".sql").is_file():
                raise RuntimeError(f"{path.name} has no transactional migration file next to it")
            continue
        match = _FILE_PATTERN.match(path.name)
        if not match:
            raise RuntimeError(f"migration file {path.name} is not named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migration files share a version number")
    return migrations


def recorded(conn: PgConnection) -> dict[int, bool]:
    """Version -> complete, for every migration whose transactional part is applied; {} without a ledger."""
    with conn.cursor() as cur:
        cur.execute(load_sql("crmtasks.pg", "schema_migrations_exists"))
        if not cur.fetchone()[0]:
            return {}
        cur.execute(load_sql("crmtasks.pg", "schema_migrations_read"))
        return dict(cur.fetchall())


def applied_versions(conn: PgConnection) -> set[int]:
    """Versions whose transactional part is applied (complete or not); empty when the ledger does not exist yet."""
    return set(recorded(conn))


def pending(conn: PgConnection) -> list[Migration]:
    """Migrations not applied, or applied but with index builds still to finish."""
    done = recorded(conn)
    return [m for m in available() if not done.get(m.version, False)]


def invalid_indexes(conn: PgConnection) -> list[str]:
    """Indexes the migrations build concurrently that exist but are not valid (an interrupted build)."""
    names = [index.name for migration in available() for index in migration.indexes]
    return [name for name, valid in _validity(conn, names).items() if not valid]


def schema_problem(conn: PgConnection) -> str | None:
    """Why the schema is not current, in one line (pending migrations, invalid indexes); None when it is."""
    todo = pending(conn)
    invalid = invalid_indexes(conn)
    if todo:
        return f"pending: {', '.join(m.label for m in todo)}"
    if invalid:
        return f"invalid index(es) left by an interrupted build: {', '.join(invalid)}"
    return None


def require_current(conn: PgConnection) -> None:
    """Raise SchemaMissing when migrations are pending or an index build is unfinished (the jobs need it all)."""
    try:
        problem = schema_problem(conn)
    finally:
        if not conn.autocommit:
            conn.rollback()
    if problem:
        raise SchemaMissing(f"the database schema is not up to date ({problem}); run `crmtasks migrate`")


def migrate(conn: PgConnection) -> list[Migration]:
    """Apply every pending migration, build its indexes concurrently; return those this call applied or finished.

    Parameters:
      conn(connection): A psycopg2 connection with no transaction open; it
        runs in autocommit mode during the call and is set back after.

    Idempotent and safe to run concurrently (one at a time under the
    migrations lock). Each transactional part is atomic; an index build cut
    short (even by kill -9) is dropped and built again by the next call, as
    is any invalid index of an already complete migration. Writers to the
    indexed tables never wait for an index build.
    """
    conn.rollback()
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        acquire_polling(conn, AdvisoryLock.MIGRATIONS)
        try:
            return _apply_all(conn)
        finally:
            with conn.cursor() as cur:
                quietly(cur, "SELECT pg_advisory_unlock(%s)", (AdvisoryLock.MIGRATIONS.key,))
    finally:
        if not conn.closed:
            conn.autocommit = autocommit


def _apply_all(conn: PgConnection) -> list[Migration]:
    """Under the migrations lock: each migration in order, its transactional part then its index builds."""
    with transaction(conn) as cur:
        cur.execute(load_sql("crmtasks.pg", "schema_migrations"))
    done = recorded(conn)
    touched = []
    for migration in available():
        state = done.get(migration.version)
        indexes = migration.indexes
        if state is None:
            with transaction(conn) as cur:
                cur.execute(migration.sql)
                cur.execute(load_sql("crmtasks.pg", "schema_migrations_record"),
                            {"version": migration.version, "name": migration.name,
                             "checksum": migration.checksum, "complete": not indexes})
        if indexes:
            _build_indexes(conn, migration, indexes, repair_only=state is True)
        if state is not True:
            if indexes:
                with transaction(conn) as cur:
                    cur.execute(load_sql("crmtasks.pg", "schema_migrations_complete"),
                                {"version": migration.version})
            touched.append(migration)
    return touched


def _build_indexes(conn: PgConnection, migration: Migration, indexes: tuple[ConcurrentIndex, ...], *,
                   repair_only: bool) -> None:
    """Build each index with CREATE INDEX CONCURRENTLY (autocommit), first dropping one an interrupted build left.

    With ``repair_only`` (a complete migration), only invalid indexes are
    rebuilt: a missing one may have been dropped on purpose by a later migration.
    """
    validity = _validity(conn, [index.name for index in indexes])
    for index in indexes:
        valid = validity.get(index.name)
        if valid or (repair_only and valid is None):
            continue
        with conn.cursor() as cur:
            if valid is False:
                log.warning("%s: index %s is invalid (an interrupted build): building it again",
                            migration.label, index.name)
                cur.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(index.name)))
            cur.execute(index.statement)
    still_invalid = [name for name, valid in _validity(conn, [index.name for index in indexes]).items() if not valid]
    if still_invalid:
        raise SchemaMissing(f"{migration.label}: index(es) {', '.join(still_invalid)} did not become valid")


def _validity(conn: PgConnection, names: list[str]) -> dict[str, bool]:
    """Index name -> pg_index.indisvalid, for those of ``names`` that exist."""
    if not names:
        return {}
    with conn.cursor() as cur:
        cur.execute(load_sql("crmtasks.pg", "index_validity"), {"names": names})
        return dict(cur.fetchall())


def connect(url: str) -> PgConnection:
    """A plain psycopg2 connection for schema work (outside the peewee pool)."""
    return psycopg2.connect(url, application_name="crmtasks-migrate")
