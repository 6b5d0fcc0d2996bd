"""The peewee database object every model is bound to, and how it is opened.

``database`` is a proxy: models declare against it at import time and the
real pooled database is attached by ``bind`` when a process first needs it
(after any fork, so no connection ever crosses one). Units of work open and
close connections explicitly; in workers the DatabaseConnection middleware
does that around each message.

A thread holds a pooled connection only while it uses it: every public API
call borrows one with ``borrowed_connection()`` (or uses the caller's, see
``using_connection``) and gives it back when the call ends, however it ends.
A thread that kept one for life would leave a web server's other threads
waiting for the pool (crmtasks.pg.pool lends them in turn).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import peewee
import psycopg2.extensions

from crmtasks.pg.pool import TurnTakingPool
from crmtasks.services import urls as services
from crmtasks.settings import Settings, get_settings

database = peewee.DatabaseProxy()
# (pid, settings) the proxy's database was opened for; see bind().
_bound_for: tuple[int, Settings] | None = None
_binding = threading.Lock()

# Sharing checks served at once per CPU core by default (CRMTASKS_SHARING_CHECKS_AT_ONCE=0), at least
# _CHECKS_AT_LEAST: one server's round trip overlaps another's Python, and the callers beyond wait in line and
# are served in batches. More servers make smaller batches: more statements and more GIL handovers per check
# (at 40 threads on 2 cores, 4 per core cost about twice the CPU per check of 1 per core: benchsuite.load).
_CHECKS_PER_CORE = 1
_CHECKS_AT_LEAST = 2
# Searches run at once per CPU core by default (CRMTASKS_SEARCHES_AT_ONCE=0): a search is mostly Python holding
# the GIL around one round trip, so two per core keep the GIL and the server busy while the rest wait off the GIL.
_SEARCHES_PER_CORE = 2
# Seconds an idle pooled connection may live before it is replaced.
_STALE_TIMEOUT_S = 300


def open_database(url: str, *, pool_size: int = 20, pool_timeout_s: float = 30.0,
                  sharing_checks_at_once: int = 0, searches_at_once: int = 0) -> TurnTakingPool:
    """A pooled PostgreSQL database for ``url`` (connections are opened lazily).

    Parameters:
      url(str): libpq URL, TCP or unix socket (``?host=/socket/dir``).
      pool_size(int): Most connections kept by this process; at least the
        number of worker threads.
      pool_timeout_s(float): Seconds a caller waits for a free connection
        before crmtasks.pg.pool.PoolExhausted.
      sharing_checks_at_once(int): Most sharing checks served at once (the
        pool's short calls); 0: 1 per CPU core, at least 2.
      searches_at_once(int): Most searches run at once (the pool's
        search admission); 0: 2 per CPU core.
    """
    name = urlsplit(url).path.lstrip("/") or None
    return TurnTakingPool(
        name,
        dsn=url,
        max_connections=pool_size,
        pool_timeout_s=pool_timeout_s,
        short_calls=sharing_checks_at_once or max(_CHECKS_AT_LEAST, _CHECKS_PER_CORE * (os.cpu_count() or 1)),
        searches=searches_at_once or _SEARCHES_PER_CORE * (os.cpu_count() or 1),
        stale_timeout=_STALE_TIMEOUT_S,
        register_hstore=False,
        application_name=f"crmtasks[{os.getpid()}]",
    )


def bind(settings: Settings | None = None) -> peewee.Database:
    """Attach the real database to the proxy (idempotent within a process) and return it."""
    global _bound_for
    settings = settings or get_settings()
    if database.obj is not None and _bound_for == (os.getpid(), settings):
        return database.obj
    with _binding:  # threads calling for the first time at once must end up with one pool
        if database.obj is None or _bound_for != (os.getpid(), settings):
            # A pool inherited through fork is abandoned, never closed: closing would
            # end the parent's sessions on the sockets both processes share.
            database.initialize(open_database(services.database_url(settings), pool_size=settings.db_pool_size,
                                              pool_timeout_s=settings.db_pool_timeout_s,
                                              sharing_checks_at_once=settings.sharing_checks_at_once,
                                              searches_at_once=settings.searches_at_once))
            _bound_for = (os.getpid(), settings)
        return database.obj


def _bound_here() -> bool:
    """True when the proxy holds a database bound in this process (not one inherited through fork)."""
    return database.obj is not None and _bound_for is not None and _bound_for[0] == os.getpid()


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
    """Roll back anything left open and return this thread's connection to the pool (a broken one is dropped).

    The pool's ``close`` does both (crmtasks.pg.pool.TurnTakingPool), asking
    the driver rather than peewee's bookkeeping: a transaction opened with a
    bare ``begin()`` or by a failed statement is invisible to peewee.
    """
    db = database.obj
    if db is not None and not db.is_closed():
        db.close()


@contextlib.contextmanager
def borrowed_connection(settings: Settings | None = None) -> Iterator[peewee.Database]:
    """This thread's connection for the length of the block; yields the (bound) peewee database.

    When the thread already has one open (a nested call, the caller's own
    ``with database.atomic():``, a worker's DatabaseConnection middleware),
    the block uses it and leaves it open. Otherwise the block borrows one
    from the pool, waiting its turn (at most CRMTASKS_DB_POOL_TIMEOUT_S,
    then ``PoolExhausted``), and gives it back when the block ends, also
    when it raises: anything left uncommitted is rolled back first, and a
    connection the server closed is dropped instead.

    Parameters:
      settings(Settings|None): Where the database is; default: what this
        process bound already (a worker's runtime settings), else get_settings().
    """
    bound = bind(settings) if settings is not None or not _bound_here() else database.obj
    if not bound.is_closed():
        yield bound
        return
    bound.connect()
    try:
        yield bound
    finally:
        if not bound.is_closed():  # the pool's close rolls back what is left open, drops a broken connection
            bound.close()


def pool_to_lend() -> TurnTakingPool | None:
    """The bound pool when a short call on this thread would be lent a connection (the thread has none open);
    None when it would run on the thread's open connection (its transaction)."""
    bound = database.obj if _bound_here() else bind()
    return bound if isinstance(bound, TurnTakingPool) and bound.is_closed() else None


class lent_connection:  # noqa: N801 - a context manager, named as one is used
    """The psycopg2 connection of one short call that uses no peewee model: ``with lent_connection(c) as conn``.

    The caller's ``connection`` when given; else this thread's open pooled
    connection if it has one (its transaction, as in ``borrowed_connection``);
    else one lent by the pool for the block only, without entering it in
    peewee's per-thread state (TurnTakingPool.lend), and given back when the
    block ends, however it ends. The block must not use peewee: that would
    borrow a second connection. A class, not a generator: it runs on every
    access check.

    Parameters:
      connection(connection|None): A psycopg2 connection the caller owns.
    """

    __slots__ = ("_connection", "_pool")

    def __init__(self, connection: psycopg2.extensions.connection | None = None) -> None:
        self._connection = connection
        self._pool = None

    def __enter__(self) -> psycopg2.extensions.connection:
        if self._connection is not None:
            return self._connection
        bound = database.obj if _bound_here() else bind()
        if not bound.is_closed():
            return bound.connection()
        self._connection = bound.lend()
        self._pool = bound
        return self._connection

    def __exit__(self, *exc_info) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.give_back(self._connection)


# The name older callers use for the same context manager.
connection = borrowed_connection


@contextlib.contextmanager
def using_connection(connection: psycopg2.extensions.connection | None = None,
                     settings: Settings | None = None) -> Iterator[psycopg2.extensions.connection]:
    """The psycopg2 connection a public API call runs on: the caller's ``connection``, else a borrowed one.

    A caller's connection is used as it is (its transaction, its commit are
    the caller's business); otherwise see ``borrowed_connection``.

    Parameters:
      connection(connection|None): A psycopg2 connection the caller owns.
      settings(Settings|None): Where the database is; see ``borrowed_connection``.
    """
    if connection is not None:
        yield connection
        return
    with borrowed_connection(settings) as bound:
        yield bound.connection()
