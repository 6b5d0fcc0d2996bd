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
- With ``idle`` (CRMTASKS_AUDIT_MAINTENANCE_IDLE, off by default) both also go
  to Linux's SCHED_IDLE class. Niceness only weighs the shares: a niced
  thread that holds a core keeps it until its time slice ends (about a
  millisecond or more on the EEVDF scheduler) before a writer that wakes up
  gets it, once per hop (client, then its server process), so the writers'
  p99 still grew two to three times while a month was being counted.
  A SCHED_IDLE thread is preempted as soon as a normal one wakes up.
  The cost: on a host whose cores are never idle the pass only gets the
  leftovers (it still progresses: SCHED_IDLE keeps a small share). Off by
  default: interleaved bench runs have not shown the writers' p99 to gain
  from it yet, and on a saturated host the archive ran 2-3x slower.
"""

from __future__ import annotations

import dataclasses
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


def lower_this_thread(niceness: int, *, idle: bool = False) -> None:
    """Raise the calling thread's niceness to at least ``niceness``, and with ``idle`` put it in SCHED_IDLE
    (Linux: per thread, inherited by the threads it starts; elsewhere: nothing)."""
    try:
        thread = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, thread) < niceness:
            os.setpriority(os.PRIO_PROCESS, thread, niceness)
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: run at the priority we have
    if idle:
        _to_idle_class(threading.get_native_id())


def _to_idle_class(pid: int) -> int | None:
    """Put thread or process ``pid`` in SCHED_IDLE; return its former policy, or None when unchanged."""
    try:
        before = os.sched_getscheduler(pid)
        if before == os.SCHED_IDLE:
            return None
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as error:  # not Linux, or not allowed
        log.debug("audit maintenance: %s keeps its scheduling class (%s)", pid, getattr(error, "strerror", error))
        return None
    return before


def run_niced(function: Callable[[], T], niceness: int, *, idle: bool = False,
              cancel: Callable[[], None] | None = None) -> T:
    """``function()`` run in a new thread at ``niceness`` (and SCHED_IDLE with ``idle``); its result, or its
    exception raised here.

    The calling thread waits in short joins, so an asynchronous exception
    (Dramatiq's time limit) still reaches it; it then calls ``cancel`` (e.g.
    the connection's ``cancel``: the statement running in the thread stops)
    and waits a little for the thread before raising. ``niceness`` 0
    without ``idle`` calls ``function`` in the caller's thread.

    Parameters:
      function: What to run (no arguments).
      niceness(int): 0 (normal) to 19 (lowest).
      cancel: Called when the caller is interrupted while waiting.
    """
    if niceness <= 0 and not idle:
        return function()
    outcome: dict = {}

    def niced() -> None:
        lower_this_thread(niceness, idle=idle)
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


@dataclasses.dataclass(frozen=True)
class FormerPriority:
    """What ``lower_backend`` changed on a server process: its niceness and its scheduling policy before
    (None: left as it was)."""

    niceness: int | None = None
    policy: int | None = None


def lower_backend(conn, niceness: int, *, idle: bool = False) -> FormerPriority:
    """Give ``conn``'s server process at least ``niceness`` (and SCHED_IDLE with ``idle``); return what it had."""
    if niceness <= 0 and not idle:
        return FormerPriority()
    pid = backend_process(conn)
    if pid is None:
        return FormerPriority()
    before = None
    try:
        current = os.getpriority(os.PRIO_PROCESS, pid)
        if current < niceness:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
            before = current
    except OSError as error:
        log.debug("audit maintenance: PostgreSQL process %s keeps its priority (%s)", pid, error.strerror)
    return FormerPriority(before, _to_idle_class(pid) if idle else None)


def restore_backend(conn, former: FormerPriority) -> None:
    """Put back on ``conn``'s server process what ``lower_backend`` changed, where the OS allows."""
    if (former.niceness is None and former.policy is None) or conn.closed:
        return
    pid = backend_process(conn)
    if pid is None:
        return
    try:
        if former.policy is not None:
            os.sched_setscheduler(pid, former.policy, os.sched_param(0))
        if former.niceness is not None:
            os.setpriority(os.PRIO_PROCESS, pid, former.niceness)
    except OSError as error:
        log.debug("audit maintenance: PostgreSQL process %s stays at a lower priority until its connection "
                  "closes (%s)", pid, error.strerror)
