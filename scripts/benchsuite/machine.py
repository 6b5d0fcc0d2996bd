"""The machine a run measured: what a reader needs to judge (and reproduce) the figures."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import psutil

from benchsuite.timing import calibration_ms

REPO = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The checked-out commit (short), with ``+changes`` when the work tree differs; None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if dirty else "")


def postgres(conn) -> dict:
    """Server version and the settings that shape these timings."""
    with conn.cursor() as cur:
        cur.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
                    (["server_version", "shared_buffers", "work_mem", "max_parallel_workers_per_gather",
                      "synchronous_commit", "jit"],))
        return dict(cur.fetchall())


def describe(conn) -> dict:
    """Cores, memory, CPU, OS, Python, PostgreSQL, load and speed now (UTC date)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres(conn),
        "load_average_1_5_15": [round(value, 2) for value in load] if load else None,
        "calibration_ms": round(calibration_ms(conn), 1),
        "commit": git_commit(),
    }


def load_and_speed(conn) -> dict:
    """Load average and machine speed now, to compare with those at the start."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"load_average_1_5_15": [round(value, 2) for value in load] if load else None,
            "calibration_ms": round(calibration_ms(conn), 1)}
