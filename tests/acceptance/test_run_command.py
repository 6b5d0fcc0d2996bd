"""``python -m crmtasks.run`` as a user runs it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(args, env_overrides=None, module="tests.acceptance.jobs_for_tests"):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name, value in (env_overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _runs(url):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT task, trigger, status, stats, error FROM task_runs ORDER BY id")
        return cur.fetchall()


@pytest.fixture()
def empty_history(migrated_database_url):
    conn = psycopg2.connect(migrated_database_url)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE task_runs, schedule_slots, job_pauses")
    conn.close()
    return migrated_database_url


def test_successful_job_exits_0_and_is_recorded_as_manual(empty_history):
    result = _run(["--task", "tally_users"])
    assert result.returncode == 0, result.stderr
    assert "tally_users" in result.stdout and "succeeded" in result.stdout
    assert _runs(empty_history) == [("tally_users", "manual", "succeeded", {"users": 0}, None)]


def test_any_failure_exits_1_and_records_the_error(empty_history):
    result = _run(["--json"])
    assert result.returncode == 1, result.stderr
    outcomes = json.loads(result.stdout)
    assert [(o["task"], o["status"]) for o in outcomes] == [("tally_users", "succeeded"),
                                                             ("fail_on_bad_data", "failed")]
    assert outcomes[1]["error"] == "ValueError: deal 12 has a negative amount"
    [_, (task, trigger, status, _, error)] = _runs(empty_history)
    assert (task, trigger, status) == ("fail_on_bad_data", "manual", "failed")
    assert "deal 12 has a negative amount" in error and "Traceback" in error


def test_unknown_task_lists_the_valid_ones(empty_history):
    result = _run(["--task", "precompute_everything"])
    assert result.returncode == 2
    assert result.stderr.strip() == ("crmtasks: unknown task 'precompute_everything'; "
                                     "valid tasks: tally_users, fail_on_bad_data")
    assert _runs(empty_history) == []


def test_malformed_database_url_is_one_line_exit_2():
    result = _run(["--task", "tally_users"], {"DATABASE_URL": "mysql://app:hunter2@db/crm"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crmtasks: DATABASE_URL: ")
    assert "hunter2" not in result.stderr + result.stdout


def test_unreachable_database_is_one_line_exit_2():
    result = _run(["--task", "tally_users"], {"DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:1/crm"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("crmtasks: cannot connect to DATABASE_URL postgresql://app:***@127.0.0.1:1/crm")
    assert "hunter2" not in result.stderr + result.stdout


def test_configured_database_without_schema_gets_a_hint_and_no_demo_data(fresh_database):
    result = _run(["--task", "tally_users"], {"DATABASE_URL": fresh_database})
    assert result.returncode == 2
    assert result.stderr.strip().endswith("run `crmtasks migrate`")
    with psycopg2.connect(fresh_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert cur.fetchone()[0] == 0  # nothing written: no schema, no demo data


def test_bad_setting_is_one_line_exit_2_from_every_entry_point():
    for module, args in (("crmtasks", ["migrate"]), ("crmtasks.run", []), ("crmtasks", ["tasks"])):
        result = _run(args, {"CRMTASKS_DB_POOL_SIZE": "lots"}, module=module)
        assert result.returncode == 2, (module, result.stderr)
        assert result.stderr.strip() == "crmtasks: CRMTASKS_DB_POOL_SIZE: 'lots' is not a whole number"


def test_worker_module_refuses_bad_settings_with_exit_2():
    result = subprocess.run([sys.executable, "-c", "import crmtasks.tasks"], capture_output=True, text=True,
                            env=dict(os.environ, REDIS_URL="http://nope"), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("crmtasks: REDIS_URL: scheme 'http' is not Redis")
