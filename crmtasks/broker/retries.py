"""Which failures are worth retrying: lost connections, serialization failures, deadlocks.

Everything else (a bug, bad data, a time limit) would fail the same way
again, so it is not retried: the run is recorded as failed and the message
goes to the dead-letter queue at once.
"""

from __future__ import annotations

import peewee
import psycopg2
import psycopg2.errors
import redis

# SQLSTATE classes / codes that a retry can cure.
_TRANSIENT_SQLSTATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
    "57P01",  # admin_shutdown (pg_terminate_backend)
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
}
_TRANSIENT_SQLSTATE_CLASSES = ("08",)  # connection exceptions


def is_transient(error: BaseException) -> bool:
    """True when ``error`` (or the error it wraps) is a fault a retry may cure."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
            return True
        if isinstance(error, psycopg2.Error):
            code = error.pgcode
            if code is None:
                # No SQLSTATE: the client lost the server (closed socket, EOF).
                return isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError))
            return code in _TRANSIENT_SQLSTATES or code.startswith(_TRANSIENT_SQLSTATE_CLASSES)
        if isinstance(error, peewee.PeeweeException) and getattr(error, "orig", None) is not None:
            error = error.orig
            continue
        if isinstance(error, peewee.InterfaceError):
            return True  # peewee's own "connection already closed"
        error = error.__cause__
    return False


def should_retry(retries_so_far: int, error: BaseException, *, max_retries: int) -> bool:
    """Dramatiq ``retry_when`` policy: transient faults only, at most ``max_retries`` times."""
    return retries_so_far < max_retries and is_transient(error)
