"""Writing and reading the audit log: ``record``, ``record_many`` and ``history``.

A row whose month has no partition yet is not lost and not parked in a
DEFAULT partition (there is none, so old months can be detached
CONCURRENTLY): the insert fails with "no partition of relation found for
row", the month is created on the spot (``ensure_partition``) and the insert
is retried once. This only happens when the daily job has not run for
longer than its premake window. Rows for months older than the retention
window are refused (``AuditRowTooOld``): those months may already be
archived, and a fresh partition for them would later be archived over the
verified archive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
from collections.abc import Iterable

import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from crmtasks.audit.months import PARENT_TABLE, Month, current_month
from crmtasks.audit.partitions import ensure_partition
from crmtasks.errors import CrmtasksError
from crmtasks.pg import db, transaction
from crmtasks.pg.prepared import PreparedStatement
from crmtasks.settings import get_settings
from crmtasks.user_text import check_text

COLUMNS = ("id", "occurred_at", "actor_id", "action", "entity", "entity_id", "changes", "ip_address")


class AuditRowTooOld(CrmtasksError, ValueError):
    """The row's month is older than the retention window: it may be archived already."""


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One audit record.

    Parameters:
      action(str): What was done: create, update, delete, view, export, login, ...
      entity(str): The kind of record acted on: lead, deal, contact, account, user, ...
      entity_id(int): Its id.
      actor_id(int|None): users.id of who did it; None = the system.
      changes(dict|None): What changed, e.g. {"status": ["new", "qualified"]}; JSON-serialisable.
      occurred_at(datetime|None): When (timezone-aware); None = the database's now().
      ip_address(str|None): Client address, IPv4 or IPv6.
      id(int|None): Set on rows read back; ignored when writing.
    """

    action: str
    entity: str
    entity_id: int
    actor_id: int | None = None
    changes: dict | None = None
    occurred_at: datetime.datetime | None = None
    ip_address: str | None = None
    id: int | None = None


_INSERT_MANY = sql.SQL("""
INSERT INTO {table} (occurred_at, actor_id, action, entity, entity_id, changes, ip_address)
SELECT coalesce(occurred_at, now()), actor_id, action, entity, entity_id, coalesce(changes, '{{}}'::jsonb), ip_address
FROM unnest(%s::timestamptz[], %s::bigint[], %s::text[], %s::text[], %s::bigint[], %s::jsonb[], %s::inet[])
     AS entry (occurred_at, actor_id, action, entity, entity_id, changes, ip_address)
RETURNING id
""").format(table=sql.Identifier(PARENT_TABLE))


def record(action: str, entity: str, entity_id: int, *, actor_id: int | None = None, changes: dict | None = None,
           occurred_at: datetime.datetime | None = None, ip_address: str | None = None, connection=None,
           retention_months: int | None = None) -> int:
    """Append one audit row and return its id.

    Runs in the caller's transaction when one is open (committing is the
    caller's business) and otherwise in autocommit. See ``record_many``.
    """
    entry = AuditEntry(action, entity, entity_id, actor_id, changes, occurred_at, ip_address)
    return record_many([entry], connection=connection, retention_months=retention_months)[0]


def record_many(entries: Iterable[AuditEntry], *, connection=None, retention_months: int | None = None) -> list[int]:
    """Append many audit rows in one statement (all or none) and return their ids, in order.

    Parameters:
      entries: The rows; ``id`` is ignored.
      connection: A psycopg2 connection of the caller's; default: a pooled one, borrowed for this call
        only (this thread's own when it has one open, e.g. inside ``database.atomic()``).
      retention_months(int|None): Refuse rows older than this many whole months
        (default: CRMTASKS_AUDIT_RETENTION_MONTHS).

    A month without a partition is created on demand (see the module doc), in
    the caller's transaction, behind a savepoint so the caller's earlier work
    survives the failed first attempt.
    """
    entries = list(entries)
    if not entries:
        return []
    oldest = current_month().plus(-_retention(retention_months))
    for entry in entries:
        if entry.occurred_at is not None and Month.of(entry.occurred_at) < oldest:
            raise AuditRowTooOld(
                f"audit row dated {entry.occurred_at.isoformat()} is older than the retention window (from {oldest})")
    params = (
        [e.occurred_at for e in entries], [e.actor_id for e in entries], [e.action for e in entries],
        [e.entity for e in entries], [e.entity_id for e in entries],
        [None if e.changes is None else json.dumps(e.changes) for e in entries], [e.ip_address for e in entries],
    )
    with db.using_connection(connection) as conn:
        return _insert(conn, entries, params)


def _insert(conn, entries: list[AuditEntry], params: tuple) -> list[int]:
    in_transaction_block = (not conn.autocommit
                            or conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE)
    with conn.cursor() as cur:
        if in_transaction_block:
            cur.execute("SAVEPOINT audit_record")
        try:
            cur.execute(_INSERT_MANY, params)
        except psycopg2.errors.CheckViolation as error:
            if not _is_missing_partition(error):
                raise
            if in_transaction_block:
                cur.execute("ROLLBACK TO SAVEPOINT audit_record")
            _create_missing_months(conn, entries, in_transaction_block)
            cur.execute(_INSERT_MANY, params)
        ids = [row[0] for row in cur.fetchall()]
        if in_transaction_block:
            cur.execute("RELEASE SAVEPOINT audit_record")
        return ids


def history(entity: str, entity_id: int, since: datetime.datetime | None = None,
            until: datetime.datetime | None = None, *, limit: int | None = None, connection=None) -> list[AuditEntry]:
    """The audit rows of one record, oldest first, with ``since <= occurred_at < until``.

    The statement is prepared once per connection: planning it against every
    partition costs more than running it. It is planned without bitmap scans:
    a record's rows are a few per month, scattered, and one plain index scan
    per month costs half of a bitmap scan's setup, which the planner prefers
    for scattered rows (measured: 0.17 vs 0.32 ms of server time over 25
    months for a record with 90 rows). Its generic plan is used from the
    first call on, with or without bounds: PostgreSQL prunes the partitions
    outside ``since``/``until`` at executor start, so a one-month window
    still reads one partition whatever the size of the log, without planning
    each call (a custom plan, which PostgreSQL otherwise keeps choosing for a
    bounded history, costs 0.2 ms of planning for 0.07 ms of execution).
    Archived months are not searched (restore them first). Bad input raises
    ValueError before any SQL.
    """
    _check_history_input(entity, entity_id, since, until, limit)
    statement = _HISTORY[since is not None, until is not None]
    params = (entity, entity_id, *(bound for bound in (since, until) if bound is not None), limit)
    with db.using_connection(connection) as conn, conn.cursor() as cur:
        statement.execute(cur, params)
        rows = cur.fetchall()
    return [_entry(row) for row in rows]


def _entry(row: tuple) -> AuditEntry:
    """An AuditEntry from a row of ``COLUMNS``, its fields set at once: a frozen dataclass's ``__init__`` sets
    them one ``object.__setattr__`` at a time, which was a fifth of ``history``'s time for a busy record."""
    entry = object.__new__(AuditEntry)
    entry.__dict__.update(zip(COLUMNS, row))
    return entry


# How history's statement is planned (see ``history``): plain index scans, and the generic plan from the first call
# on, not after five custom plans on each new connection. Without a bound there is nothing to prune, so a custom plan
# is the generic plan plus planning every partition. With a bound, PostgreSQL's own choice stays with custom plans
# (their estimate, pruned at plan time, is below the generic plan's, which covers every month), paying planning on
# every call (measured over 25 months: 0.21 ms of planning for 0.07 ms of execution, against 0.03 ms to start the
# generic plan, which prunes the months out of range at executor start). The generic plan takes an ACCESS SHARE lock
# on every attached month for the statement's instant, which no maintenance step of ours conflicts with (counting a
# month takes SHARE, detaching is CONCURRENTLY, and a dropped month is detached first).
HISTORY_PLANNING = {"enable_bitmapscan": "off", "plan_cache_mode": "force_generic_plan"}


def _history_statement(has_since: bool, has_until: bool) -> PreparedStatement:
    """``history``'s statement for which bounds are given; prepared per connection (planning 25+ partitions
    costs more than the index probes), a NULL limit meaning all rows."""
    kinds = ("text", "bigint") + ("timestamptz",) * (has_since + has_until) + ("bigint",)

    def build(params):
        conditions = [sql.SQL("entity = {}").format(params[0]), sql.SQL("entity_id = {}").format(params[1])]
        bounds = iter(params[2:-1])
        if has_since:
            conditions.append(sql.SQL("occurred_at >= {}").format(next(bounds)))
        if has_until:
            conditions.append(sql.SQL("occurred_at < {}").format(next(bounds)))
        return sql.SQL("SELECT {columns} FROM {table} WHERE {where} ORDER BY occurred_at, id LIMIT {limit}").format(
            columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), table=sql.Identifier(PARENT_TABLE),
            where=sql.SQL(" AND ").join(conditions), limit=params[-1])

    return PreparedStatement(f"crmtasks_audit_history_{int(has_since)}{int(has_until)}", kinds, build,
                             local=HISTORY_PLANNING)


_HISTORY = {(since, until): _history_statement(since, until) for since in (False, True) for until in (False, True)}


def _check_history_input(entity, entity_id, since, until, limit) -> None:
    if not isinstance(entity, str) or not entity.strip():
        raise ValueError(f"entity must be a non-empty name such as 'lead' (got {entity!r})")
    check_text(entity, "entity")
    if isinstance(entity_id, bool) or not isinstance(entity_id, int) or not -2**63 <= entity_id < 2**63:
        raise ValueError(f"entity_id must be a whole number (a bigint; got {entity_id!r})")
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and (not isinstance(moment, datetime.datetime) or moment.tzinfo is None):
            raise ValueError(f"{name} must be a timezone-aware datetime (got {moment!r})")
    if since is not None and until is not None and until <= since:
        raise ValueError(f"until ({until.isoformat()}) must be later than since ({since.isoformat()})")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number from 1 (got {limit!r})")


def history_query(entity: str, entity_id: int, since=None, until=None, connection=None) -> str:
    """The SQL ``history`` runs, for EXPLAIN (tests and operators checking pruning)."""
    with db.using_connection(connection) as conn:
        return _history_sql(entity, entity_id, since, until).as_string(conn)


def record_conditions(entity, entity_id, since=None, until=None) -> list[sql.Composable]:
    """One record's rows with ``since <= occurred_at < until``, as literals so the planner prunes months at plan time."""
    conditions = [sql.SQL("entity = {}").format(sql.Literal(entity)),
                  sql.SQL("entity_id = {}").format(sql.Literal(entity_id))]
    if since is not None:
        conditions.append(sql.SQL("occurred_at >= {}").format(sql.Literal(since)))
    if until is not None:
        conditions.append(sql.SQL("occurred_at < {}").format(sql.Literal(until)))
    return conditions


def _history_sql(entity, entity_id, since, until):
    conditions = record_conditions(entity, entity_id, since, until)
    return sql.SQL("SELECT {columns} FROM {table} WHERE {where} ORDER BY occurred_at, id").format(
        columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
        table=sql.Identifier(PARENT_TABLE),
        where=sql.SQL(" AND ").join(conditions),
    )


def _is_missing_partition(error: psycopg2.errors.CheckViolation) -> bool:
    """"no partition of relation ... found for row": SQLSTATE 23514 on audit_log with no constraint name.

    Decided from the error's fields, not its message text, which depends on lc_messages.
    """
    return error.diag.table_name == PARENT_TABLE and error.diag.constraint_name is None


def _create_missing_months(conn, entries: list[AuditEntry], in_transaction_block: bool) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT now()")
        now = cur.fetchone()[0]
    months = sorted({Month.of(e.occurred_at or now) for e in entries})
    # Outside a transaction block, make the lock, CREATE and ATTACH one transaction of their own.
    with contextlib.nullcontext() if in_transaction_block else transaction(conn):
        for month in months:
            ensure_partition(conn, month)  # a no-op for months that exist


def _retention(retention_months: int | None) -> int:
    if retention_months is not None:
        return retention_months
    return get_settings().audit_retention_months

