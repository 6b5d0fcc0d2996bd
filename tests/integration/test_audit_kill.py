"""Crash safety of the audit maintenance job: kill -9 a real process at every step, re-run, lose nothing.

After each kill and re-run, every audit row is either in audit_log or in
exactly one archive that verifies against its manifest; no temporary file is
left and no manifest-less data file is taken as an archive. Each test runs
with the archive in a local directory and in a bucket of a real
S3-compatible server (moto's, started on 127.0.0.1).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import psycopg2
import pytest

from crmtasks.audit import codecs
from crmtasks.audit.maintenance import run_maintenance
from crmtasks.audit.status import verify_archives
from crmtasks.audit.stores import open_store
from crmtasks.jobs.audit_maintenance import APPLICATION_NAME
from crmtasks.settings import AUDIT_PAUSE_POINTS
from tests.integration.audit_support import (  # noqa: F401
    archived_ids,
    audit_settings,
    fill_month,
    old_months,
    table_ids,
)
from tests.integration.s3_support import bucket_of, unfinished_uploads

pytestmark = pytest.mark.slow
ROWS_PER_MONTH = 4000
_JOB = "from crmtasks.jobs.audit_maintenance import run; print(run())"


@pytest.fixture(params=["file", "s3"])
def archive_target(request, tmp_path):
    """The archive store's variables: a local directory, or a fresh bucket on the test session's moto server."""
    if request.param == "file":
        return {"CRMTASKS_ARCHIVE_DIR": str(tmp_path / "archive")}
    return request.getfixturevalue("s3_archive")


def _start_job(target, **environ):
    env = dict(os.environ, **target, **environ)
    return subprocess.Popen([sys.executable, "-c", _JOB], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _assert_every_row_once(conn, settings, expected_ids):
    in_database = table_ids(conn)
    in_archives = archived_ids(settings)
    counts = Counter(in_database) + Counter(in_archives)
    assert set(counts) == set(expected_ids), "rows lost or invented"
    assert max(counts.values()) == 1, "rows duplicated between the database and the archives"
    checks = verify_archives(conn, settings)
    assert checks and all(check.ok for check in checks), checks
    assert open_store(settings).names(temporary=True) == []
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM audit_retention_ledger WHERE state <> 'dropped'")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'audit\\_log\\_p%%' AND relkind = 'r' "
                    "AND NOT relispartition")
        assert cur.fetchone()[0] == 0, "a detached month table was left behind"
    conn.commit()


def _prepare(conn):
    months = old_months(2)
    for month in months:
        fill_month(conn, month, ROWS_PER_MONTH)
    return sorted(table_ids(conn))


@pytest.mark.parametrize("step", AUDIT_PAUSE_POINTS)
def test_kill_at_each_step_then_rerun(audit_conn, tmp_path, archive_target, moto_server, step):
    settings = audit_settings(tmp_path, **archive_target)
    expected = _prepare(audit_conn)
    child = _start_job(archive_target, CRMTASKS_AUDIT_PAUSE_AT=step)
    line = child.stdout.readline().strip()
    assert line == f"paused at {step}", child.stderr.read() if not line else line
    child.kill()  # SIGKILL
    child.wait(timeout=10)
    if step == "mid_write" and "CRMTASKS_ARCHIVE_DIR" in archive_target:
        assert open_store(settings).names(temporary=True) != []
    if step == "after_data_file":  # a data file without manifest is not an archive
        assert open_store(settings).names(codecs.DATA_SUFFIXES) != []
        assert [c for c in verify_archives(audit_conn, settings)] == []
    stats = run_maintenance(audit_conn, settings)
    assert stats["dropped"] == 2 and stats["conflicts"] == 0, stats
    _assert_every_row_once(audit_conn, settings, expected)
    assert len(archived_ids(settings)) == 2 * ROWS_PER_MONTH
    if "CRMTASKS_ARCHIVE_URL" in archive_target:
        _assert_archives_in_the_bucket(moto_server, archive_target, 2)


PACED_ROWS_PER_MONTH = 40_000  # several MiB of COPY text: the pacer rests between blocks


def test_kill_a_paced_archive_midway_then_rerun(audit_conn, tmp_path, archive_target, moto_server):
    """A paced COPY (CRMTASKS_ARCHIVE_DUTY_PERCENT) killed halfway leaves nothing taken for an archive; the re-run,
    paced too, archives every row once, verifiably."""
    settings = audit_settings(tmp_path, CRMTASKS_ARCHIVE_DUTY_PERCENT=20, **archive_target)
    for month in old_months(2):
        fill_month(audit_conn, month, PACED_ROWS_PER_MONTH)
    expected = sorted(table_ids(audit_conn))
    child = _start_job(archive_target, CRMTASKS_AUDIT_PAUSE_AT="mid_write", CRMTASKS_ARCHIVE_DUTY_PERCENT="20")
    line = child.stdout.readline().strip()
    assert line == "paused at mid_write", child.stderr.read() if not line else line
    child.kill()
    child.wait(timeout=10)
    assert [check for check in verify_archives(audit_conn, settings)] == []
    stats = run_maintenance(audit_conn, settings)
    assert stats["dropped"] == 2 and stats["conflicts"] == 0, stats
    _assert_every_row_once(audit_conn, settings, expected)
    assert len(archived_ids(settings)) == 2 * PACED_ROWS_PER_MONTH


def _thread_priorities(pid: int) -> dict[int, tuple[int, int]]:
    """(niceness, scheduling policy) of each thread of process ``pid`` (/proc/<pid>/task/<tid>/stat, fields 19
    and 41)."""
    found = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        found[int(task)] = (int(fields[16]), int(fields[38]))
    return found


@pytest.mark.parametrize("niceness, idle", [(0, "0"), (13, "0"), (10, "1")])
def test_the_job_runs_niced_but_not_its_process(audit_conn, tmp_path, niceness, idle):
    """CRMTASKS_AUDIT_MAINTENANCE_NICENESS and _IDLE: the pass's thread and its PostgreSQL process (local, same
    user or root here) get that niceness and, with _IDLE, the SCHED_IDLE class; the job process's main thread
    keeps its own (never os.nice)."""
    target = {"CRMTASKS_ARCHIVE_DIR": str(tmp_path / "archive")}
    _prepare(audit_conn)
    child = _start_job(target, CRMTASKS_AUDIT_PAUSE_AT="after_premake",
                       CRMTASKS_AUDIT_MAINTENANCE_NICENESS=str(niceness), CRMTASKS_AUDIT_MAINTENANCE_IDLE=idle)
    policy = os.SCHED_IDLE if idle == "1" else os.SCHED_OTHER
    try:
        line = child.stdout.readline().strip()
        assert line == "paused at after_premake", child.stderr.read() if not line else line
        threads = _thread_priorities(child.pid)
        assert threads[child.pid] == (0, os.SCHED_OTHER)  # the main thread
        assert max(threads.values()) == (niceness, policy)
        [(backend,)] = _maintenance_sessions(audit_conn)
        assert os.getpriority(os.PRIO_PROCESS, backend) == niceness
        assert os.sched_getscheduler(backend) == policy
    finally:
        child.kill()
        child.wait(timeout=10)


def _assert_archives_in_the_bucket(server, target, months):
    """Read the bucket with a client of the test's own: the archives are there, and nothing else."""
    bucket = bucket_of(target)
    keys = [item["Key"] for item in server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert sum(key.endswith(".copy.zst") for key in keys) == months, keys
    assert sum(key.endswith(".manifest.json") for key in keys) == months, keys
    assert len(keys) == 2 * months, keys
    assert unfinished_uploads(server, bucket) == []


@pytest.mark.parametrize("server_session_dies", [True, False], ids=["client-and-session-killed", "client-killed"])
def test_kill_during_detach_concurrently(audit_conn, tmp_path, migrated_database_url, archive_target, request,
                                        server_session_dies):
    """A DETACH ... CONCURRENTLY caught between its two transactions is finished by the re-run."""
    settings = audit_settings(tmp_path, **archive_target)
    expected = _prepare(audit_conn)
    blocker = psycopg2.connect(migrated_database_url)  # an old transaction the detach must wait for
    with blocker.cursor() as cur:
        cur.execute("SELECT count(*) FROM audit_log")
    child = _start_job(archive_target)

    def detach_pending():
        with audit_conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_log'::regclass AND inhdetachpending")
            pending = cur.fetchone()[0]
        audit_conn.commit()
        return pending > 0

    _wait_for(detach_pending)
    child.kill()
    child.wait(timeout=10)
    if server_session_dies:
        with audit_conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                        (APPLICATION_NAME,))
        audit_conn.commit()
        _wait_for(lambda: not _maintenance_sessions(audit_conn))
        assert detach_pending()  # the crash left the partition half-detached
    blocker.commit()
    blocker.close()
    stats = run_maintenance(audit_conn, settings)
    if server_session_dies:
        assert stats["finalized"] == 1
    assert stats["dropped"] == 2, stats
    _assert_every_row_once(audit_conn, settings, expected)
    if "CRMTASKS_ARCHIVE_URL" in archive_target:
        _assert_archives_in_the_bucket(request.getfixturevalue("moto_server"), archive_target, 2)


def _maintenance_sessions(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APPLICATION_NAME,))
        pids = cur.fetchall()
    conn.commit()
    return pids
