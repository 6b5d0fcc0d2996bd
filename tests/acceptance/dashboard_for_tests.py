"""Serving the real dashboard with the test jobs registered, for the dashboard tests.

As a launcher: ``python -m tests.acceptance.dashboard_for_tests dashboard --port PORT``.
The registry may hold no jobs on a given branch; the dashboard tests need
some, so this sets ``registry.JOBS`` to the test jobs before the settings
and the actors are built, then runs the real ``crmtasks`` command.
As a helper: ``served_dashboard(home, credentials)`` starts that in a
subprocess and yields its base URL.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from crmtasks.jobs import registry
from tests.acceptance.jobs_for_tests import TEST_SPECS

REPOSITORY = Path(__file__).resolve().parents[2]
USER = "ops"
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served_dashboard(home: Path, *, credentials: bool = True, environ: dict | None = None) -> Iterator[str]:
    """Serve the dashboard on a free loopback port with ``home`` as CRMTASKS_HOME; yields ``http://127.0.0.1:PORT``.

    The database, Redis and key prefix are the test session's (inherited
    from the environment conftest set up) unless ``environ`` overrides them.
    """
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("CRMTASKS_DASHBOARD_")}
    env["CRMTASKS_HOME"] = str(home)
    if credentials:
        env.update(CRMTASKS_DASHBOARD_USER=USER, CRMTASKS_DASHBOARD_PASSWORD=PASSWORD)
    env.update(environ or {})
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / f"dashboard-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.acceptance.dashboard_for_tests", "dashboard", "--port", str(port)],
            env=env, cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dashboard did not start: {log_path.read_text()}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    registry.JOBS = TEST_SPECS
    from crmtasks.cli import main

    main()
