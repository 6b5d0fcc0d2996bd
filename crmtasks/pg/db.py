"""The peewee database object every model is bound to, and how it is opened.

``database`` is a proxy: models declare against it at import time and the
real pooled database is attached by ``bind`` when a process first needs it
(after any fork, so no connection ever crosses one). Units of work open and
close connections explicitly; in workers the DatabaseConnection middleware
does that around each message.
"""

from __future__ import annotations

import contextlib
import os
from urllib.parse import urlsplit

import peewee
import psycopg2.extensions
from playhouse.postgres_ext import PooledPostgresqlExtDatabase

from crmtasks.services import urls as services
from crmtasks.settings import Settings, get_settings

database = peewee.DatabaseProxy()
# (pid, settings) the proxy's database was opened for; see bind().
_bound_for: tuple[int, Settings] | None = None

# Seconds an idle pooled connection may live before it is replaced.
_STALE_TIMEOUT_S = 300


def open_database(url: str, *, pool_size: int = 20) -> PooledPostgresqlExtDatabase:
    """A pooled PostgreSQL database for ``url`` (connections are opened lazily).

    Parameters:
      url(str): libpq URL, TCP or unix socket (``?host=/socket/dir``).
      pool_size(int): Most connections kept by this process; at least the
        number of worker threads.
    """
    name = urlsplit(url).path.lstrip("/") or None
    return PooledPostgresqlExtDatabase(
        name,
        dsn=url,
        max_connections=pool_size,
        stale_timeout=_STALE_TIMEOUT_S,
        timeout=30,
        register_hstore=False,
        application_name=f"crmtasks[{os.getpid()}]",
    )


def bind(settings: Settings | None = None) -> peewee.Database:
    """Attach the real database to the proxy (idempotent within a process) and return it."""
    global _bound_for
    settings = settings or get_settings()
    if database.obj is not None and _bound_for == (os.getpid(), settings):
        return database.obj
    # A pool inherited through fork is abandoned, never closed: closing would
    # end the parent's sessions on the sockets both processes share.
    database.initialize(open_database(services.database_url(settings), pool_size=settings.db_pool_size))
    _bound_for = (os.getpid(), settings)
    return database.obj


def _is_broken(db: peewee.Database) -> bool:
    """True when this thread's connection was closed under us (session terminated, server restarted)."""
    return bool(db.connection().closed)  # psycopg2: 0 open, 1 closed, 2 broken by an error


def connect_usable() -> peewee.Database:
    """Open (or reuse) this thread's connection, replacing it if the server closed it; returns the database.

    A job whose session was terminated (``pg_terminate_backend``, a server
    restart) leaves its thread holding a dead connection; the run still has
    to be recorded, on a fresh one.
    """
    db = database.obj if database.obj is not None else bind()
    db.connect(reuse_if_open=True)
    if _is_broken(db):
        db.manual_close()  # dropped, never handed back to the pool
        db.connect()
    return db


def rollback_open_transaction() -> None:
    """Roll back whatever this thread's connection has not committed.

    Asks the driver, not peewee's bookkeeping: a transaction opened with a
    bare ``begin()`` or by a failed statement is invisible to peewee. A
    broken connection has nothing to roll back (the server already did).
    """
    db = database.obj
    if db is None or db.is_closed() or _is_broken(db):
        return
    # peewee runs psycopg2 in autocommit mode and sends a raw BEGIN, so
    # conn.rollback() would be a no-op: db.rollback() sends ROLLBACK.
    if db.connection().get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        db.rollback()


def release_connection() -> None:
    """Roll back anything left open and return this thread's connection to the pool (a broken one is dropped)."""
    db = database.obj
    if db is None or db.is_closed():
        return
    if _is_broken(db):
        db.manual_close()
        return
    try:
        rollback_open_transaction()
    finally:
        db.close()


@contextlib.contextmanager
def connection():
    """Use this thread's connection; open it (and release it after) only if none is open.

    Unlike peewee's ``connection_context``, it never closes a connection that
    a caller (the worker middleware, the runner) opened and still uses.
    """
    bind()
    opened_here = database.is_closed()
    if opened_here:
        database.connect()
    try:
        yield database
    finally:
        if opened_here:
            release_connection()
