"""Reading one record's facts and the current epoch in one round trip.

Every check reads the record's row live (owner, criteria fields, account
owner): a reassigned record or a changed field counts at the very next check
without any cache invalidation. The epoch comes in the same statement, so the
record and the epoch are from one snapshot, at the cost of no extra round trip.

The statement is prepared once per connection (PREPARE/EXECUTE saves the
parse and plan of every call: tens of microseconds of a ~0.2 ms check). It is
prepared only on an idle connection (never inside a caller's transaction);
a connection that lost it (DISCARD ALL) gets it again.
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


def _record_query(entity: SharedEntity, placeholder: sql.Composable) -> sql.Composable:
    """epoch, token, id, owner_id, <criteria fields>, account owner (NULL when none) of one record."""
    record = sql.Identifier("record")
    columns = [sql.SQL("{}.{}").format(record, sql.Identifier(name)) for name in ("id", "owner_id", *entity.criteria_fields)]
    if entity.account_column:
        account_owner = sql.SQL("account.owner_id")
        account_join = sql.SQL(" LEFT JOIN accounts AS account ON account.id = record.{}").format(
            sql.Identifier(entity.account_column))
    else:
        account_owner, account_join = sql.SQL("NULL::bigint"), sql.SQL("")
    return sql.SQL(
        "SELECT epoch.epoch, epoch.token::text, {columns}, {account_owner} "
        "FROM sharing_epoch AS epoch LEFT JOIN {table} AS record ON record.id = {placeholder}{account_join}"
    ).format(columns=sql.SQL(", ").join(columns), account_owner=account_owner, table=sql.Identifier(entity.table),
             placeholder=placeholder, account_join=account_join)


def _statement_name(entity: SharedEntity) -> str:
    """A fixed identifier (lower-case letters and underscores only, so it needs no quoting)."""
    return f"crmtasks_sharing_record_{entity.name}"


def fetch_record(cursor, entity_name: str, record_id: int) -> tuple[Epoch, RecordFacts | None]:
    """``(current epoch, the record's facts or None when there is no such record)``, one round trip."""
    entity = ENTITIES[entity_name]
    conn = cursor.connection
    name = _statement_name(entity)
    with _prepared_lock:
        names = _prepared.setdefault(conn, set())
    # PREPARE only on an autocommit connection between transactions: it must
    # neither open a transaction nor run inside (and abort) a caller's one.
    idle = conn.autocommit and conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    if name not in names and idle:
        cursor.execute(sql.SQL("PREPARE {} (bigint) AS {}").format(sql.SQL(name), _record_query(entity, sql.SQL("$1"))))
        names.add(name)
    if name in names:
        try:
            cursor.execute(f"EXECUTE {name} (%s)", (record_id,))
        except psycopg2.errors.InvalidSqlStatementName:
            names.discard(name)
            if not idle:
                raise  # the caller's transaction is aborted: nothing to retry inside it
            return fetch_record(cursor, entity_name, record_id)
    else:
        cursor.execute(_record_query(entity, sql.Placeholder()), (record_id,))
    row = cursor.fetchone()
    epoch = Epoch(int(row[0]), str(row[1]))
    if row[2] is None:
        return epoch, None
    fields = dict(zip(entity.criteria_fields, row[4:4 + len(entity.criteria_fields)]))
    return epoch, RecordFacts(owner_id=row[3], fields=fields, account_owner_id=row[-1])
