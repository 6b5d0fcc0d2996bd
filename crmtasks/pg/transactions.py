"""One transaction on a psycopg2 connection, and the clean-up statement that never hides an error.

crmtasks talks to PostgreSQL through two kinds of connection: peewee's
pooled ones, which run psycopg2 in autocommit mode (peewee sends a raw
``BEGIN``), and plain ones that jobs open in autocommit mode on purpose
(``DETACH ... CONCURRENTLY`` and ``VACUUM`` refuse to run in a transaction
block). ``transaction()`` gives both the same guarantee: the block is one
transaction, committed when it ends normally and rolled back when it raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE


@contextlib.contextmanager
def transaction(conn, *, repeatable_read: bool = False, read_only: bool = False,
                local: Mapping[str, str] | None = None,
                stamped: bool = False, first: tuple | None = None) -> Iterator[psycopg2.extensions.cursor]:
    """Run the block as one transaction on ``conn``; yields a cursor.

    Parameters:
      conn(connection): A psycopg2 connection with no transaction open, in
        autocommit mode (BEGIN/COMMIT are sent explicitly) or not
        (commit()/rollback()).
      repeatable_read(bool): One snapshot for the whole block, taken by its
        first query.
      read_only(bool): Refuse writes inside the block.
      local(dict): Settings for this transaction only (``SET LOCAL``, e.g.
        ``{"statement_timeout": "5000"}`` in ms), sent in the same round trip
        as BEGIN. They take no snapshot: the block's first query does.
      stamped(bool): End that same round trip with ``SELECT statement_timestamp()``,
        the block's first query: it takes the snapshot, and the yielded
        cursor's ``fetchone()[0]`` is the moment it was taken (an ``as_of``
        that every commit before it is visible in), at no extra round trip.
      first(tuple): (statement, params): the block's first query, sent in
        that same round trip (the yielded cursor holds its rows); it takes
        the snapshot. Not with ``stamped``.

    Atomic: a kill -9 or a raised error inside the block leaves nothing
    behind. A rollback that fails because the connection broke is ignored,
    so the caller sees the error that broke it.
    """
    if conn.get_transaction_status() != _IDLE:
        raise RuntimeError("transaction() needs a connection with no transaction open")
    if first is not None and stamped:
        raise ValueError("transaction(): first and stamped are two first queries; pass one")
    begin = _begin_statement(conn.autocommit, repeatable_read, read_only, local or {}, stamped)
    with conn.cursor() as cur:
        if first is None:
            cur.execute(begin)
        try:
            if first is not None:  # inside the try: a failed first query leaves the transaction open, aborted
                statement, params = first
                cur.execute(sql.SQL("{}; {}").format(begin, sql.SQL(statement) if isinstance(statement, str)
                                                     else statement), params)
            yield cur
        except BaseException:
            _rollback_quietly(conn, cur)
            raise
        if conn.autocommit:
            cur.execute("COMMIT")
        else:
            conn.commit()


def _begin_statement(autocommit: bool, repeatable_read: bool, read_only: bool,
                     local: Mapping[str, str], stamped: bool) -> sql.Composable:
    modes = []
    if repeatable_read:
        modes.append(sql.SQL("ISOLATION LEVEL REPEATABLE READ"))
    if read_only:
        modes.append(sql.SQL("READ ONLY"))
    keyword = sql.SQL("BEGIN" if autocommit else "SET TRANSACTION")
    parts = []
    if modes or autocommit:
        parts.append(sql.SQL(" ").join([keyword, sql.SQL(", ").join(modes)]) if modes else keyword)
    # SET LOCAL is a utility statement: unlike SELECT set_config(...) it takes no snapshot, so the
    # block's first query still takes it (callers stamp their as_of with that query).
    parts += [sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(name), sql.Literal(str(value)))
              for name, value in local.items()]
    if stamped:
        parts.append(sql.SQL("SELECT statement_timestamp()"))
    # A non-autocommit connection with nothing to set still needs a statement: psycopg2 opens the transaction.
    return sql.SQL("; ").join(parts) if parts else sql.SQL("SELECT 1")


def _rollback_quietly(conn, cur) -> None:
    if conn.closed:
        return
    if conn.autocommit:
        if conn.get_transaction_status() != _IDLE:
            quietly(cur, "ROLLBACK")
        return
    try:
        conn.rollback()
    except psycopg2.Error:
        pass  # the connection broke: the error that broke it is the one to report


def quietly(cur, statement, params=None) -> None:
    """Run a clean-up statement (ROLLBACK, an unlock) and ignore its failure.

    Used in ``except``/``finally`` blocks: when the connection is gone, the
    server cleans up by itself (a session's locks and transaction end with
    it), and a second error must not mask the one being handled.
    """
    try:
        cur.execute(statement, params)
    except psycopg2.Error:
        pass
