"""audit_log: on-demand partitions, history pruning, seeding, premake, retention, archive, restore, verify."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import psycopg2
import pytest
import zstandard
from psycopg2 import sql

from crmtasks.audit import (
    AuditEntry,
    AuditRowTooOld,
    archive_file,
    history,
    record,
    record_many,
)
from crmtasks.audit.log import history_query
from crmtasks.audit.maintenance import run_maintenance
from crmtasks.audit.months import current_month
from crmtasks.audit.partitions import list_partitions
from crmtasks.audit.restore import RestoreRefused, restore_month
from crmtasks.audit.status import verify_archives
from crmtasks.audit.stores import FileStore
from crmtasks.demo import seed_audit
from tests.integration.audit_support import (  # noqa: F401
    archived_ids,
    audit_settings,
    fill_month,
    old_months,
    table_ids,
    table_rows,
)

UTC = datetime.timezone.utc


def _partition_names(conn):
    names = [p.name for p in list_partitions(conn)]
    conn.commit()
    return names


def test_record_creates_a_missing_month_inside_the_callers_transaction(audit_conn):
    month = current_month()
    with audit_conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE caller_work (n int)")
        cur.execute("INSERT INTO caller_work VALUES (1)")
    row_id = record("update", "lead", 7, actor_id=3, changes={"status": ["new", "won"]}, connection=audit_conn)
    audit_conn.commit()
    assert month.partition_name in _partition_names(audit_conn)
    with audit_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM caller_work")  # the failed first insert did not undo the caller's work
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT action, entity, entity_id, actor_id, changes FROM audit_log WHERE id = %s", (row_id,))
        assert cur.fetchone() == ("update", "lead", 7, 3, {"status": ["new", "won"]})


def test_record_many_is_atomic_and_creates_each_month(audit_conn):
    this_month = current_month()
    last_month = this_month.plus(-1)
    entries = [AuditEntry("create", "deal", n, occurred_at=(last_month if n % 2 else this_month).start
                          + datetime.timedelta(hours=n)) for n in range(10)]
    audit_conn.autocommit = True
    ids = record_many(entries, connection=audit_conn)
    assert len(ids) == 10 and len(set(ids)) == 10
    assert {this_month.partition_name, last_month.partition_name} <= set(_partition_names(audit_conn))
    with pytest.raises(psycopg2.errors.NotNullViolation):
        record_many([AuditEntry("create", "deal", 1), AuditEntry(None, "deal", 2)], connection=audit_conn)
    assert len(table_ids(audit_conn)) == 10  # neither row of the failed batch


def test_rows_older_than_retention_are_refused(audit_conn):
    too_old = current_month().plus(-13).start
    with pytest.raises(AuditRowTooOld):
        record("view", "lead", 1, occurred_at=too_old, connection=audit_conn)
    assert _partition_names(audit_conn) == []


def test_history_returns_one_records_rows_and_prunes_partitions(audit_conn):
    months = [current_month().plus(-offset) for offset in (3, 2, 1)]
    for month in months:
        fill_month(audit_conn, month, 200, entity_id_mod=10)
    rows = history("lead", 4, connection=audit_conn)
    assert len(rows) == 60 and all(r.entity == "lead" and r.entity_id == 4 for r in rows)
    assert rows == sorted(rows, key=lambda r: (r.occurred_at, r.id))
    window = history("lead", 4, since=months[1].start, until=months[1].end, connection=audit_conn)
    assert len(window) == 20 and all(months[1].start <= r.occurred_at < months[1].end for r in window)
    with audit_conn.cursor() as cur:
        cur.execute("EXPLAIN " + history_query("lead", 4, months[1].start, months[1].end, connection=audit_conn))
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert months[1].partition_name in plan
    assert months[0].partition_name not in plan and months[2].partition_name not in plan


def test_seed_is_deterministic_and_spreads_over_24_months(audit_conn):
    today = datetime.date(2025, 6, 15)
    counts = seed_audit(audit_conn, 2000, seed=7, today=today)
    assert counts["audit_log"] == 2000
    first = table_rows(audit_conn, "audit_log")
    with audit_conn.cursor() as cur:
        cur.execute("SELECT min(occurred_at), max(occurred_at), count(DISTINCT action), count(DISTINCT entity) "
                    "FROM audit_log")
        earliest, latest, actions, entities = cur.fetchone()
    assert datetime.datetime(2023, 6, 15, tzinfo=UTC) <= earliest < datetime.datetime(2023, 9, 1, tzinfo=UTC)
    assert datetime.datetime(2025, 6, 1, tzinfo=UTC) <= latest < datetime.datetime(2025, 6, 15, tzinfo=UTC)
    assert actions == 6 and entities == 5
    with audit_conn.cursor() as cur:
        cur.execute("TRUNCATE audit_log")
    audit_conn.commit()
    seed_audit(audit_conn, 2000, seed=7, today=today)
    again = table_rows(audit_conn, "audit_log")
    assert [row[1:] for row in again] == [row[1:] for row in first]  # same rows, new ids
    seed_audit(audit_conn, 10, seed=8, today=today)
    assert len(table_ids(audit_conn)) == 2010


def test_premake_and_archive_then_drop(audit_conn, tmp_path):
    settings = audit_settings(tmp_path)
    expired = old_months(2)
    kept = current_month().plus(-12)  # the oldest month still inside the window
    for month in expired + [kept]:
        fill_month(audit_conn, month, 500)
    before = {month: table_rows(audit_conn, month.partition_name) for month in expired}
    stats = run_maintenance(audit_conn, settings)
    assert stats["created"] == 4  # current month + 3
    assert (stats["archived"], stats["dropped"], stats["rows"], stats["moved"]) == (2, 2, 1000, 0)
    assert stats["bytes"] > 0
    names = _partition_names(audit_conn)
    assert kept.partition_name in names
    assert not any(month.partition_name in names for month in expired)
    for month in expired:
        manifest = archive_file.read_manifest(FileStore(settings.audit_archive_dir), f"{month.partition_name}.manifest.json")
        assert manifest.row_count == 500
        assert manifest.range_start == month.start.isoformat() and manifest.range_end == month.end.isoformat()
        assert (manifest.min_id, manifest.max_id) == (before[month][0][0], before[month][-1][0])
    assert all(check.ok for check in verify_archives(audit_conn, settings))
    again = run_maintenance(audit_conn, settings)
    assert (again["created"], again["archived"], again["dropped"]) == (0, 0, 0)


def test_the_pass_scans_months_without_parallel_workers(audit_conn, tmp_path):
    """Parallel workers are server processes at normal priority: the pass's counts of a month must not start
    any, even where the planner would (here it is told every parallel plan is free)."""
    fill_month(audit_conn, old_months(1)[0], 200)
    with audit_conn.cursor() as cur:
        for setting in ("parallel_setup_cost", "parallel_tuple_cost", "min_parallel_table_scan_size"):
            cur.execute(sql.SQL("SET {} = 0").format(sql.Identifier(setting)))
    audit_conn.commit()
    assert run_maintenance(audit_conn, audit_settings(tmp_path))["dropped"] == 1
    with audit_conn.cursor() as cur:
        cur.execute("EXPLAIN SELECT count(*), min(id) FROM audit_log")
        plan = "\n".join(line for (line,) in cur.fetchall())
    assert "Gather" not in plan, plan


def test_a_callers_connection_gets_its_server_process_priority_back(audit_conn, tmp_path):
    """run_maintenance puts the server process of the caller's connection in SCHED_IDLE (niced) for the pass
    only: a library caller that goes on using the connection gets it back as it was (root or same user here)."""
    backend = audit_conn.get_backend_pid()
    before = (os.sched_getscheduler(backend), os.getpriority(os.PRIO_PROCESS, backend))
    fill_month(audit_conn, old_months(1)[0], 50)
    settings = audit_settings(tmp_path, CRMTASKS_AUDIT_MAINTENANCE_IDLE=1)
    assert run_maintenance(audit_conn, settings)["dropped"] == 1
    assert (os.sched_getscheduler(backend), os.getpriority(os.PRIO_PROCESS, backend)) == before


def test_retention_uses_catalog_bounds_not_names(audit_conn, tmp_path):
    settings = audit_settings(tmp_path)
    expired = old_months(1)[0]
    recent = current_month().plus(-1)
    audit_conn.autocommit = True
    with audit_conn.cursor() as cur:  # names that lie about the months they hold
        cur.execute(sql.SQL("CREATE TABLE audit_log_p209912 PARTITION OF audit_log FOR VALUES FROM ({}) TO ({})").format(
            sql.Literal(expired.start), sql.Literal(expired.end)))
        cur.execute(sql.SQL("CREATE TABLE audit_log_p200001 PARTITION OF audit_log FOR VALUES FROM ({}) TO ({})").format(
            sql.Literal(recent.start), sql.Literal(recent.end)))
        cur.execute("INSERT INTO audit_log (occurred_at, action, entity, entity_id) VALUES (%s, 'view', 'lead', 1), "
                    "(%s, 'view', 'lead', 2)", (expired.start, recent.start))
    stats = run_maintenance(audit_conn, settings)
    assert stats["archived"] == 1 and stats["rows"] == 1
    names = _partition_names(audit_conn)
    assert "audit_log_p209912" not in names and "audit_log_p200001" in names
    manifest = archive_file.read_manifest(FileStore(settings.audit_archive_dir), f"{expired.partition_name}.manifest.json")
    assert manifest.partition == "audit_log_p209912" and manifest.month == str(expired)


def test_legal_hold_stops_every_drop(audit_conn, tmp_path):
    expired = old_months(2)
    for month in expired:
        fill_month(audit_conn, month, 100)
    held = run_maintenance(audit_conn, audit_settings(tmp_path, CRMTASKS_AUDIT_HOLD=1))
    assert (held["archived"], held["dropped"], held["rows"], held["held"]) == (0, 0, 0, 2)
    held = run_maintenance(audit_conn, audit_settings(tmp_path, CRMTASKS_AUDIT_HOLD=1,
                                                      CRMTASKS_AUDIT_RETENTION_POLICY="delete"))
    assert held["dropped"] == 0 and len(table_ids(audit_conn)) == 200
    released = run_maintenance(audit_conn, audit_settings(tmp_path))
    assert released["dropped"] == 2 and table_ids(audit_conn) == []


@pytest.mark.parametrize("step", ["before_detach", "after_manifest", "before_drop"])
def test_hold_keeps_a_half_done_month(audit_conn, tmp_path, step):
    month = old_months(1)[0]
    fill_month(audit_conn, month, 100)
    ids = sorted(table_ids(audit_conn))
    env = dict(os.environ, CRMTASKS_ARCHIVE_DIR=str(tmp_path / "archive"), CRMTASKS_AUDIT_PAUSE_AT=step)
    child = subprocess.Popen([sys.executable, "-c", "from crmtasks.jobs.audit_maintenance import run; run()"],
                             env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == f"paused at {step}"
    child.kill()
    child.wait()
    held = run_maintenance(audit_conn, audit_settings(tmp_path, CRMTASKS_AUDIT_HOLD=1))
    assert (held["dropped"], held["held"]) == (0, 1)
    assert sorted(table_ids(audit_conn, month.partition_name)) == ids
    released = run_maintenance(audit_conn, audit_settings(tmp_path))
    assert released["dropped"] == 1 and sorted(archived_ids(tmp_path / "archive")) == ids


def test_delete_policy_drops_without_archive(audit_conn, tmp_path):
    settings = audit_settings(tmp_path, CRMTASKS_AUDIT_RETENTION_POLICY="delete")
    for month in old_months(2):
        fill_month(audit_conn, month, 50)
    stats = run_maintenance(audit_conn, settings)
    assert (stats["archived"], stats["dropped"], stats["rows"], stats["bytes"]) == (0, 2, 100, 0)
    assert table_ids(audit_conn) == []
    assert not settings.audit_archive_dir.exists() or not list(settings.audit_archive_dir.iterdir())


def test_restore_brings_back_exactly_the_archived_rows(audit_conn, tmp_path):
    settings = audit_settings(tmp_path)
    month = old_months(1)[0]
    fill_month(audit_conn, month, 3000)
    original = table_rows(audit_conn, month.partition_name)
    run_maintenance(audit_conn, settings)
    assert month.partition_name not in _partition_names(audit_conn)
    audit_conn.autocommit = False
    result = restore_month(audit_conn, settings, month)
    assert result.rows == 3000
    assert month.partition_name in _partition_names(audit_conn)
    restored = table_rows(audit_conn, "audit_log", sql.SQL("occurred_at >= {} AND occurred_at < {}").format(
        sql.Literal(month.start), sql.Literal(month.end)))
    assert restored == original  # row by row, every column
    with pytest.raises(RestoreRefused, match="overlaps existing partition"):
        restore_month(audit_conn, settings, month)
    # The next run detaches it again and, finding an archive of the very same rows, reuses it.
    again = run_maintenance(audit_conn, settings)
    assert (again["archived"], again["dropped"], again["bytes"], again["conflicts"]) == (1, 1, 0, 0)
    assert sorted(archived_ids(settings.audit_archive_dir)) == sorted(row[0] for row in original)


def test_restore_refuses_a_damaged_archive_and_verify_reports_it(audit_conn, tmp_path):
    settings = audit_settings(tmp_path)
    months = old_months(2)
    for month in months:
        fill_month(audit_conn, month, 400)
    run_maintenance(audit_conn, settings)
    damaged = months[0]
    data = settings.audit_archive_dir / f"{damaged.partition_name}.copy.zst"
    # One changed row in a valid zstd file: only the checksums can tell.
    text = zstandard.ZstdDecompressor().decompressobj().decompress(data.read_bytes())
    data.write_bytes(zstandard.ZstdCompressor(level=3).compress(text.replace(b"\tview\t", b"\tVIEW\t", 1)))
    checks = {check.month: check for check in verify_archives(audit_conn, settings)}
    assert checks[str(damaged)].ok is False and checks[str(months[1])].ok is True
    with pytest.raises(RestoreRefused, match="fails verification"):
        restore_month(audit_conn, settings, damaged)
    assert damaged.partition_name not in _partition_names(audit_conn)
    manifest_path = settings.audit_archive_dir / f"{months[1].partition_name}.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["rows_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(RestoreRefused, match="rows checksum differs"):
        restore_month(audit_conn, settings, months[1])


def test_restore_refuses_a_month_without_archive(audit_conn, tmp_path):
    settings = audit_settings(tmp_path)
    month = old_months(1)[0]
    with pytest.raises(RestoreRefused, match="no archive"):
        restore_month(audit_conn, settings, month)


def test_cli_seed_audit_status_verify_and_restore(audit_conn, tmp_path, migrated_database_url):
    env = dict(os.environ, CRMTASKS_ARCHIVE_DIR=str(tmp_path / "archive"))

    def crmtasks(*args):
        return subprocess.run([sys.executable, "-m", "crmtasks", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    seeded = crmtasks("seed", "--audit", "3000", "--seed", "3")
    assert seeded.returncode == 0, seeded.stderr
    assert len(table_ids(audit_conn)) == 3000
    ran = crmtasks("run", "--task", "audit_maintenance", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    outcome = json.loads(ran.stdout)[0]
    assert outcome["status"] == "succeeded" and outcome["stats"]["archived"] >= 11
    with audit_conn.cursor() as cur:
        cur.execute("SELECT stats FROM task_runs WHERE id = %s", (outcome["run_id"],))
        assert cur.fetchone()[0]["rows"] == outcome["stats"]["rows"] > 0
    audit_conn.commit()
    status = crmtasks("audit", "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert len(report["archives"]) == outcome["stats"]["archived"]
    assert all(a["state"] == "complete" for a in report["archives"])
    # The seeded rows, and the operator trail's row for `crmtasks run` (crmtasks.runs.trail).
    with audit_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM audit_log WHERE entity = 'crmtasks.operations' AND action = 'run_now'")
        assert cur.fetchone()[0] == 1
    audit_conn.commit()
    assert sum(p["rows"] for p in report["partitions"]) + sum(a["rows"] for a in report["archives"]) == 3000 + 1
    verified = crmtasks("audit", "verify")
    assert verified.returncode == 0, verified.stdout
    month = report["archives"][0]["month"]
    restored = crmtasks("audit", "restore", month)
    assert restored.returncode == 0, restored.stderr
    assert f"restored {month}" in restored.stdout
    refused = crmtasks("audit", "restore", month)
    assert refused.returncode == 2 and "overlaps existing partition" in refused.stderr
    bad = crmtasks("audit", "restore", "2024-13")
    assert bad.returncode == 2 and "is not a month" in bad.stderr


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "crmtasks", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _audit_findings(env):
    checked = _cli(env, "check", "--json")
    return [f for f in json.loads(checked.stdout) if f["area"] == "audit"]


def test_verify_status_and_check_fail_for_an_archive_the_ledger_has_and_the_disk_lacks(audit_conn, tmp_path,
                                                                                       migrated_database_url):
    settings = audit_settings(tmp_path)
    months = old_months(3)
    for month in months:
        fill_month(audit_conn, month, 100)
    run_maintenance(audit_conn, settings)
    env = dict(os.environ, CRMTASKS_ARCHIVE_DIR=str(settings.audit_archive_dir))
    assert _cli(env, "audit", "verify").returncode == 0
    lost, unreadable, intact = months
    (settings.audit_archive_dir / f"{lost.partition_name}.manifest.json").unlink()
    verified = _cli(env, "audit", "verify")
    assert verified.returncode == 1 and "FAILED" in verified.stdout, verified.stdout + verified.stderr

    manifest = settings.audit_archive_dir / f"{unreadable.partition_name}.manifest.json"
    manifest.unlink()
    manifest.mkdir()  # there, but cannot be read (a chmod would not stop root)
    verified = _cli(env, "audit", "verify", "--json")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    checks = {check["month"]: check for check in json.loads(verified.stdout)}
    assert set(checks) == {str(month) for month in months}
    assert not checks[str(lost)]["ok"] and "missing" in checks[str(lost)]["problem"]
    assert "dropped" in checks[str(lost)]["problem"]
    assert not checks[str(unreadable)]["ok"] and "cannot be read" in checks[str(unreadable)]["problem"]
    assert checks[str(intact)]["ok"]
    assert "Traceback" not in verified.stderr

    status = _cli(env, "audit", "status", "--json")
    assert status.returncode == 0, status.stderr
    states = {a["month"]: a["state"] for a in json.loads(status.stdout)["archives"]}
    assert "missing" in states[str(lost)] and "cannot be read" in states[str(unreadable)]
    assert states[str(intact)] == "complete"

    problems = [f["message"] for f in _audit_findings(env) if not f["ok"]]
    assert len(problems) == 2 and str(lost) in problems[0] and str(unreadable) in problems[1], problems

    refused = _cli(env, "audit", "restore", str(lost))
    assert refused.returncode == 2 and "the ledger says" in refused.stderr, refused.stderr


def test_verify_and_restore_refuse_an_archive_of_other_rows_than_the_ledger_recorded(audit_conn, tmp_path):
    settings = audit_settings(tmp_path)
    month, other = old_months(2)
    for each in (month, other):
        fill_month(audit_conn, each, 100)
    run_maintenance(audit_conn, settings)
    with audit_conn.cursor() as cur:  # as if the file had come from another database, or an older run
        cur.execute("UPDATE audit_retention_ledger SET rows_checksum = %s WHERE month = %s", ("0" * 64, month.start))
    audit_conn.commit()
    checks = {check.month: check for check in verify_archives(audit_conn, settings)}
    assert not checks[str(month)].ok and "the ledger recorded" in checks[str(month)].problem
    assert checks[str(other)].ok
    with pytest.raises(RestoreRefused, match="not the archive this database dropped"):
        restore_month(audit_conn, settings, month)


@pytest.mark.parametrize("content", [b"[]", b"\xff\xfe", {"data_file": 5}])
def test_a_manifest_that_is_not_one_fails_verify_without_a_traceback(audit_conn, tmp_path, content):
    settings = audit_settings(tmp_path)
    month = old_months(1)[0]
    fill_month(audit_conn, month, 10)
    run_maintenance(audit_conn, settings)
    path = settings.audit_archive_dir / f"{month.partition_name}.manifest.json"
    if isinstance(content, dict):
        path.write_text(json.dumps({**json.loads(path.read_text()), **content}))
    else:
        path.write_bytes(content)
    [check] = verify_archives(audit_conn, settings)
    assert (check.month, check.ok) == (str(month), False) and "manifest" in check.problem
    with pytest.raises(RestoreRefused, match="fails verification"):
        restore_month(audit_conn, settings, month)


@pytest.mark.parametrize("loss", ["manifest", "data file"])
def test_a_month_archived_but_not_yet_dropped_whose_archive_is_lost_is_archived_again(audit_conn, tmp_path, loss):
    month = old_months(1)[0]
    fill_month(audit_conn, month, 100)
    ids = sorted(table_ids(audit_conn))
    env = dict(os.environ, CRMTASKS_ARCHIVE_DIR=str(tmp_path / "archive"), CRMTASKS_AUDIT_PAUSE_AT="before_drop")
    child = subprocess.Popen([sys.executable, "-c", "from crmtasks.jobs.audit_maintenance import run; run()"],
                             env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "paused at before_drop"  # the ledger says 'archived'
    child.kill()
    child.wait()
    settings = audit_settings(tmp_path)
    suffix = ".manifest.json" if loss == "manifest" else ".copy.zst"
    (settings.audit_archive_dir / f"{month.partition_name}{suffix}").unlink()
    [check] = verify_archives(audit_conn, settings)
    assert not check.ok and "still in the detached table" in check.problem
    stats = run_maintenance(audit_conn, settings)
    assert (stats["archived"], stats["dropped"], stats["rows"]) == (1, 1, 100)
    assert sorted(archived_ids(settings.audit_archive_dir)) == ids
    assert all(check.ok for check in verify_archives(audit_conn, settings))
