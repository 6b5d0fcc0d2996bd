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
- **No round trip to check out.** peewee pings every connection it hands
  out (``SELECT 1``) while holding the database-wide lock, which doubles
  the round trips of a short call and makes every thread queue behind that
  ping. A connection the server ended (``pg_terminate_backend``, a restart)
  has something to read on its socket (the server's goodbye, or end of
  file), so only a connection with pending input is pinged; the others go
  out as they are, checked with a non-blocking poll.
"""

from __future__ import annotations

import collections
import select
import threading

import psycopg2.extensions
from playhouse.pool import MaxConnectionsExceeded
from playhouse.postgres_ext import PooledPostgresqlExtDatabase

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
        self._waiters: collections.deque[threading.Event] = collections.deque()

    def acquire(self, timeout_s: float) -> bool:
        """Take a place, waiting at most ``timeout_s`` seconds; False when none came free in time."""
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        if turn.wait(timeout_s):
            return True
        with self._lock:
            if turn.is_set():  # handed over just as the wait ended
                return True
            self._waiters.remove(turn)
            return False

    def release(self) -> None:
        """Give the place back: to the longest waiter if any, else to the free places."""
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()
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


class TurnTakingPool(PooledPostgresqlExtDatabase):
    """peewee's pooled PostgreSQL database, lending its connections in turn with a bounded wait.

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
        if not self.is_closed():  # this thread holds one: peewee reuses it or says it is open
            return super().connect(reuse_if_open)
        if not self._turns.acquire(self.pool_timeout_s):
            raise PoolExhausted(self._max_connections, self.pool_timeout_s)
        try:
            return super().connect(reuse_if_open)
        except MaxConnectionsExceeded:
            # Only when connections were lent outside the turns (peewee's close_stale):
            # peewee waited the same timeout.
            self._turns.release()
            raise PoolExhausted(self._max_connections, self.pool_timeout_s) from None
        except BaseException:
            self._turns.release()
            raise

    def close(self) -> bool:
        was_open = not self.is_closed()
        try:
            closed = super().close()
        finally:
            if was_open and self.is_closed():  # not refused (a transaction still open): the place is free
                self._turns.release()
        return closed

    def _is_closed(self, conn) -> bool:
        """Whether a pooled connection is unusable, without a round trip unless the server has spoken."""
        if conn.closed or conn.get_transaction_status() == _UNKNOWN:
            return True
        if conn.get_transaction_status() != _IDLE or _has_pending_input(conn):
            return super()._is_closed(conn)  # peewee's check: roll back, or ping with SELECT 1
        return False

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
