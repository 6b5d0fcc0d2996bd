"""Servers shared by every crmtasks process on a machine: file locks, process checks, one-line errors.

The embedded PostgreSQL and Redis (``crmtasks.services.embedded``) are
daemons that outlive the process that started them; these helpers let many
processes find, start and stop them without racing each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil

from crmtasks.errors import CrmtasksError

# Seconds a server may take to start or stop.
START_TIMEOUT = 10.0


class EmbeddedServiceError(CrmtasksError):
    """An embedded server could not be started, reached or stopped."""


def pid_in_file(pidfile: Path) -> int | None:
    """The pid written in ``pidfile``, or None when it is missing or unreadable."""
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def absolute_home(home: Path) -> Path:
    """Absolute path: the servers and other processes may run in other directories."""
    return Path(home).expanduser().resolve()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock (flock); released even if the holder is killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:  # Python fds are not inherited by children: daemons don't keep it
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def process_name(pid: int) -> str | None:
    """Name of the live process ``pid`` (zombies count as dead), else None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def describe(exc: BaseException) -> str:
    """Short text for an exception; a subprocess error names only the program."""
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"{Path(exc.cmd[0]).name} timed out after {exc.timeout:.0f}s"
    if isinstance(exc, subprocess.CalledProcessError):
        return f"{Path(exc.cmd[0]).name} exited with status {exc.returncode}"
    return str(exc) or type(exc).__name__


def log_tail(log: Path, lines: int = 3) -> str:
    """'; <log>: last lines | …' on one line, for error messages."""
    try:
        tail = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()][-lines:]
    except OSError:
        return ""
    return f"; {log}: " + " | ".join(tail) if tail else ""
