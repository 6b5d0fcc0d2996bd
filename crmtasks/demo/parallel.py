"""The demo CRM loaded by several sessions at once, for a scratch database: what ``scripts/bench`` seeds.

Why: :func:`crmtasks.demo.seed_demo` is one transaction in one backend, so
on a 2-core machine one core idles while it runs, and at 10M leads (12 GB)
it takes about 8 minutes, most of it building indexes one after another.
Here the same statements make the same rows (every value is a pure function
of seed, column and row number; see :mod:`crmtasks.demo.value_functions`),
spread over ``sessions`` connections:

1. one transaction: lock, check the CRM is empty, drop the plain indexes
   and foreign keys (:class:`DeferredSchema`), roles and users; commit;
2. two streams at once, each one transaction: leads; accounts, then
   contacts and deals (which read accounts). Each table is still filled by
   one INSERT in id order, never split between sessions, so its rows lie on
   disk as ``seed_demo`` leaves them, about in id order as in a table grown
   by a serial id (no UNLOGGED trick either: the tables stay as they are);
3. every index built, then every foreign key added (``NOT VALID``, then
   ``VALIDATE``, which lets validations of different tables run at once),
   by a pool of sessions, largest first;
4. ANALYZE (or VACUUM ANALYZE), one table per session.

Not atomic, unlike ``seed_demo``: hence only for a database of its own that
the caller drops on failure (the benchmark's). It refuses a CRM that holds
rows (:class:`CrmNotEmpty`), so a load killed halfway is never loaded on
top of; its database lacks some indexes until dropped. ``crmtasks seed``
stays on the atomic ``seed_demo``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import threading
import time
from collections.abc import Callable, Sequence

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection

from crmtasks.demo.crm import TRANSACTION_SETTINGS, check_seed, demo_anchor, insert_rows, refuse_unless_empty
from crmtasks.demo.people import RoleTree, owner_pool, people_parameters
from crmtasks.demo.records import record_parameters
from crmtasks.demo.schema import DeferredSchema
from crmtasks.demo.size import CRM_TABLES, HISTORY_DAYS, DemoSize
from crmtasks.demo.value_functions import create_value_functions, drop_value_functions
from crmtasks.pg import transaction

# The tables each stream fills, in order; a stream only reads tables it filled itself or the people.
STREAMS = (("leads",), ("accounts", "contacts", "deals"))
# Session settings of the index and analyze sessions: room to sort, no timeout on a large table.
# (a trigram GIN index builds several times faster with 1 GB to collect its entries in than with 64 MB).
_BUILD_SETTINGS = {"maintenance_work_mem": "1GB", "statement_timeout": "0", "lock_timeout": "0"}


@dataclasses.dataclass(frozen=True)
class ParallelLoad:
    """What :func:`seed_demo_parallel` did.

    Parameters:
      rows(dict): Rows inserted per CRM table.
      seconds(dict): Wall-clock seconds per phase: people, records, indexes, foreign_keys, analyze.
    """

    rows: dict[str, int]
    seconds: dict[str, float]


def seed_demo_parallel(url: str, size: DemoSize, seed: int = 42, *, sessions: int = 2,
                       today: datetime.date | None = None, vacuum: bool = False,
                       log: Callable[[str], None] | None = None) -> ParallelLoad:
    """Fill the empty CRM of the database at ``url`` with the demo data of ``seed_demo``, ``sessions`` at a time.

    Parameters:
      url(str): A migrated database of the caller's own (see the module docstring: not atomic).
      size(DemoSize): How many rows of each kind.
      seed(int): The random seed, 0 .. 2**31-1: the same rows as ``seed_demo`` with the same seed and today.
      sessions(int): Connections working at once, 1 to 8 (default 2: one per core of a small server).
      today(date): Times are generated up to this date at 00:00 UTC (default: the current UTC date).
      vacuum(bool): VACUUM ANALYZE each table rather than ANALYZE: every page marked all-visible, as
        in a database that has run for a while (index-only scans stay index-only).
      log(callable): Called with a line after each phase.

    Raises CrmNotEmpty (a ValueError) when the CRM holds rows, ValueError for a bad argument (both
    before any row is written); a failed statement is raised after the other sessions stopped.
    """
    if not isinstance(size, DemoSize):
        raise TypeError(f"size must be a DemoSize (got {type(size).__name__})")
    check_seed(seed)
    if isinstance(sessions, bool) or not isinstance(sessions, int) or not 1 <= sessions <= 8:
        raise ValueError(f"sessions must be a whole number from 1 to 8 (got {sessions!r})")
    anchor = demo_anchor(today)
    report = log or (lambda line: None)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with contextlib.closing(_connect(url)) as conn:
        deferred, parameters, rows = _people(conn, size, seed, anchor)
    seconds["people"] = _lap(started, report, "people", rows)
    started = time.perf_counter()
    for counts in _in_sessions(url, sessions, [lambda conn, tables=tables: _stream(conn, tables, seed, anchor,
                                                                                     parameters)
                                               for tables in STREAMS]):
        rows.update(counts)
    seconds["records"] = _lap(started, report, "records", rows)
    started = time.perf_counter()
    _in_sessions(url, sessions, [lambda conn, ddl=ddl: _run(conn, sql.SQL(ddl))
                                 for ddl in _largest_first(url, [index[2] for index in deferred.indexes])])
    seconds["indexes"] = _lap(started, report, f"{len(deferred.indexes)} indexes")
    started = time.perf_counter()
    _add_foreign_keys(url, sessions, deferred)
    seconds["foreign_keys"] = _lap(started, report, f"{len(deferred.foreign_keys)} foreign keys")
    started = time.perf_counter()
    command = sql.SQL("VACUUM ANALYZE {}" if vacuum else "ANALYZE {}")
    _in_sessions(url, sessions, [lambda conn, table=table: _run(conn, command.format(sql.Identifier(table)))
                                 for table in _largest_first_tables(rows)])
    seconds["analyze"] = _lap(started, report, "vacuum analyze" if vacuum else "analyze")
    return ParallelLoad(rows={table: rows[table] for table in CRM_TABLES}, seconds=seconds)


def _connect(url: str) -> PgConnection:
    return psycopg2.connect(url, application_name="crmtasks-demo-parallel")


def _lap(started: float, report: Callable[[str], None], what: str, rows: dict | None = None) -> float:
    elapsed = round(time.perf_counter() - started, 2)
    counted = f" ({', '.join(f'{table} {count:,}' for table, count in rows.items())})" if rows else ""
    report(f"{what}: {elapsed:.1f} s{counted}")
    return elapsed


def _people(conn: PgConnection, size: DemoSize, seed: int, anchor: datetime.datetime):
    """Phase 1, one transaction: check, drop the deferred schema, insert roles and users; the streams' parameters."""
    with transaction(conn, local=TRANSACTION_SETTINGS) as cur:
        cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.SQL(", ").join(map(sql.Identifier, CRM_TABLES))))
        refuse_unless_empty(cur)
        deferred = DeferredSchema.capture(cur, CRM_TABLES)
        deferred.drop(cur)
        create_value_functions(cur, seed, anchor)
        tree = RoleTree.for_users(size.users)
        parameters = {**dataclasses.asdict(size), **people_parameters(tree), **record_parameters(anchor),
                      "history_seconds": HISTORY_DAYS * 86400}
        rows = {table: insert_rows(cur, table, parameters) for table in ("roles", "users")}
        parameters["owners"] = owner_pool(cur, tree)
        drop_value_functions(cur)
    return deferred, parameters, rows


def _stream(conn: PgConnection, tables: Sequence[str], seed: int, anchor: datetime.datetime,
            parameters: dict) -> dict[str, int]:
    """Phase 2: fill ``tables`` in order in one transaction of this session (value functions are per session)."""
    with transaction(conn, local=TRANSACTION_SETTINGS) as cur:
        create_value_functions(cur, seed, anchor)
        counts = {table: insert_rows(cur, table, parameters) for table in tables}
        drop_value_functions(cur)
    return counts


def _run(conn: PgConnection, statement: sql.Composable) -> None:
    with conn.cursor() as cur:
        cur.execute(statement)


def _largest_first(url: str, statements: list[str]) -> list[str]:
    """Index builds ordered by their table's size, largest first, GIN before btree: the longest start first."""
    with contextlib.closing(_connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname = ANY(%s)",
                    (list(CRM_TABLES),))
        sizes = dict(cur.fetchall())

    def weight(statement: str) -> tuple[int, bool]:
        table = statement.split(" ON ", 1)[1].split()[0].split(".")[-1]
        return sizes.get(table, 0), " USING gin " in statement

    return sorted(statements, key=weight, reverse=True)


def _largest_first_tables(rows: dict[str, int]) -> list[str]:
    return sorted(CRM_TABLES, key=lambda table: rows.get(table, 0), reverse=True)


def _add_foreign_keys(url: str, sessions: int, deferred: DeferredSchema) -> None:
    """Every foreign key back: added NOT VALID (instant) in one session, then validated ``sessions`` at a time.

    VALIDATE takes SHARE UPDATE EXCLUSIVE on its own table only, so validations of different tables
    run at once, where ADD CONSTRAINT's check would lock the referenced table against the others.
    """
    with contextlib.closing(_connect(url)) as conn, transaction(conn) as cur:
        for schema, table, name, definition in deferred.foreign_keys:
            cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID").format(
                sql.Identifier(schema, table), sql.Identifier(name), sql.SQL(definition)))
    _in_sessions(url, sessions, [
        lambda conn, schema=schema, table=table, name=name: _run(conn, sql.SQL(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}").format(sql.Identifier(schema, table), sql.Identifier(name)))
        for schema, table, name, _ in deferred.foreign_keys])


def _in_sessions(url: str, sessions: int, tasks: list[Callable[[PgConnection], object]]) -> list:
    """Run ``tasks`` (each given an autocommit connection) on ``sessions`` connections; their results in order.

    The first failure cancels the statements still running in the other sessions and is raised.
    """
    if not tasks:
        return []
    local = threading.local()
    opened: list[PgConnection] = []
    lock = threading.Lock()

    def session() -> PgConnection:
        if getattr(local, "conn", None) is None:
            conn = _connect(url)
            conn.autocommit = True
            with conn.cursor() as cur:
                for name, value in _BUILD_SETTINGS.items():
                    cur.execute("SELECT set_config(%s, %s, false)", (name, value))
            with lock:
                opened.append(conn)
            local.conn = conn
        return local.conn

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(sessions, len(tasks))) as pool:
            futures = [pool.submit(lambda task=task: task(session())) for task in tasks]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                with lock:
                    for conn in opened:
                        conn.cancel()
                raise
    finally:
        for conn in opened:
            conn.close()
