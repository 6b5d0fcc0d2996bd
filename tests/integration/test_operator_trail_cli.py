"""The operator trail from the shell: real ``crmtasks`` processes, real PostgreSQL and Redis, a real worker.

``pause``, ``resume``, ``run`` (in process and ``--enqueue``) each leave
exactly one trail row naming the OS user at this host (and the SSH
client's address when there is one); a manual run's task_runs row names
them too; ``crmtasks trail`` shows the rows and refuses bad input in one line.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from crmtasks.jobs import registry
from crmtasks.models import TaskRun
from crmtasks.runs.trail import TRAIL_ENTITY
from crmtasks.scheduler import pauses
from tests.acceptance.jobs_for_tests import TEST_SPECS
from tests.integration.in_process_worker import in_process_worker

ROOT = Path(__file__).resolve().parents[2]
TALLY = TEST_SPECS[0]
SHELL_USER = f"{getpass.getuser()}@{socket.gethostname()}"
BERLIN_0230 = {"cron": "30 2 * * *", "zone": "Europe/Berlin"}


@pytest.fixture()
def trail_db(crm_db, monkeypatch):
    monkeypatch.setattr(registry, "JOBS", TEST_SPECS)
    crm_db.execute_sql("DELETE FROM audit_log WHERE entity = %s", (TRAIL_ENTITY,))
    return crm_db


def crmtasks(*args: str, ssh: str | None = None) -> subprocess.CompletedProcess:
    """``crmtasks ARGS`` with the test jobs registered, as a process of its own."""
    env = {name: value for name, value in os.environ.items() if name not in ("SSH_CONNECTION", "SSH_CLIENT")}
    if ssh:
        env["SSH_CONNECTION"] = f"{ssh} 50122 10.0.0.5 22"
    return subprocess.run([sys.executable, "-m", "tests.acceptance.dashboard_for_tests", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _rows(database) -> list[tuple]:
    return database.execute_sql("SELECT action, changes, host(ip_address) FROM audit_log WHERE entity = %s "
                                "ORDER BY id", (TRAIL_ENTITY,)).fetchall()


def test_pause_resume_and_run_from_the_shell_each_leave_one_row(trail_db):
    assert crmtasks("pause", TALLY.name, "--note", "nightly load").returncode == 0
    assert pauses.is_paused(TALLY.name)
    assert crmtasks("resume", TALLY.name, ssh="203.0.113.9").returncode == 0
    ran = crmtasks("run", "--task", TALLY.name, "--json")
    assert ran.returncode == 0, ran.stderr
    [outcome] = json.loads(ran.stdout)
    rows = _rows(trail_db)
    assert [(action, changes["who"], changes["via"], changes["target"], address)
            for action, changes, address in rows] == [
        ("pause", SHELL_USER, "cli", TALLY.name, None), ("resume", SHELL_USER, "cli", TALLY.name, "203.0.113.9"),
        ("run_now", SHELL_USER, "cli", TALLY.name, None)]
    assert rows[0][1]["details"] == {"note": "nightly load"}
    assert rows[2][1]["details"] == {"in_process": True}
    run = TaskRun.get_by_id(outcome["run_id"])
    assert (run.trigger, run.status, run.started_by) == ("manual", "succeeded", f"{SHELL_USER} (cli)")


def test_an_enqueued_run_names_its_starter_when_the_worker_records_it(trail_db):
    with in_process_worker({spec.name: spec for spec in TEST_SPECS}) as worker:
        sent = crmtasks("run", "--task", TALLY.name, "--enqueue", "--json")
        assert sent.returncode == 0, sent.stderr
        [message] = json.loads(sent.stdout)
        worker.drain()
    [(action, changes, _)] = _rows(trail_db)
    assert (action, changes["who"], changes["details"]["message_id"]) == ("run_now", SHELL_USER,
                                                                          message["message_id"])
    [run] = TaskRun.select().where(TaskRun.task == TALLY.name)
    assert (run.message_id, run.trigger, run.started_by) == (message["message_id"], "manual", f"{SHELL_USER} (cli)")


def test_crmtasks_trail_shows_the_rows_and_refuses_bad_input_in_one_line(trail_db):
    crmtasks("pause", TALLY.name)
    crmtasks("resume", TALLY.name)
    shown = crmtasks("trail", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    entries = json.loads(shown.stdout)
    assert [(entry["action"], entry["who"], entry["target"]) for entry in entries] == [
        ("resume", SHELL_USER, TALLY.name), ("pause", SHELL_USER, TALLY.name)]
    assert [entry["action"] for entry in json.loads(crmtasks("trail", "--format", "json", "--limit", "1",
                                                             "--action", "pause").stdout)] == ["pause"]
    table = crmtasks("trail", "--since", "2h")
    assert table.returncode == 0 and "resume" in table.stdout and SHELL_USER in table.stdout
    assert json.loads(crmtasks("trail", "--format", "json", "--since", "2999-01-01").stdout) == []
    for bad in (["--since", "yesterday"], ["--limit", "0"], ["--who", "a\udcff"], ["--since", "999999d"]):
        refused = crmtasks("trail", *bad)
        assert refused.returncode == 2, (bad, refused.stderr)
        assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("crmtasks: "), refused.stderr


def test_schedule_set_and_reset_from_the_shell_each_leave_one_row(trail_db):
    stored = crmtasks("schedule", "set", TALLY.name, "30 2 * * *", "--tz", "Europe/Berlin", ssh="203.0.113.7")
    assert stored.returncode == 0, stored.stderr
    assert crmtasks("schedule", "set", TALLY.name, "not cron").returncode != 0  # refused: no row
    assert crmtasks("schedule", "set", TALLY.name, "0 5 * * *", "--dry-run").returncode == 0  # nothing stored
    assert crmtasks("schedule", "reset", TALLY.name).returncode == 0
    assert crmtasks("schedule", "reset", TALLY.name).returncode == 0  # nothing stored any more: no change, no row
    rows = _rows(trail_db)
    assert [(action, changes["who"], changes["via"], changes["target"], changes["details"], address)
            for action, changes, address in rows] == [
        ("schedule_set", SHELL_USER, "cli", TALLY.name,
         {"before": None, "after": BERLIN_0230, "default": TALLY.cron}, "203.0.113.7"),
        ("schedule_reset", SHELL_USER, "cli", TALLY.name,
         {"before": BERLIN_0230, "after": None, "default": TALLY.cron}, None)]
