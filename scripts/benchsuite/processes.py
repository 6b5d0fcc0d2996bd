"""Run a measurement in a fresh child process, so its peak memory is its own.

The peak resident set size of a process only ever grows: measured inside
the benchmark's own process, a job's peak would be hidden under whatever
ran before it. A child started with ``spawn`` (a fresh interpreter, no
inherited connections) runs one measurement and reports its own peak.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ChildFailed(RuntimeError):
    """The measurement raised in the child; the message holds its traceback."""


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own memory so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of the memory
    the process has had since it was exec'ed. Not ``ru_maxrss``: Linux keeps
    that across exec, so a spawned child would report its parent's size at
    the fork. Elsewhere, ``ru_maxrss`` (macOS reports bytes).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def current_rss_mb() -> float:
    """Resident set size of this process right now, in MiB (``VmRSS``; on other systems, the peak instead)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return peak_rss_mb()


def _child(pipe, function: Callable, args: tuple) -> None:
    try:
        pipe.send((True, function(*args)))
    except BaseException:  # noqa: BLE001 - everything goes back to the parent, which raises it
        pipe.send((False, traceback.format_exc()))
    finally:
        pipe.close()


def run_in_child(function: Callable, *args: Any, timeout_s: float = 3600) -> Any:
    """Call ``function(*args)`` in a spawned child and return its (picklable) result.

    ``function`` must be importable (a module-level function). Raises
    ChildFailed with the child's traceback when it raised, and TimeoutError
    (after killing it) when it ran longer than ``timeout_s`` seconds.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, function, args), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            child.kill()
            raise TimeoutError(f"{function.__name__} did not finish within {timeout_s:.0f} s")
        ok, value = receiver.recv()
    except EOFError:
        child.join(10)
        raise ChildFailed(f"{function.__name__}: the child process died (exit code {child.exitcode})") from None
    finally:
        receiver.close()
    child.join(60)
    if not ok:
        raise ChildFailed(f"{function.__name__} failed in its child process:\n{value}")
    return value
