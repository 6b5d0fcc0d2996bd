"""Statements prepared once per connection (PREPARE/EXECUTE), run inline where preparing is not allowed.

Why: a statement over a partitioned table is planned against every
partition (audit_log has 25 and more): planning costs more than running an
index probe. A prepared statement is parsed once per connection, and
PostgreSQL switches it to a generic plan after five executions when that
plan is no worse (with partition pruning at executor start for bounds given
as parameters).

Prepared only on an autocommit connection between transactions (PREPARE
must neither open a transaction nor run, and fail, inside a caller's one);
elsewhere the same statement is sent inline. A connection that lost its
statements (``DISCARD ALL``, a new session behind a pooler) gets them again.
Which connections hold which statements is remembered in this process,
weakly (a closed connection is forgotten).

A statement may carry planner settings (``local``): on the prepared path
they are sent with ``SET LOCAL`` in the same round trip as the EXECUTE (a
multi-statement query is one implicit transaction, so they end with it and
never reach the session). The plan made under them, custom or generic, is
the one cached. Inside a caller's transaction they are not sent (they
would last to its end): the statement runs inline, or with the plan cached.
"""

from __future__ import annotations

import re
import threading
import weakref

import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_prepared_lock = threading.Lock()


class PreparedStatement:
    """One statement with positional parameters, prepared on each connection that runs it.

    Parameters:
      name(str): The prepared statement's name, unique in the process (e.g. ``crmtasks_audit_history``).
      param_types(tuple[str]): The SQL type of each parameter, in order (``"text"``, ``"bigint"``).
      build(callable): Given one placeholder per parameter (``sql.Composable``), the statement's SQL.
      local(dict|None): Planner settings for the prepared path (e.g. ``{"enable_bitmapscan": "off"}``).
    """

    def __init__(self, name: str, param_types: tuple[str, ...], build, local: dict[str, str] | None = None) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"prepared statement name {name!r} is not a lower-case SQL identifier")
        self.name = name
        settings = "".join(f"SET LOCAL {_setting_name(key)} = '{_setting_value(value)}'; "
                           for key, value in (local or {}).items())
        self._execute = "EXECUTE {} ({})".format(name, ", ".join(f"%s::{kind}" for kind in param_types))
        self._execute_alone = settings + self._execute  # only outside a transaction: SET LOCAL ends with it
        self._prepare = sql.SQL("PREPARE {} ({}) AS {}").format(
            sql.SQL(name), sql.SQL(", ").join(map(sql.SQL, param_types)),
            build([sql.SQL(f"${number}") for number in range(1, len(param_types) + 1)]))
        # named: a statement may use a parameter more than once
        self._inline = build([sql.SQL("{}::{}").format(sql.Placeholder(f"p{number}"), sql.SQL(kind))
                              for number, kind in enumerate(param_types, 1)])

    def execute(self, cursor, params: tuple, prefix: str = "") -> None:
        """Run the statement with ``params`` on ``cursor``; fetch its rows as usual.

        ``prefix``: statements sent before it in the same query string (``SET LOCAL ...; ``), so in
        the same round trip and implicit transaction; not sent with PREPARE.
        """
        conn = cursor.connection
        names = _names_on(conn)
        if self.name in names:
            try:
                alone = conn.autocommit and conn.get_transaction_status() == _IDLE
                cursor.execute(prefix + (self._execute_alone if alone else self._execute), params)
                return
            except psycopg2.errors.InvalidSqlStatementName:
                names.discard(self.name)
                if conn.get_transaction_status() != _IDLE:
                    raise  # the caller's transaction is aborted: nothing to retry inside it
        if conn.autocommit and conn.get_transaction_status() == _IDLE:
            cursor.execute(self._prepare)
            names.add(self.name)
            cursor.execute(prefix + self._execute_alone, params)
        else:
            cursor.execute(sql.SQL(prefix) + self._inline if prefix else self._inline,
                           {f"p{number}": value for number, value in enumerate(params, 1)})


def _setting_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"setting name {name!r} is not a lower-case SQL identifier")
    return name


def _setting_value(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.]{1,40}", value):
        raise ValueError(f"setting value {value!r} is not a plain word or number")
    return value


def _names_on(conn) -> set[str]:
    names = _prepared.get(conn)
    if names is None:
        with _prepared_lock:
            names = _prepared.setdefault(conn, set())
    return names
