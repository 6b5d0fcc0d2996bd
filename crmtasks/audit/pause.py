"""Test-only pause points: where a kill -9 test stops the maintenance job.

With ``CRMTASKS_AUDIT_PAUSE_AT=<step>`` (validated against
settings.AUDIT_PAUSE_POINTS) the job prints ``paused at <step>`` on stdout
and sleeps forever at that step, so a test can SIGKILL it there and check
that a re-run resumes. Unset (always, in production) it does nothing.
"""

from __future__ import annotations

import sys
import time

from crmtasks.settings import AUDIT_PAUSE_POINTS, Settings


def pause_point(settings: Settings, step: str) -> None:
    """Sleep forever here when ``settings.audit_pause_at`` names ``step``."""
    if step not in AUDIT_PAUSE_POINTS:
        raise ValueError(f"unknown pause point {step!r}")
    if settings.audit_pause_at != step:
        return
    sys.stdout.write(f"paused at {step}\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)
