"""Stopping a process on a signal, but never in the middle of a critical section.

The scheduler claims a schedule slot in PostgreSQL, then sends its message
to Redis. Exiting between the two would leave a slot recorded as enqueued
whose message was never sent, and no later catch-up would owe it. Signal
handlers call ``exit_when_safe``; ``critical()`` sections defer the exit to
their end. Both run in the main thread (Python runs signal handlers there).
"""

from __future__ import annotations

import contextlib

_depth = 0
_pending_exit: int | None = None


@contextlib.contextmanager
def critical():
    """A section a signal-requested exit waits for (re-entrant)."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending_exit is not None:
            raise SystemExit(_pending_exit)


def exit_when_safe(code: int = 0) -> None:
    """Exit with ``code`` now, or at the end of the running critical section."""
    global _pending_exit
    if _depth:
        _pending_exit = code
        return
    raise SystemExit(code)
