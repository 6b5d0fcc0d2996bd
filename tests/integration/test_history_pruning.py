"""Bounded history: the daily maintenance prunes task_runs, schedule_slots and metrics files to CRMTASKS_HISTORY_DAYS.

The job runs for real (``crmtasks.jobs.audit_maintenance.run``, its own
connection, the batch size it ships with) against real PostgreSQL; writers
are other sessions on the same tables.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

import psycopg2
import pytest

from crmtasks.jobs import audit_maintenance
from crmtasks.pg import load_sql, transaction
from crmtasks.runs import pruning
from crmtasks.settings import get_settings

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC)
OLD_RUNS = 12_000  # more than two of the job's batches


@pytest.fixture()
def history(migrated_database_url, tmp_path, monkeypatch):
    """A connection to this run's database with empty run tables, and settings whose home is ``tmp_path``."""
    monkeypatch.setenv("CRMTASKS_HOME", str(tmp_path))
    monkeypatch.setenv("CRMTASKS_HISTORY_DAYS", "90")
    get_settings.cache_clear()
    conn = psycopg2.connect(migrated_database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("TRUNCATE task_runs, schedule_slots RESTART IDENTITY CASCADE")
    yield conn
    conn.close()
    monkeypatch.undo()
    get_settings.cache_clear()


def _insert_runs(conn, task, status, days_ago, count=1):
    """``count`` runs of ``task`` started ``days_ago`` days ago (a second apart); returns their ids."""
    with transaction(conn) as cur:
        cur.execute("""
            INSERT INTO task_runs (task, trigger, status, started_at, finished_at)
            SELECT %s, 'schedule', %s, t, t + interval '1 second'
            FROM (SELECT %s::timestamptz - n * interval '1 second' AS t FROM generate_series(1, %s) n) s
            RETURNING id""", (task, status, NOW - datetime.timedelta(days=days_ago), count))
        return [row[0] for row in cur.fetchall()]


def _insert_slot(conn, task, days_ago, run_id=None):
    with transaction(conn) as cur:
        cur.execute("INSERT INTO schedule_slots (task, slot_at, state, run_id) VALUES (%s, %s, 'ran', %s)",
                    (task, NOW - datetime.timedelta(days=days_ago), run_id))


def _count(conn, query, *params):
    with transaction(conn) as cur:
        cur.execute(query, params)
        return cur.fetchone()[0]


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(child.stdout)


def _metrics_file(directory, name, days_ago):
    path = directory / name
    path.write_bytes(b"\0" * 16)
    stamp = (NOW - datetime.timedelta(days=days_ago)).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def test_the_daily_job_prunes_old_history_in_batches_and_keeps_the_recent(history, tmp_path):
    conn = history
    old_failures = _insert_runs(conn, "precompute_facets", "failed", 200, OLD_RUNS)
    old_successes = _insert_runs(conn, "precompute_facets", "succeeded", 120, 3)
    recent = _insert_runs(conn, "precompute_facets", "succeeded", 89, 5) + _insert_runs(
        conn, "precompute_facets", "failed", 0, 5)
    warm_only_success = _insert_runs(conn, "warm_caches", "succeeded", 150)  # its latest success: kept
    for days_ago, run_id in ((200, old_failures[0]), (120, old_successes[0]), (95, None), (89, recent[0]), (0, None)):
        _insert_slot(conn, "precompute_facets", days_ago, run_id)
    metrics = tmp_path / "metrics" / "9191"
    metrics.mkdir(parents=True)
    dead = _dead_pid()
    gone_and_old = _metrics_file(metrics, f"counter_{dead}.db", 120)
    kept = [_metrics_file(metrics, f"histogram_{dead}.db", 10),  # gone but recent
            _metrics_file(metrics, f"gauge_max_{os.getpid()}.db", 120)]  # old but its process lives

    first = audit_maintenance.run()
    second = audit_maintenance.run()

    assert (first["task_runs_pruned"], first["schedule_slots_pruned"], first["metrics_files_pruned"]) == (
        OLD_RUNS + 3, 3, 1)  # every old precompute_facets run (its latest success is recent); not warm_caches
    assert first["history_days"] == 90 and first["history_incomplete"] is False
    assert (second["task_runs_pruned"], second["schedule_slots_pruned"], second["metrics_files_pruned"]) == (0, 0, 0)
    with transaction(conn) as cur:
        cur.execute("SELECT id FROM task_runs ORDER BY id")
        assert [row[0] for row in cur.fetchall()] == sorted(recent + warm_only_success)
    cutoff = NOW - datetime.timedelta(days=90)
    assert _count(conn, "SELECT count(*) FROM schedule_slots WHERE slot_at < %s", cutoff) == 0
    assert _count(conn, "SELECT count(*) FROM schedule_slots") == 2
    assert _count(conn, "SELECT run_id FROM schedule_slots WHERE slot_at < now() - interval '1 day'") == recent[0]
    assert not gone_and_old.exists() and all(path.exists() for path in kept)


def test_history_stays_bounded_as_days_pass(history):
    conn = history
    settings = get_settings()
    day = datetime.timedelta(days=1)
    for simulated_day in range(0, 300, 30):  # a run every 30 days over 10 months, the job after each batch
        _insert_runs(conn, "precompute_aggregates", "succeeded", 300 - simulated_day, 100)
        pruning.prune_history(conn, settings, now=NOW - (300 - simulated_day) * day, batch_rows=70)
        assert _count(conn, "SELECT count(*) FROM task_runs") <= 4 * 100  # at most 90 days: 3 or 4 inserts


def test_pruning_skips_rows_a_writer_holds_and_never_blocks_a_writer(history, migrated_database_url):
    conn = history
    held, *others = _insert_runs(conn, "precompute_facets", "failed", 200, 50)
    writer = psycopg2.connect(migrated_database_url)
    try:
        # A writer updating an old row holds its lock: the pruner skips that row instead of waiting.
        with writer.cursor() as cur:
            cur.execute("UPDATE task_runs SET error = 'being edited' WHERE id = %s", (held,))
        stats = pruning.prune_history(conn, get_settings())
        writer.commit()
        assert stats["task_runs_pruned"] == len(others) and stats["history_incomplete"] is False
        assert _count(conn, "SELECT count(*) FROM task_runs WHERE id = %s", held) == 1

        # A pruning batch in flight (the job's own statement, its transaction open) holds row locks only:
        # a writer inserting runs and slots meanwhile waits for nothing (lock_timeout would raise if it did).
        _insert_runs(conn, "precompute_facets", "failed", 200, 20)
        with transaction(conn) as pruner:
            pruner.execute(load_sql("crmtasks.runs", "prune_task_runs"),
                           {"cutoff": NOW - datetime.timedelta(days=90), "batch": 10, "keep": []})
            assert pruner.rowcount == 10
            with writer.cursor() as cur:
                cur.execute("SET lock_timeout = '50ms'")
                cur.execute("INSERT INTO task_runs (task, trigger, status) VALUES ('precompute_facets', 'manual', "
                            "'running') RETURNING id")
                new_run = cur.fetchone()[0]
                cur.execute("INSERT INTO schedule_slots (task, slot_at, state, run_id) VALUES "
                            "('precompute_facets', now(), 'enqueued', %s)", (new_run,))
            writer.commit()
        assert _count(conn, "SELECT count(*) FROM task_runs WHERE id = %s", new_run) == 1
    finally:
        writer.close()
