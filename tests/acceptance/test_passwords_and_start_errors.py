"""No output, log record or recorded error carries a password; processes that cannot reach Redis say so in one line.

Real processes: ``crmtasks`` commands, ``python -m crmtasks.run``, a
``dramatiq`` worker and the ``periodiq`` scheduler. PostgreSQL here trusts
local connections, so a password put in DATABASE_URL is carried along
(and must be masked) without being checked. Issue 16, items 11 and 14.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRET = "S3cr3t-pw"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               CRMTASKS_HOME=str(tmp_path / "home"))
    env.update(overrides)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture()
def clean_history(migrated_database_url):
    conn = psycopg2.connect(migrated_database_url)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE task_runs, schedule_slots, job_pauses")
    conn.close()
    return migrated_database_url


def test_a_password_in_the_url_never_reaches_output_logs_or_the_run_history(clean_history, tmp_path):
    url = f"{clean_history}{'&' if '?' in clean_history else '?'}password={SECRET}"
    log_file = tmp_path / "crmtasks.log"
    env = _env(tmp_path, DATABASE_URL=url, CRMTASKS_LOG_FILE=str(log_file), CRMTASKS_LOG_FORMAT="json")
    leaky = [sys.executable, "-m", "tests.acceptance.leaky_jobs_for_tests"]
    ran = _run([*leaky, "run", "--task", "leak_url", "--json"], env)
    assert ran.returncode == 1, ran.stderr
    (outcome,) = json.loads(ran.stdout)
    masked = url.replace(SECRET, "***")
    assert outcome["error"] == f"ConnectionError: could not reach {masked}"
    listed = _run([*leaky, "tasks", "--json"], env)
    checked = _run([*leaky, "check", "--json"], env)
    services = _run([*leaky, "services", "status", "--json"], env)
    assert listed.returncode == 0 and checked.returncode == 1 and services.returncode == 0
    assert any(f"could not reach {masked}" in finding["message"] for finding in json.loads(checked.stdout))
    assert any(finding["message"].endswith("password=*** answers") for finding in json.loads(checked.stdout))
    conn = psycopg2.connect(clean_history)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT error FROM task_runs WHERE task = 'leak_url'")
        (recorded,) = cur.fetchone()
    conn.close()
    assert "Traceback" in recorded and "password=***" in recorded
    logged = log_file.read_text()
    assert f"about to fail talking to {masked}" in logged
    everything = "\n".join([recorded, logged] + [done.stdout + done.stderr for done in (ran, listed, checked, services)])
    assert SECRET not in everything


@pytest.mark.parametrize("variable, value, masked", [
    ("DATABASE_URL", f"postgresql://u@127.0.0.1:{{port}}/db?password={SECRET}",
     "postgresql://u@127.0.0.1:{port}/db?password=***"),
    ("DATABASE_URL", f"postgresql://u:{SECRET.replace('-', '%2D')}@127.0.0.1:{{port}}/db", "postgresql://u:***@127.0.0.1:{port}/db"),
    ("REDIS_URL", f"redis://127.0.0.1:{{port}}/7?password={SECRET}", "redis://127.0.0.1:{port}/7?password=***"),
])
def test_an_unreachable_server_is_named_by_its_masked_url_everywhere(migrated_database_url, tmp_path, variable, value,
                                                                      masked):
    port = _closed_port()
    env = _env(tmp_path, **{variable: value.format(port=port)})
    outputs = []
    for args, exit_code in ((["crmtasks", "check"], 1), (["crmtasks", "check", "--json"], 1),
                            (["crmtasks", "services", "status", "--json"], 0),
                            ([sys.executable, "-m", "crmtasks.run", "--task", "warm_caches"], 2)):
        done = _run(args, env)
        assert done.returncode == exit_code, (args, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        outputs.append(done.stdout + done.stderr)
    assert all(masked.format(port=port) in output for output in outputs), outputs
    joined = "\n".join(outputs)
    assert SECRET not in joined and SECRET.replace("-", "%2D") not in joined


def test_a_keyword_dsn_is_refused_without_its_password(tmp_path):
    done = _run(["crmtasks", "tasks"], _env(tmp_path, DATABASE_URL=f"host=127.0.0.1 password={SECRET} dbname=x"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "crmtasks: DATABASE_URL: is a keyword string (host=... dbname=...); write it as a URL, "
        "postgresql://user:password@host:port/dbname (got host=127.0.0.1 password=*** dbname=x)"]


@pytest.mark.parametrize("command", [
    ["dramatiq", "--processes", "1", "--threads", "1", "crmtasks.tasks"],
    ["periodiq", "crmtasks.tasks"],
])
def test_a_worker_or_scheduler_that_cannot_reach_redis_stops_with_one_line_and_exit_2(migrated_database_url, processes,
                                                                                     tmp_path, command):
    port = _closed_port()
    started = processes.start(command[0], [str(BIN / command[0]), *command[1:]],
                              _env(tmp_path, REDIS_URL=f"redis://:{SECRET}@127.0.0.1:{port}/0"))
    assert started.wait(timeout=60) == 2, started.output()
    output = started.output()
    ours = [line for line in output.splitlines() if line.startswith("crmtasks: ")]
    assert ours == [f"crmtasks: cannot connect to REDIS_URL redis://:***@127.0.0.1:{port}/0: "
                    f"Error 111 connecting to 127.0.0.1:{port}. Connection refused."]
    assert "Traceback" not in output and SECRET not in output
