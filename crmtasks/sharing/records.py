"""Reading records' facts and the current epoch in one round trip: one record, or a page of them.

Every check reads the record's row live (owner, criteria fields, account
owner): a reassigned record or a changed field counts at the very next check
without any cache invalidation. The epoch comes in the same statement, so the
record and the epoch are from one snapshot, at the cost of no extra round trip.

The statements (one record; an array of ids) are prepared once per
connection (PREPARE/EXECUTE saves the parse and plan of every call: tens of
microseconds of a ~0.2 ms check). They are prepared only on an idle
connection (never inside a caller's transaction); a connection that lost
them (DISCARD ALL) gets them again.

In ``notify`` mode the same facts are also remembered between checks
(crmtasks.sharing.cache.LocalRecordCache), forgotten when a notification
says the record changed.
"""

from __future__ import annotations

import threading
import weakref

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from crmtasks.sharing.entities import ENTITIES, SharedEntity
from crmtasks.sharing.visibility import Epoch, RecordFacts

_EPOCH_SQL = "SELECT epoch, token::text FROM sharing_epoch"

# connection -> names of the statements prepared on it (a connection is used by one thread at a time).
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_prepared_lock = threading.Lock()


def read_epoch(cursor) -> Epoch:
    """The current sharing epoch (a one-row table: well under a millisecond)."""
    cursor.execute(_EPOCH_SQL)
    number, token = cursor.fetchone()
    return Epoch(int(number), str(token))


def _record_query(entity: SharedEntity, match: sql.Composable) -> sql.Composable:
    """epoch, token, then per record matching ``match``: id, owner_id, <criteria fields>, account id and
    account owner (NULL when none). One row of NULLs after the epoch when no record matches."""
    record = sql.Identifier("record")
    columns = [sql.SQL("{}.{}").format(record, sql.Identifier(name)) for name in ("id", "owner_id", *entity.criteria_fields)]
    if entity.account_column:
        account_id = sql.SQL("record.{}").format(sql.Identifier(entity.account_column))
        account_owner = sql.SQL("account.owner_id")
        account_join = sql.SQL(" LEFT JOIN accounts AS account ON account.id = {}").format(account_id)
    else:
        account_id, account_owner, account_join = sql.SQL("NULL::bigint"), sql.SQL("NULL::bigint"), sql.SQL("")
    return sql.SQL(
        "SELECT epoch.epoch, epoch.token::text, {columns}, {account_id}, {account_owner} "
        "FROM sharing_epoch AS epoch LEFT JOIN {table} AS record ON {match}{account_join}"
    ).format(columns=sql.SQL(", ").join(columns), account_id=account_id, account_owner=account_owner,
             table=sql.Identifier(entity.table), match=match, account_join=account_join)


def _one(placeholder: sql.Composable) -> sql.Composable:
    return sql.SQL("record.id = {}").format(placeholder)


def _any(placeholder: sql.Composable) -> sql.Composable:
    return sql.SQL("record.id = ANY({})").format(placeholder)


def _statement_name(entity: SharedEntity, batch: bool) -> str:
    """A fixed identifier (lower-case letters and underscores only, so it needs no quoting)."""
    return f"crmtasks_sharing_{'records' if batch else 'record'}_{entity.name}"


def _execute(cursor, entity: SharedEntity, batch: bool, value) -> None:
    """Run the record query of ``entity`` for ``value`` (an id, or a list of ids with ``batch``), prepared when it can be."""
    conn = cursor.connection
    name = _statement_name(entity, batch)
    match, param_type = (_any, "bigint[]") if batch else (_one, "bigint")
    with _prepared_lock:
        names = _prepared.setdefault(conn, set())
    # PREPARE only on an autocommit connection between transactions: it must
    # neither open a transaction nor run inside (and abort) a caller's one.
    idle = conn.autocommit and conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    if name not in names and idle:
        cursor.execute(sql.SQL("PREPARE {} ({}) AS {}").format(sql.SQL(name), sql.SQL(param_type),
                                                               _record_query(entity, match(sql.SQL("$1")))))
        names.add(name)
    if name in names:
        try:
            cursor.execute(f"EXECUTE {name} (%s::{param_type})", (value,))
        except psycopg2.errors.InvalidSqlStatementName:
            names.discard(name)
            if not idle:
                raise  # the caller's transaction is aborted: nothing to retry inside it
            _execute(cursor, entity, batch, value)
    else:
        cursor.execute(_record_query(entity, match(sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(param_type)))),
                       (value,))


def _facts(entity: SharedEntity, row) -> RecordFacts:
    fields = dict(zip(entity.criteria_fields, row[4:4 + len(entity.criteria_fields)]))
    return RecordFacts(owner_id=row[3], fields=fields, account_owner_id=row[-1], account_id=row[-2])


def fetch_record(cursor, entity_name: str, record_id: int) -> tuple[Epoch, RecordFacts | None]:
    """``(current epoch, the record's facts or None when there is no such record)``, one round trip."""
    entity = ENTITIES[entity_name]
    _execute(cursor, entity, False, record_id)
    row = cursor.fetchone()
    epoch = Epoch(int(row[0]), str(row[1]))
    return epoch, (None if row[2] is None else _facts(entity, row))


def fetch_records(cursor, entity_name: str, record_ids: list[int]) -> tuple[Epoch, dict[int, RecordFacts]]:
    """``(current epoch, {id: facts} of those of ``record_ids`` that exist)``, one round trip for any number of ids.

    ``record_ids`` must be ints within bigint range (crmtasks.sharing.checker checks them).
    """
    entity = ENTITIES[entity_name]
    _execute(cursor, entity, True, list(record_ids))
    rows = cursor.fetchall()
    epoch = Epoch(int(rows[0][0]), str(rows[0][1]))
    return epoch, {row[2]: _facts(entity, row) for row in rows if row[2] is not None}
