"""The pool of PostgreSQL connections one process's threads share, lent in turn.

peewee's ``PooledPostgresqlExtDatabase`` keeps the connections; this
subclass changes three things about how they are lent, because a web server
calls crmtasks from more threads than the pool has connections:

- **Turns.** With every connection lent, callers queue, and a returned
  connection goes to the caller that has waited longest (``Turns``). peewee
  alone wakes one waiter but lets the returning thread take the connection
  straight back, so under load some callers lose again and again.
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

import collections
import heapq
import select
import threading
import time

import psycopg2
import psycopg2.extensions
from peewee import __exception_wrapper__
from playhouse.pool import PoolConnection
from playhouse.postgres_ext import PooledPostgresqlExtDatabase, PostgresqlExtDatabase

from crmtasks.errors import CrmtasksError

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


class Turns:
    """A counting gate whose waiters are served first come, first served.

    A released place goes straight to the longest waiter (it is never put
    back for another thread to grab), so no caller waits more than its turn.

    Parameters:
      places(int): How many holders at once.
    """

    def __init__(self, places: int) -> None:
        self._free = places
        self._lock = threading.Lock()
        # One locked lock per waiter, released to hand it the place (cheaper than an Event).
        self._waiters: collections.deque[threading.Lock] = collections.deque()

    def acquire(self, timeout_s: float) -> bool:
        """Take a place, waiting at most ``timeout_s`` seconds; False when none came free in time."""
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        if turn.acquire(timeout=timeout_s):
            return True
        with self._lock:
            try:
                self._waiters.remove(turn)
            except ValueError:
                return True  # handed over just as the wait ended
            return False

    def release(self) -> None:
        """Give the place back: to the longest waiter if any, else to the free places."""
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1

    @property
    def waiting(self) -> int:
        """Callers waiting for a place now."""
        return len(self._waiters)


def _has_pending_input(conn) -> bool:
    """True when the server has sent something on this idle connection (its goodbye, end of file, a notice)."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
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
      kwargs: peewee's pool and psycopg2 connection arguments (``stale_timeout``, ``dsn``...).
    """

    def __init__(self, database, *, max_connections: int, pool_timeout_s: float, **kwargs) -> None:
        self.pool_timeout_s = pool_timeout_s
        self._turns = Turns(max_connections)
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
        check as ``connect``.
        """
        return self._lend()

    def give_back(self, conn) -> None:
        """Return a connection from ``lend`` (rolled back first if left in a transaction; dropped if broken)."""
        self._take_back(conn)

    def _lend(self):
        """A connection for one caller: its turn first, then the oldest idle connection (or a new one)."""
        if not self._turns.acquire(self.pool_timeout_s):
            raise PoolExhausted(self._max_connections, self.pool_timeout_s)
        try:
            while True:
                conn = self._check_out()
                # A server that ended the session has said so on the socket.
                if not _has_pending_input(conn) or _answers(conn):
                    return conn
                self._discard(conn)
        except BaseException:
            self._turns.release()
            raise

    def _check_out(self):
        """The oldest usable idle connection, else a new one; entered in peewee's books as in use.

        Only the books are touched under the pool's lock: connecting and
        closing (network, and the GIL released) happen outside it.
        """
        unusable = []
        try:
            with self._pool_lock:
                while self._connections:
                    created, _, conn = heapq.heappop(self._connections)
                    if conn.closed or conn.get_transaction_status() != _IDLE or (
                            self._stale_timeout and self._is_stale(created)):
                        unusable.append(conn)
                        continue
                    self._in_use[self.conn_key(conn)] = PoolConnection(created, conn, time.time())
                    return conn
        finally:
            for conn in unusable:
                self._close_raw(conn)
        with __exception_wrapper__:  # peewee's errors, as its connect() raises them
            conn = PostgresqlExtDatabase._connect(self)
        with self._pool_lock:
            self._in_use[self.conn_key(conn)] = PoolConnection(time.time(), conn, time.time())
        return conn

    def _check_in(self, conn) -> None:
        """Back with the idle connections; closed instead when stale or no longer in the books (close_all)."""
        with self._pool_lock:
            lent = self._in_use.pop(self.conn_key(conn), None)
            if lent is not None and not (self._stale_timeout and self._is_stale(lent.timestamp)):
                self._heap_counter += 1
                heapq.heappush(self._connections, (lent.timestamp, self._heap_counter, conn))
                return
        self._close_raw(conn)

    def _take_back(self, conn) -> None:
        try:
            if conn.closed or conn.get_transaction_status() == _UNKNOWN:
                self._discard(conn)
            elif conn.get_transaction_status() != _IDLE and not _rolled_back(conn):
                self._discard(conn)
            else:
                self._check_in(conn)
        finally:
            self._turns.release()

    def _discard(self, conn) -> None:
        with self._pool_lock:
            self._in_use.pop(self.conn_key(conn), None)
        self._close_raw(conn)

    @property
    def lent(self) -> int:
        """Connections lent to threads now."""
        with self._pool_lock:
            return len(self._in_use)

    @property
    def idle(self) -> int:
        """Open connections waiting in the pool now."""
        with self._pool_lock:
            return len(self._connections)

    @property
    def waiting(self) -> int:
        """Threads waiting for a connection now."""
        return self._turns.waiting
