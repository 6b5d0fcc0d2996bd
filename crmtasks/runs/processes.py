"""Whether a process of this host is still alive: what tells a dead run (or lock holder) from a live one.

A pid alone is not enough: a dead process's pid is reused, so a process
is named by its pid and its start time. A zombie is dead (it runs nothing
and never will), and a process we may not look at is taken as alive.
"""

from __future__ import annotations

import psutil

# Seconds two readings of one process's start time may differ by (psutil derives it from clock ticks).
_START_TOLERANCE_S = 0.05


def start_time(pid: int) -> float | None:
    """When process ``pid`` of this host started, in seconds since the epoch; None when it cannot be read."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def process_is_gone(pid: int, started: float | None) -> bool:
    """True when no live process of this host is the one with ``pid`` that started at ``started``.

    Parameters:
      pid(int): The process id.
      started(float|None): Its start time (``start_time``) when known; without it a live pid counts as
        the same process, so a reused pid keeps its run (or lock) alive rather than the other way round.
    """
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        return started is not None and abs(process.create_time() - started) > _START_TOLERANCE_S
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, OSError):
        return False  # not ours to look at (access denied): it may well be alive
