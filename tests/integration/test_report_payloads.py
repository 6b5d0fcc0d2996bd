"""Report payloads: a report's columns and CLI bytes kept per refresh generation, and only ever served for it.

Every test reads through the public API or the CLI against real PostgreSQL.
Payloads are planted (rewritten in ``report_payloads``) only to tell which
path answered: a planted payload of the published generation must be what a
call returns, one of another generation never.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
from click.testing import CliRunner

from crmtasks import reports
from crmtasks.cli import main
from crmtasks.jobs import precompute_aggregates
from crmtasks.reports import payloads, queries, render
from crmtasks.reports import refresh as aggregates
from crmtasks.reports.rows import Rows
from tests.integration import live_reports
from tests.integration.random_crm import RandomCRM

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def computed(crm_db):
    conn = crm_db.connection()
    with conn.cursor() as cur:
        cur.execute("DELETE FROM report_payloads")
    RandomCRM(conn, 31).create(deals=250, leads=120, accounts=40)
    aggregates.refresh(conn, full=True)
    yield conn
    with conn.cursor() as cur:  # leave no published aggregates behind: later tests expect none until they run
        cur.execute("UPDATE report_aggregate_state SET as_of = NULL, rebuild_required = true, last_rebuild_at = NULL")
        cur.execute("DELETE FROM report_payloads")


def _kept(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute("SELECT digest, kind, as_of FROM report_payloads ORDER BY digest, kind")
        return cur.fetchall()


def _plant(conn, digest: str, kind: str, as_of, data: bytes) -> None:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO report_payloads (digest, kind, as_of, data) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (digest, kind) DO UPDATE SET as_of = excluded.as_of, data = excluded.data",
                    (digest, kind, as_of, data.decode()))


def _planted_revenue(report) -> bytes:
    """The payload of one made-up revenue row (period, owner 424242): nothing the aggregates could hold."""
    first = report.rows[0]
    columns = [first["period_start"].isoformat(), "424242", ["Planted"], "true", "1", "1.00", "1.00"]
    return payloads.encode(1, columns)


def _live_rows(conn, name, **filters):
    return live_reports.LIVE[name](conn, **filters)


def _api_rows(report):
    return [tuple(v for c, v in row.items() if c != "period") for row in report.rows]


def test_the_next_call_of_a_generation_is_answered_by_its_kept_payload(computed):
    conn = computed
    first = reports.revenue(connection=conn, by_owner=True)
    assert _api_rows(first) == _live_rows(conn, "revenue", by_owner=True)
    assert (first.cache, "columns", first.as_of) in _kept(conn)

    _plant(conn, first.cache, "columns", first.as_of, _planted_revenue(first))
    planted = reports.revenue(connection=conn, by_owner=True)
    assert [(row["owner_id"], row["owner_name"]) for row in planted.rows] == [(424242, "Planted")]

    aggregates.refresh(conn)  # a new generation: the planted payload is not served
    again = reports.revenue(connection=conn, by_owner=True)
    assert again.as_of > first.as_of
    assert _api_rows(again) == _live_rows(conn, "revenue", by_owner=True)
    assert (first.cache, "columns", again.as_of) in _kept(conn)


def test_a_payload_of_another_generation_is_never_served_nor_kept_over_a_newer_one(computed):
    conn = computed
    old = reports.revenue(connection=conn, by_owner=True)
    aggregates.refresh(conn)
    # A reader of the old generation that stores its payload late, after the run deleted the old ones.
    _plant(conn, old.cache, "columns", old.as_of, _planted_revenue(old))
    new = reports.revenue(connection=conn, by_owner=True)
    assert new.as_of > old.as_of
    assert _api_rows(new) == _live_rows(conn, "revenue", by_owner=True)

    payloads.store(conn, old.cache, "columns", old.as_of, _planted_revenue(old))  # older: refused
    assert (old.cache, "columns", new.as_of) in _kept(conn)
    assert _api_rows(reports.revenue(connection=conn, by_owner=True)) == _api_rows(new)


def test_the_job_deletes_old_payloads_but_carries_the_rows_of_reports_its_run_did_not_touch(computed):
    conn = computed
    for name, spec in reports.REPORTS.items():
        spec.function(connection=conn, by_owner=True)
    assert len(_kept(conn)) == len(reports.REPORTS)
    with conn.cursor() as cur:
        cur.execute("UPDATE deals SET amount = coalesce(amount, 0) + 1 WHERE id = (SELECT min(id) FROM deals)")
    stats = precompute_aggregates.run()
    as_of = aggregates.state(conn)["as_of"]
    # Only deals changed: the deal reports' payloads are gone, the lead and account reports' rows are carried to
    # the new generation, and are what their next calls answer, equal to live SQL.
    assert stats["mode"] == "incremental" and stats["payloads_carried"] == 2
    assert stats["payloads_deleted"] == len(reports.REPORTS) - 2
    assert [kept_as_of for _, _, kept_as_of in _kept(conn)] == [as_of, as_of]
    leads = reports.lead_conversion(connection=conn, by_owner=True)
    assert leads.as_of == as_of and _api_rows(leads) == _live_rows(conn, "lead_conversion", by_owner=True)
    assert _api_rows(reports.accounts(connection=conn, by_owner=True)) == _live_rows(conn, "accounts", by_owner=True)

    with conn.cursor() as cur:  # now a lead changes: its report is read again, never carried stale
        cur.execute("UPDATE leads SET status = CASE WHEN status = 'Converted' THEN 'New' ELSE 'Converted' END "
                    "WHERE id = (SELECT min(id) FROM leads)")
    stats = precompute_aggregates.run()
    assert stats["payloads_carried"] == 1 and stats["payloads_deleted"] == 1  # accounts carried, leads deleted
    leads = reports.lead_conversion(connection=conn, by_owner=True)
    assert leads.as_of > as_of and _api_rows(leads) == _live_rows(conn, "lead_conversion", by_owner=True)

    with conn.cursor() as cur:  # a new owner name is in every per-owner row: nothing is carried
        cur.execute("UPDATE users SET full_name = full_name || ' Jr' WHERE id = (SELECT min(owner_id) FROM accounts)")
    stats = precompute_aggregates.run()
    assert stats["payloads_carried"] == 0 and _kept(conn) == []
    assert _api_rows(reports.accounts(connection=conn, by_owner=True)) == _live_rows(conn, "accounts", by_owner=True)


def test_a_callers_own_transaction_is_never_written_to(computed, migrated_database_url):
    caller = psycopg2.connect(migrated_database_url)  # not autocommit: the call runs inside the caller's transaction
    try:
        report = reports.pipeline(connection=caller, by_owner=True)
        caller.commit()  # whatever the call did in it is now committed: it must have written nothing
    finally:
        caller.close()
    assert _api_rows(report) == _live_rows(computed, "pipeline", by_owner=True)
    assert _kept(computed) == []


def _cli(*args) -> bytes:
    result = CliRunner().invoke(main, ["report", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout_bytes


@pytest.mark.parametrize("name", list(reports.REPORTS))
def test_cli_bytes_are_the_api_rows_formatted_and_kept_for_the_generation(computed, name):
    conn = computed
    api = reports.get(name).function(connection=conn, by_owner=True)
    for output_format, render_report in (("csv", render.as_csv), ("json", render.as_json)):
        printed = _cli(name, "--by-owner", "--format", output_format)
        assert printed == render_report(api)
        assert _cli(name, "--by-owner", "--format", output_format) == printed  # the kept bytes, unchanged
        assert (api.cache, output_format, api.as_of) in _kept(conn)
    document = json.loads(_cli(name, "--by-owner", "--format", "json"))
    assert document["as_of"] == api.as_of.isoformat()
    assert document["rows"] == json.loads(json.dumps(list(api.rows), default=str))
    table = list(csv.reader(io.StringIO(_cli(name, "--by-owner", "--format", "csv").decode())))
    assert table[0] == [*api.columns, "as_of"]
    assert table[1:] == [["" if row[c] is None else (row[c].isoformat() if hasattr(row[c], "isoformat") else str(row[c]))
                          for c in api.columns] + [api.as_of.isoformat()] for row in api.rows]


def test_cli_prints_the_bytes_kept_for_the_published_generation(computed):
    conn = computed
    query = queries.query_for("revenue", conn, by_owner=True)
    first = _cli("revenue", "--by-owner", "--format", "csv")
    _plant(conn, queries.digest_of(query, conn.cursor()), "csv",
           reports.revenue(connection=conn, by_owner=True).as_of, b"planted\n")
    assert _cli("revenue", "--by-owner", "--format", "csv") == b"planted\n"
    assert first != b"planted\n"
    aggregates.refresh(conn)  # a new generation: the planted bytes are not printed again
    after = reports.revenue(connection=conn, by_owner=True)
    assert _cli("revenue", "--by-owner", "--format", "csv") == render.as_csv(after)


def test_kill_9_of_runs_and_readers_leaves_only_whole_payloads(computed, migrated_database_url):
    """A process refreshing and reading every report in a loop, killed (SIGKILL) mid-way, three times."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    checked = 0
    for pause in (0.05, 0.4, 1.1):
        child = subprocess.Popen([sys.executable, "-m", "tests.integration.report_churn_process",
                                  migrated_database_url], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "1"  # one whole loop done: the next is under way
            time.sleep(pause)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        checked += _check_every_kept_payload(computed)
    assert checked, "the killed process never kept a payload for the generation it published"
    aggregates.refresh(computed)
    for name, spec in reports.REPORTS.items():
        if name != "accounts":
            assert _api_rows(spec.function(connection=computed, by_owner=True)) == _live_rows(computed, name,
                                                                                             by_owner=True)


def _check_every_kept_payload(conn) -> int:
    """Each payload of the published generation is exactly what reading the aggregates gives now; how many."""
    published = aggregates.state(conn)["as_of"]
    checked = 0
    for name, spec in reports.REPORTS.items():
        for by_owner in (False, True):
            query = queries.query_for(name, conn, by_owner=by_owner)
            digest = queries.digest_of(query, conn.cursor())
            with conn.cursor() as cur:
                cur.execute("SELECT kind, data FROM report_payloads WHERE digest = %s AND as_of = %s", (digest, published))
                stored = dict(cur.fetchall())
            fresh = _fresh(conn, query)
            if "columns" in stored:
                assert payloads.decode(stored["columns"].encode()) == payloads.decode(payloads.encode(*fresh[0])), name
            for output_format in render.FORMATS:
                if output_format in stored:
                    assert stored[output_format].encode() == fresh[1][output_format], (name, output_format)
            checked += len(stored)
    return checked


def _fresh(conn, query):
    """(count and columns, {format: bytes}) read from the aggregates now, bypassing every kept payload."""
    kinds = tuple(queries.COLUMN_KINDS[column] for column in query.names)
    with conn.cursor() as cur:
        cur.execute(payloads.columnar_statement(query.statement, query.names, kinds), query.params)
        as_of, count, *columns = cur.fetchone()
    names = ("period", *query.names) if query.grain else query.names
    raw = (None, *columns) if query.grain else columns
    report = reports.Report(query.name, names, Rows(names, (("period",) if query.grain else ()) + kinds, raw, count,
                                                    query.grain), as_of, dict(query.filters))
    return (count, columns), {"csv": render.as_csv(report), "json": render.as_json(report)}
