"""Test-only pause points: where a kill -9 test stops the maintenance job, or holds it while it breaks something.

With ``CRMTASKS_AUDIT_PAUSE_AT=<step>`` (validated against
settings.AUDIT_PAUSE_POINTS) the job prints ``paused at <step>`` on stdout
and waits at that step: a test can SIGKILL it there and check that a re-run
resumes, or do something to the world (stop the archive store) and write
``continue`` on the job's stdin to let it go on. Without such a line (stdin
at its end, or anything else) it waits until killed. Unset (always, in
production) it does nothing.
"""

from __future__ import annotations

import sys
import time

from crmtasks.settings import AUDIT_PAUSE_POINTS, Settings


def pause_point(settings: Settings, step: str) -> None:
    """Wait here when ``settings.audit_pause_at`` names ``step``, until killed or told ``continue`` on stdin."""
    if step not in AUDIT_PAUSE_POINTS:
        raise ValueError(f"unknown pause point {step!r}")
    if settings.audit_pause_at != step:
        return
    sys.stdout.write(f"paused at {step}\n")
    sys.stdout.flush()
    try:
        told = sys.stdin.readline() if sys.stdin is not None else ""
    except (OSError, ValueError):
        told = ""
    if told.strip() == "continue":
        return
    while True:
        time.sleep(3600)
