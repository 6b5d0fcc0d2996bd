"""Let a worker finish its running jobs when the whole process group is told to stop.

Dramatiq's worker process stops gracefully on its first SIGTERM (finishes
the running jobs, hands prefetched messages back) and exits at once on a
second. Its master relays every SIGTERM it gets to the worker processes, so
a stop sent to the whole process group, as honcho, systemd (its default
KillMode) and ``kill -- -PGID`` do, reaches each worker twice within
milliseconds and kills the running jobs mid-way. Here a repeat of the same
signal within ``REPEAT_WINDOW_S`` counts as the same request; a later one
still means "exit now".
"""

from __future__ import annotations

import signal
import threading
import time

import dramatiq

# Seconds within which a repeated SIGTERM/SIGHUP is taken as the master's relay of the first.
REPEAT_WINDOW_S = 2.0


def _is_dramatiq_handler(handler) -> bool:
    return callable(handler) and getattr(handler, "__module__", None) == "dramatiq.cli"


def tolerate_relayed_signals(signums=(signal.SIGTERM, signal.SIGHUP)) -> list[int]:
    """Wrap Dramatiq's worker-process handlers of ``signums``; returns the signals wrapped.

    Only the ``dramatiq`` command's handlers are wrapped (not, say, a test
    runner's), and only from the main thread, where Python runs handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return []
    wrapped = []
    for signum in signums:
        handler = signal.getsignal(signum)
        if _is_dramatiq_handler(handler):
            signal.signal(signum, _first_of_a_burst(handler))
            wrapped.append(signum)
    return wrapped


def _first_of_a_burst(handler):
    first_at: float | None = None

    def on_signal(signum, frame):
        nonlocal first_at
        now = time.monotonic()
        if first_at is not None and now - first_at < REPEAT_WINDOW_S:
            return
        if first_at is None:
            first_at = now
        handler(signum, frame)

    return on_signal


class GracefulStop(dramatiq.Middleware):
    def after_worker_boot(self, broker, worker):
        tolerate_relayed_signals()
