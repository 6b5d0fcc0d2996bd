"""All activity in a time window (``activity``): "what happened in the last 24 hours / 7 days".

The answer is thousands of rows (about 7,000 a day at the seed's scale),
every column. Finding them is cheap on either a flat or a partitioned table:
the bounds are sent as literals, so PostgreSQL prunes at plan time to the
months the window touches, and within a month the BRIN index on
``occurred_at`` (rows arrive in time order) skips the blocks outside it. The
cost is in reading them: ``cursor.fetchall`` builds a tuple and a Python
object per cell (a ``datetime`` per row, a ``dict`` per jsonb value with one
``json.loads`` each), several times the database's own work. So the rows
come through ``COPY ... TO STDOUT`` as one string and are decoded only when
read (``crmtasks.pg.lazy_rows``): a caller that counts, pages, filters on one
column or writes them out does not pay for the rest. The CLI streams the
server's own csv or json straight to stdout.

Archived months are not searched (restore them first), as for ``history``.
Bad input raises ValueError before any SQL.
"""

from __future__ import annotations

import datetime

import psycopg2.extensions
from psycopg2 import sql

from crmtasks.audit.log import COLUMNS
from crmtasks.audit.months import PARENT_TABLE
from crmtasks.pg import db
from crmtasks.pg.lazy_rows import Rows, copy_rows
from crmtasks.user_text import check_text

# How each column is decoded (crmtasks.pg.lazy_rows.KINDS): occurred_at travels as PostgreSQL's ISO text with its
# offset, which the C parser (datetime.fromisoformat) reads alone.
KINDS = ("int", "timestamptz", "int", "text", "text", "int", "json", "text")
# The window's rows are sorted by (occurred_at, id) in memory rather than on disk: a week at the seed's scale
# is about 10 MB to sort, past the default work_mem of 4 MB (measured: 12% of the call). Set for the read's own
# (implicit) transaction only, when the call has the connection to itself; a sort uses what it needs, up to this.
SORT_MEMORY = "64MB"


def activity(since: datetime.datetime, until: datetime.datetime | None = None, *, entity: str | None = None,
             actor: int | None = None, connection=None) -> Rows:
    """Every audit row with ``since <= occurred_at < until``, oldest first (by occurred_at, then id).

    Parameters:
      since(datetime): Timezone-aware start (included).
      until(datetime|None): Timezone-aware end (excluded); default: no end.
      entity(str|None): Only rows about this kind of record (lead, deal, ...).
      actor(int|None): Only rows done by this user (``actor_id``).
      connection: A psycopg2 connection of the caller's (its transaction, if one is open, is used);
        default: a pooled one, borrowed for this call only.

    Returns a ``Rows`` sequence of dicts with the keys of ``crmtasks.audit.log.COLUMNS`` (occurred_at in UTC, or
    in the caller's TimeZone inside its transaction, as psycopg2 gives it; changes a dict), decoded column by
    column on first read; ``rows.tuples()`` gives ``fetchall``'s tuples.
    """
    return read_activity(activity_statement(since, until, entity=entity, actor=actor), connection=connection)


def read_activity(statement: sql.Composable, *, connection=None) -> Rows:
    """The rows of an ``activity_statement`` as ``activity`` returns them (the bench reads the flat table so)."""
    with db.using_connection(connection) as conn, conn.cursor() as cur:
        if conn.autocommit and conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            # One round trip: the settings and the COPY, one implicit transaction.
            return copy_rows(cur, statement, COLUMNS, KINDS, local={"work_mem": SORT_MEMORY, "timezone": "UTC"})
        return copy_rows(cur, statement, COLUMNS, KINDS)  # the caller's transaction, settings and all


def activity_statement(since: datetime.datetime, until: datetime.datetime | None = None, *,
                       entity: str | None = None, actor: int | None = None,
                       table: str = PARENT_TABLE) -> sql.Composed:
    """``activity``'s SELECT, checked (ValueError on bad input); ``table`` other than audit_log is for the bench."""
    _check_activity_input(since, until, entity, actor)
    conditions = [sql.SQL("occurred_at >= {}").format(sql.Literal(since))]
    if until is not None:
        conditions.append(sql.SQL("occurred_at < {}").format(sql.Literal(until)))
    if entity is not None:
        conditions.append(sql.SQL("entity = {}").format(sql.Literal(entity)))
    if actor is not None:
        conditions.append(sql.SQL("actor_id = {}").format(sql.Literal(actor)))
    return sql.SQL("SELECT {columns} FROM {table} WHERE {where} ORDER BY occurred_at, id").format(
        columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), table=sql.Identifier(table),
        where=sql.SQL(" AND ").join(conditions))


def _check_activity_input(since, until, entity, actor) -> None:
    if since is None:
        raise ValueError("since is required: a timezone-aware datetime (e.g. now - 24 hours)")
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and (not isinstance(moment, datetime.datetime) or moment.tzinfo is None):
            raise ValueError(f"{name} must be a timezone-aware datetime (got {moment!r})")
    if until is not None and until <= since:
        raise ValueError(f"until ({until.isoformat()}) must be later than since ({since.isoformat()})")
    if entity is not None:
        if not isinstance(entity, str) or not entity.strip():
            raise ValueError(f"entity must be a non-empty name such as 'lead' (got {entity!r})")
        check_text(entity, "entity")
    if actor is not None and (isinstance(actor, bool) or not isinstance(actor, int) or not -2**63 <= actor < 2**63):
        raise ValueError(f"actor must be a user id, a whole number (a bigint; got {actor!r})")
