"""The audit maintenance yields the CPU to the application: lower priority for its own threads and server process.

On a small host, a maintenance pass (COPY of a month, zstd, SHA-256, the
read-back, counting a month) and the application's writers compete for the
same cores; each insert of a writer needs a core for a fraction of a
millisecond, and when the maintenance holds both its p99 grows tenfold.
The maintenance is not in a hurry; writers are. So:

- ``run_niced`` runs the pass in a thread of its own at a higher niceness
  (Linux sets niceness per thread; threads it starts, like the archive's
  compressing thread, inherit it). The caller's own thread, and the rest
  of its process (a Dramatiq worker, a library caller), keep theirs:
  nothing here calls ``os.nice``.
- ``lower_backend`` gives the session's PostgreSQL server process the same
  niceness when the server runs on this host and the OS lets us (the same
  user, as with the embedded server, or root); otherwise it does nothing.
  PostgreSQL has no setting for this; the process only ever serves this
  session, and ``restore_backend`` puts its priority back where the OS
  allows (lowering niceness again needs privileges: the maintenance job
  closes its connection anyway).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
# How long a cancelled pass may take to notice it was cancelled before the caller gives up waiting.
_CANCEL_WAIT_S = 30.0


def lower_this_thread(niceness: int) -> None:
    """Raise the calling thread's niceness to at least ``niceness`` (Linux: per thread; elsewhere: nothing)."""
    try:
        thread = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, thread) < niceness:
            os.setpriority(os.PRIO_PROCESS, thread, niceness)
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: run at the priority we have


def run_niced(function: Callable[[], T], niceness: int, *, cancel: Callable[[], None] | None = None) -> T:
    """``function()`` run in a new thread at ``niceness``; its result, or its exception raised here.

    The calling thread waits in short joins, so an asynchronous exception
    (Dramatiq's time limit) still reaches it; it then calls ``cancel`` (e.g.
    the connection's ``cancel``: the statement running in the thread stops)
    and waits a little for the thread before raising. ``niceness`` 0 calls
    ``function`` in the caller's thread.

    Parameters:
      function: What to run (no arguments).
      niceness(int): 0 (normal) to 19 (lowest).
      cancel: Called when the caller is interrupted while waiting.
    """
    if niceness <= 0:
        return function()
    outcome: dict = {}

    def niced() -> None:
        lower_this_thread(niceness)
        try:
            outcome["result"] = function()
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=niced, name="audit-maintenance", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except BaseException:
        if cancel is not None:
            cancel()
        thread.join(_CANCEL_WAIT_S)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def backend_process(conn) -> int | None:
    """The pid of ``conn``'s PostgreSQL server process when it runs on this host, else None.

    Local means a Unix socket or a loopback address, and a process of that
    pid whose title is a PostgreSQL backend's (a server reached through a
    forwarded port could have a pid that means another process here).
    """
    host = conn.info.host or ""
    if not (host.startswith("/") or host in _LOCAL_HOSTS):
        return None
    pid = conn.get_backend_pid()
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as title:
            if not title.read().startswith(b"postgres"):
                return None
    except OSError:
        return None
    return pid


def lower_backend(conn, niceness: int) -> int | None:
    """Give ``conn``'s server process at least ``niceness``; return its former niceness, or None when untouched."""
    if niceness <= 0:
        return None
    pid = backend_process(conn)
    if pid is None:
        return None
    try:
        before = os.getpriority(os.PRIO_PROCESS, pid)
        if before >= niceness:
            return None
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except OSError as error:
        log.debug("audit maintenance: PostgreSQL process %s keeps its priority (%s)", pid, error.strerror)
        return None
    return before


def restore_backend(conn, niceness: int | None) -> None:
    """Put the niceness ``lower_backend`` returned back on ``conn``'s server process, where the OS allows."""
    if niceness is None or conn.closed:
        return
    pid = backend_process(conn)
    if pid is None:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except OSError as error:
        log.debug("audit maintenance: PostgreSQL process %s stays at a lower priority until its connection "
                  "closes (%s)", pid, error.strerror)
