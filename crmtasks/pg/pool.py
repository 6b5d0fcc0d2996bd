"""The pool of PostgreSQL connections one process's threads share, lent in turn.

peewee's ``PooledPostgresqlExtDatabase`` keeps the connections; this
subclass changes three things about how they are lent, because a web server
calls crmtasks from more threads than the pool has connections:

- **Turns.** With every connection lent, callers queue, and a returned
  connection goes to the caller that has waited longest (``Turns``). peewee
  alone wakes one waiter but lets the returning thread take the connection
  straight back, so under load some callers lose again and again. The
  connection is handed over with the turn, in one step under one lock: the
  waiter wakes holding it (nothing to look up, no second lock, no other
  thread woken). Idle connections are kept most recent first, so a quiet
  process keeps using the few connections whose caches are warm.
- **A bounded wait with one clear error.** A caller that gets no connection
  within ``pool_timeout_s`` gets ``PoolExhausted`` naming the pool size and
  the wait, never peewee's ``MaxConnectionsExceeded``.
- **No round trip, no shared lock to check out.** peewee pings every
  connection it hands out (``SELECT 1``) and opens and closes connections
  under one database-wide lock, so under load every thread queues behind
  another's ping (and behind a thread that lost the GIL while holding the
  lock). Here only the pool's bookkeeping is locked. A connection the server
  ended (``pg_terminate_backend``, a restart) has something to read on its
  socket (the server's goodbye, or end of file), so only a connection with
  pending input is pinged, outside every lock; the others go out as they
  are, checked with a non-blocking poll.
"""

from __future__ import annotations

import select
import threading
import time

import psycopg2
import psycopg2.extensions
from peewee import __exception_wrapper__
from playhouse.pool import PoolConnection
from playhouse.postgres_ext import PooledPostgresqlExtDatabase, PostgresqlExtDatabase

from crmtasks.errors import CrmtasksError
from crmtasks.pg.admission import Admission
from crmtasks.pg.combining import Combiner
from crmtasks.pg.turns import Turns

_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
_UNKNOWN = psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN


class PoolExhausted(CrmtasksError):
    """No pooled connection came free within the configured wait.

    Parameters:
      pool_size(int): The pool's size (CRMTASKS_DB_POOL_SIZE).
      waited_s(float): Seconds the caller waited (CRMTASKS_DB_POOL_TIMEOUT_S).
    """

    def __init__(self, pool_size: int, waited_s: float) -> None:
        super().__init__(
            f"no PostgreSQL connection came free in this process's pool of {pool_size} within {waited_s:g} s; "
            "more threads call crmtasks at once than CRMTASKS_DB_POOL_SIZE serves "
            "(raise it, or CRMTASKS_DB_POOL_TIMEOUT_S)")
        self.pool_size = pool_size
        self.waited_s = waited_s


# fd -> a poll object watching that descriptor number, made once: a poll object only remembers numbers (each
# poll() call hands the kernel the list), so it is right for whichever connection holds the number now.
# A connection is lent to one thread at a time, so no two threads poll one object at once.
_pollers: dict[int, select.poll] = {}


def _has_pending_input(conn) -> bool:
    """True when the server has sent something on this idle connection (its goodbye, end of file, a notice)."""
    fd = conn.fileno()
    poller = _pollers.get(fd)
    if poller is None:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        _pollers[fd] = poller
    return bool(poller.poll(0))


def _answers(conn) -> bool:
    """True when the server answers on ``conn`` (one round trip)."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return True
    except psycopg2.Error:
        return False


def _rolled_back(conn) -> bool:
    """Roll back what ``conn`` left open; False when that failed (the connection is unusable)."""
    try:
        if conn.autocommit:  # peewee's connections: BEGIN was sent as a statement, so is ROLLBACK
            with conn.cursor() as cur:
                cur.execute("ROLLBACK")
        else:
            conn.rollback()
        return True
    except psycopg2.Error:
        return False


class TurnTakingPool(PooledPostgresqlExtDatabase):
    """peewee's pooled PostgreSQL database, lending its connections in turn with a bounded wait.

    ``connect()`` and ``close()`` keep peewee's meaning (this thread's
    connection, opened and given back) and peewee's books (``close_all``,
    ``close_idle``, ``manual_close`` work as before), but go around
    peewee's database-wide lock: only the books are locked, briefly, and
    nothing that waits on the network or releases the GIL happens under it.

    Parameters:
      database(str): Database name (the ``dsn`` keyword carries the URL).
      max_connections(int): Most connections open at once; also the places in line.
      pool_timeout_s(float): Seconds a caller waits for a connection before PoolExhausted.
      short_calls(int): Most short calls (``lend``) served at once; the others
        wait their turn before asking for a connection. 0: as many as connections.
      searches(int): Most searches run at once (``search_admission``, crmtasks.pg.admission);
        0, or at least ``max_connections``: no limit beyond the pool.
      kwargs: peewee's pool and psycopg2 connection arguments (``stale_timeout``, ``dsn``...).

    Why limit short calls below the connections: a sharing check holds the
    GIL for most of its time, and on a few cores, 20 threads at once spend
    it taking the GIL from each other (each waits behind the others, so the
    tail grows too). Those beyond the limit wait in line, off the GIL,
    served first come first served, the same fair wait with less contention.
    """

    def __init__(self, database, *, max_connections: int, pool_timeout_s: float, short_calls: int = 0,
                 searches: int = 0, **kwargs) -> None:
        self.pool_timeout_s = pool_timeout_s
        # None: no limit beyond the pool's own line.
        self.search_admission = (Admission(searches, pool_timeout_s, lambda: PoolExhausted(max_connections,
                                                                                            pool_timeout_s))
                                 if 0 < searches < max_connections else None)
        self._turns = Turns(max_connections)
        self._short_turns = Turns(short_calls) if 0 < short_calls < max_connections else None
        self._short_calls = short_calls if 0 < short_calls < max_connections else max_connections
        self._combiners: dict[str, Combiner] = {}
        self._combiners_lock = threading.Lock()
        super().__init__(database, max_connections=max_connections, timeout=pool_timeout_s, **kwargs)

    def connect(self, reuse_if_open: bool = False) -> bool:
        """Give this thread a pooled connection, waiting its turn; False when it has one and ``reuse_if_open``."""
        if not self.is_closed() or self.deferred:  # peewee answers: reuse, "already opened", "not initialized"
            return super().connect(reuse_if_open)
        conn = self._lend()
        self._state.set_connection(conn)
        if self.server_version is None:
            self._set_server_version(conn)
        return True

    def close(self) -> bool:
        """Give this thread's connection back (rolled back first; dropped if broken); False when it had none."""
        if self.is_closed() or self.in_transaction():  # peewee answers: nothing to close, "transaction is open"
            return super().close()
        conn = self._state.conn
        self._state.reset()
        self._take_back(conn)
        return True

    def lend(self):
        """A connection for one short call, lent without binding it to this thread in peewee's state.

        For hot paths that use the raw psycopg2 connection only (never peewee
        models) for the length of one call; give it back with ``give_back``,
        also when the call raises. The same turn, wait bound and liveness
        check as ``connect``; first a turn among the short calls (``short_calls``),
        within the same bound on the whole wait.
        """
        short = self._short_turns
        if short is None:
            return self._lend()
        started = time.monotonic()
        if not short.acquire(self.pool_timeout_s)[0]:
            raise PoolExhausted(self._max_connections, self.pool_timeout_s)
        try:
            return self._lend(max(0.0, self.pool_timeout_s - (time.monotonic() - started)))
        except BaseException:
            short.release()
            raise

    def combiner(self, kind: str) -> Combiner:
        """The Combiner of one kind of short call (``"sharing checks"``): as many servers at once as short calls.

        A caller in its line waits at most ``pool_timeout_s``, then gets PoolExhausted, as in the pool's own line.
        """
        found = self._combiners.get(kind)
        if found is None:
            with self._combiners_lock:
                found = self._combiners.get(kind)
                if found is None:
                    found = self._combiners[kind] = Combiner(
                        self._short_calls, self.pool_timeout_s,
                        lambda: PoolExhausted(self._max_connections, self.pool_timeout_s))
        return found

    def give_back(self, conn) -> None:
        """Return a connection from ``lend`` (rolled back first if left in a transaction; dropped if broken)."""
        try:
            self._take_back(conn)
        finally:
            if self._short_turns is not None:
                self._short_turns.release()

    def _lend(self, timeout_s: float | None = None):
        """A connection for one caller: its turn, with the connection idle the shortest time (or a new one)."""
        taken, item = self._turns.acquire(self.pool_timeout_s if timeout_s is None else timeout_s)
        if not taken:
            raise PoolExhausted(self._max_connections, self.pool_timeout_s)
        try:
            conn = self._usable(item)
            if conn is None:
                with __exception_wrapper__:  # peewee's errors, as its connect() raises them
                    conn = PostgresqlExtDatabase._connect(self)
                created = time.time()
            else:
                created = item[0]
            with self._pool_lock:  # peewee's books (close_all closes what is lent)
                self._in_use[self.conn_key(conn)] = PoolConnection(created, conn, time.time())
            return conn
        except BaseException:
            self._turns.release()
            raise

    def _usable(self, item):
        """The connection of an idle ``(created, connection)`` item if it can serve a call, else None (closed).

        A server that ended the session has said so on the socket: only then is it pinged.
        """
        if item is None:
            return None
        created, conn = item
        if (conn.closed or conn.get_transaction_status() != _IDLE or (self._stale_timeout and self._is_stale(created))
                or (_has_pending_input(conn) and not _answers(conn))):
            self._close_raw(conn)
            return None
        return conn

    def _take_back(self, conn) -> None:
        """Rolled back if left in a transaction, then handed to the next caller or kept; closed when broken,
        stale, or no longer in the books (close_all)."""
        item = None
        try:
            status = _UNKNOWN if conn.closed else conn.get_transaction_status()
            usable = status == _IDLE or (status != _UNKNOWN and _rolled_back(conn))
            with self._pool_lock:
                lent = self._in_use.pop(self.conn_key(conn), None)
            if usable and lent is not None and not (self._stale_timeout and self._is_stale(lent.timestamp)):
                item = (lent.timestamp, conn)
            else:
                self._close_raw(conn)
        finally:
            self._turns.release(item)

    def close_idle(self) -> None:
        """Close the connections kept idle (peewee's meaning; the places stay free)."""
        for _, conn in self._turns.drain():
            self._close_raw(conn)
        super().close_idle()

    @property
    def lent(self) -> int:
        """Connections lent to threads now."""
        with self._pool_lock:
            return len(self._in_use)

    @property
    def idle(self) -> int:
        """Open connections waiting in the pool now."""
        return self._turns.kept

    @property
    def waiting(self) -> int:
        """Threads waiting for a connection now (short calls waiting for their turn included)."""
        return self._turns.waiting + (self._short_turns.waiting if self._short_turns is not None else 0)
