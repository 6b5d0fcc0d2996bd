"""Fill an empty CRM with demo data in one transaction: what ``crmtasks seed`` runs.

Why: the maintenance jobs only show what they do on a CRM of realistic size
and shape: skewed owners and vocabularies, NULLs where people leave fields
blank, two years of history. This fills one in seconds.

How: one ``INSERT ... SELECT ... FROM generate_series`` per table; Python only
sends the statements. Every value is a pure function of (seed, table column,
row number) (see :mod:`crmtasks.demo.value_functions`), so the result does
not depend on the query plan.

Guarantees:

* Deterministic: the same seed, :class:`DemoSize` and ``today`` give the same
  rows, ids included, in any database (checked: PostgreSQL 15 and 18 on
  x86-64 give byte-identical tables; ``hashint8extended`` is stable across
  versions because hash partitioning depends on it).
  Times are relative to ``today`` at 00:00 UTC (default: the current UTC
  date), so two runs on the same day are identical.
* Atomic: all of it is one transaction (:func:`crmtasks.pg.transaction`); an
  error or a kill -9 halfway leaves the CRM as it was, and running again works.
* Only an empty CRM is filled (:class:`CrmNotEmpty` otherwise) unless
  ``replace=True``, which empties the CRM tables first (never ``task_runs``).
* The schema is left as it was: the foreign keys and plain indexes dropped
  for speed are rebuilt inside the same transaction
  (:mod:`crmtasks.demo.schema`), and the value functions live in ``pg_temp``
  and are dropped before commit.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import cursor as PgCursor

from crmtasks.demo.people import RoleTree, owner_pool, people_parameters
from crmtasks.demo.records import record_parameters
from crmtasks.demo.schema import DeferredSchema
from crmtasks.demo.size import CRM_TABLES, HISTORY_DAYS, DemoSize
from crmtasks.demo.value_functions import create_value_functions, drop_value_functions
from crmtasks.errors import CrmtasksError
from crmtasks.pg import load_sql, transaction

Progress = Callable[[str, int, int], None]
# What ``progress`` is called with, in order: one step per table, then these two.
STEPS = (*CRM_TABLES, "indexes", "analyze")

_LARGEST_SEED = 2**31 - 1
# For this transaction only: fast commit (a crash loses demo data, nothing
# else), room for the index builds, no statement timeout for a large CRM, and
# a CRM in use (a long transaction on a CRM table) makes the load fail after
# 30 s instead of hanging.
TRANSACTION_SETTINGS = {
    "synchronous_commit": "off",
    "maintenance_work_mem": "256MB",
    "statement_timeout": "0",
    "lock_timeout": "30s",
    "TimeZone": "UTC",
}


class CrmNotEmpty(CrmtasksError, ValueError):
    """The CRM tables already hold rows, so no demo data was added (a ValueError, like every refusal)."""


def crm_is_empty(conn: PgConnection) -> bool:
    """True when no CRM table (roles, users, accounts, contacts, leads, deals) holds a row.

    Runs one read-only query in the connection's current transaction (and
    leaves it open on a connection that is not in autocommit mode).

    Parameters:
      conn(connection): A psycopg2 connection to a migrated database.
    """
    with conn.cursor() as cur:
        return not _tables_with_rows(cur)


def seed_demo(
    conn: PgConnection,
    size: DemoSize,
    seed: int = 42,
    *,
    replace: bool = False,
    progress: Progress | None = None,
    today: datetime.date | None = None,
) -> dict[str, int]:
    """Fill the empty CRM with demo data in one transaction; return the rows per table.

    The Python side of ``crmtasks seed``.

    Parameters:
      conn(connection): A psycopg2 connection, in autocommit mode or not; a
        transaction the caller left open on it is rolled back first, and the
        demo data is committed on success.
      size(DemoSize): How many rows of each kind.
      seed(int): The random seed, 0 .. 2**31-1; the same seed gives the same CRM.
      replace(bool): Empty the CRM tables first (TRUNCATE ... CASCADE: tables
        that reference them are emptied too; ``task_runs`` is kept).
      progress(callable): Called as ``progress(step, done, total)`` before each
        step (a table, then "indexes", then "analyze"; see :data:`STEPS`) and
        as ``progress("done", total, total)`` after the commit. An exception
        it raises rolls everything back.
      today(date): Times are generated up to this date at 00:00 UTC; not in
        the future (default: the current UTC date).

    Raises CrmNotEmpty (a ValueError) when the CRM holds rows and not
    ``replace``; ValueError for a bad seed or date, TypeError for a size that
    is not a DemoSize, both before anything reaches the database.
    """
    if not isinstance(size, DemoSize):
        raise TypeError(f"size must be a DemoSize (got {type(size).__name__})")
    check_seed(seed)
    anchor = demo_anchor(today)
    report = progress or (lambda step, done, total: None)
    conn.rollback()  # the caller's open transaction, e.g. crm_is_empty's read (nothing to do in autocommit mode)
    with transaction(conn, local=TRANSACTION_SETTINGS) as cur:
        counts = _fill_crm(cur, size, seed, anchor, replace=replace, report=report)
    report("done", len(STEPS), len(STEPS))
    return counts


def check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _LARGEST_SEED:
        raise ValueError(f"seed must be a whole number from 0 to {_LARGEST_SEED} (got {seed!r})")


def demo_anchor(today: datetime.date | None) -> datetime.datetime:
    """``today`` at 00:00 UTC: the moment every generated time is relative to."""
    utc_today = datetime.datetime.now(datetime.timezone.utc).date()
    if today is None:
        today = utc_today
    if isinstance(today, datetime.datetime) or not isinstance(today, datetime.date):
        raise ValueError(f"today must be a date (got {today!r})")  # noqa: TRY004 - like the other bad arguments
    if today > utc_today:
        raise ValueError(f"today must not be in the future (got {today}, the UTC date is {utc_today})")
    return datetime.datetime.combine(today, datetime.time(0), tzinfo=datetime.timezone.utc)


def _fill_crm(cur: PgCursor, size: DemoSize, seed: int, anchor: datetime.datetime, *,
              replace: bool, report: Progress) -> dict[str, int]:
    """Everything inside the transaction, in order: lock, check, drop, insert, rebuild, analyze, clean up."""
    _lock_crm_tables(cur)
    _empty_or_refuse(cur, replace)
    create_value_functions(cur, seed, anchor)
    deferred = DeferredSchema.capture(cur, CRM_TABLES)
    deferred.drop(cur)
    tree = RoleTree.for_users(size.users)
    parameters = {
        **dataclasses.asdict(size),
        **people_parameters(tree),
        **record_parameters(anchor),
        "history_seconds": HISTORY_DAYS * 86400,
    }
    counts: dict[str, int] = {}
    for done, table in enumerate(CRM_TABLES):
        report(table, done, len(STEPS))
        if table == "accounts":  # the users exist now; every later table picks owners among them
            parameters["owners"] = owner_pool(cur, tree)
        counts[table] = insert_rows(cur, table, parameters)
    report("indexes", len(CRM_TABLES), len(STEPS))
    deferred.restore(cur)
    report("analyze", len(CRM_TABLES) + 1, len(STEPS))
    cur.execute(sql.SQL("ANALYZE {}").format(_crm_table_list()))
    drop_value_functions(cur)
    return counts


def _crm_table_list() -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, CRM_TABLES))


def _lock_crm_tables(cur: PgCursor) -> None:
    """Exclusive from the start: the load alters the tables, and two loads must not interleave."""
    cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(_crm_table_list()))


def _tables_with_rows(cur: PgCursor) -> list[str]:
    checks = sql.SQL(", ").join(
        sql.SQL("EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table)) for table in CRM_TABLES
    )
    cur.execute(sql.SQL("SELECT {}").format(checks))
    return [table for table, has_rows in zip(CRM_TABLES, cur.fetchone()) if has_rows]


def _empty_or_refuse(cur: PgCursor, replace: bool) -> None:
    if replace:
        if _tables_with_rows(cur):
            cur.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(_crm_table_list()))
        return
    refuse_unless_empty(cur)


def refuse_unless_empty(cur: PgCursor) -> None:
    """Raise CrmNotEmpty, naming the tables, when a CRM table holds a row (the tables locked by the caller)."""
    occupied = _tables_with_rows(cur)
    if occupied:
        raise CrmNotEmpty(
            f"the CRM already holds data (in {', '.join(occupied)}); "
            "demo data goes into an empty CRM only: use --replace (replace=True) to empty it first"
        )


def insert_rows(cur: PgCursor, table: str, parameters: dict[str, object]) -> int:
    """Run ``sql/<table>.sql`` and move the table's id sequence past the new rows; return the rows inserted.

    The INSERT gives explicit ids 1..rows, so without the ``setval`` the next
    row the application inserts would collide with id 1.
    """
    cur.execute(load_sql("crmtasks.demo", table), parameters)
    rows = cur.rowcount
    cur.execute(load_sql("crmtasks.demo", "advance_id_sequence"), {"table": table, "rows": rows})
    return rows
