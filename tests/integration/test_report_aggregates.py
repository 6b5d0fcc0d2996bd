"""Report aggregates equal live SQL over the raw tables, after full and incremental runs.

Every report function, with every filter shape (all owners, per owner, one
owner, a deactivated owner, month/quarter/year grains, date ranges, stages),
is compared with an independent live query (tests/integration/live_reports.py)
on random data, then again after random inserts, updates and deletes folded
by an incremental run. Then the run's guarantees: it folds only what changed,
does not lose a change committed while it runs, rolls back whole, refuses to
run twice at once, and rebuilds after a TRUNCATE.
"""

from __future__ import annotations

import datetime
import random
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import psycopg2.extensions
import pytest

from crmtasks import reports
from crmtasks.pg import AdvisoryLock
from crmtasks.reports import periods
from crmtasks.reports import refresh as aggregates
from tests.integration import live_reports
from tests.integration.random_crm import OPEN_STAGES, RandomCRM


@pytest.fixture()
def conn(crm_db):
    """The test's autocommit connection (peewee's), with the aggregates emptied and due for a rebuild."""
    connection = crm_db.connection()
    with connection.cursor() as cur:
        cur.execute("TRUNCATE report_deal_periods, report_open_pipeline, report_lead_periods, report_account_segments,"
                    " report_deal_changes, report_lead_changes, report_account_changes, report_owner_changes")
        cur.execute("UPDATE report_aggregate_state SET as_of = NULL, rebuild_required = true, last_rebuild_at = NULL")
    yield connection
    with connection.cursor() as cur:
        cur.execute("RESET TIME ZONE")


def _ids(conn, query):
    with conn.cursor() as cur:
        cur.execute(query)
        return [row[0] for row in cur.fetchall()]


def _filter_cases(conn, rng):
    """Filter combinations for every report, drawn from the data at hand."""
    owners = _ids(conn, "SELECT id FROM users ORDER BY id")
    inactive = _ids(conn, "SELECT id FROM users WHERE NOT is_active ORDER BY id")
    some_owners = rng.sample(owners, 2) + inactive[:1]
    cases = []
    for name, spec in reports.REPORTS.items():
        base = [{}, {"by_owner": True}] + [{"owner": owner} for owner in some_owners]
        if spec.periodic:
            for grain in reports.GRAINS:
                cases += [(name, dict(b, grain=grain)) for b in base]
                first = periods.period_start(datetime.date(2023 + rng.randrange(2), rng.randrange(1, 13), 1), grain)
                last = datetime.date(2024, 12, 31)
                cases.append((name, {"grain": grain, "date_from": first, "date_to": last, "by_owner": True}))
                cases.append((name, {"grain": grain, "date_to": datetime.date(2023, 12, 31)}))
        else:
            cases += [(name, b) for b in base]
    cases += [("pipeline", {"stage": rng.choice(OPEN_STAGES)}), ("pipeline", {"stage": "Proposal", "by_owner": True})]
    cases += [("sales_cycle", {"stage": stage, "grain": "quarter", "by_owner": by_owner})
              for stage in ("Closed Won", "Closed Lost") for by_owner in (False, True)]
    return cases


def assert_reports_equal_live(conn, rng, *, minimum_rows=100):
    compared = 0
    for name, filters in _filter_cases(conn, rng):
        report = reports.REPORTS[name].function(connection=conn, **filters)
        got = [tuple(value for column, value in row.items() if column != "period") for row in report.rows]
        live_filters = dict(filters)
        if reports.REPORTS[name].periodic:
            live_filters.setdefault("grain", reports.REPORTS[name].default_grain)
        expected = live_reports.LIVE[name](conn, **live_filters)
        assert got == expected, f"{name} {filters}: aggregates differ from live SQL"
        compared += len(expected)
    assert compared >= minimum_rows  # the cases are not vacuous


# Per table: what makes a row an emptied group (every record of it deleted or moved away).
_EMPTY = {
    "report_deal_periods": "won_count = 0 AND lost_count = 0",
    "report_open_pipeline": "deal_count = 0",
    "report_lead_periods": "lead_count = 0",
    "report_account_segments": "account_count = 0",
}


def _aggregate_contents(conn):
    """Every aggregate row, per table; checks that no emptied group was left behind."""
    contents = {}
    for table in aggregates.AGGREGATE_TABLES:
        with conn.cursor() as cur:  # the names and conditions are this module's constants
            cur.execute(f"SELECT count(*) FROM {table} WHERE {_EMPTY[table]}")
            assert cur.fetchone()[0] == 0, f"{table}: an emptied group was left behind"
            cur.execute(f"SELECT * FROM {table}")
            contents[table] = sorted(cur.fetchall(), key=repr)
    return contents


def _server_now(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        return cur.fetchone()[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_report_equals_live_sql_after_full_and_incremental_runs(conn, seed):
    rng = random.Random(seed)
    crm = RandomCRM(conn, seed)
    crm.create()
    first = aggregates.refresh(conn)
    assert (first.mode, first.reason) == ("full", "first run")
    assert_reports_equal_live(conn, rng, minimum_rows=1000)

    with conn.cursor() as cur:  # the job must not depend on the session's time zone
        cur.execute("SET TIME ZONE 'Pacific/Kiritimati'")
    for _ in range(2):
        crm.edit()
        changed_before = _server_now(conn)
        run = aggregates.refresh(conn)
        assert run.mode == "incremental"
        assert 0 < sum(run.rows_read.values()) < 1000  # the change log, not the tables
        assert run.as_of >= changed_before
        assert_reports_equal_live(conn, rng, minimum_rows=1000)

    incremental = _aggregate_contents(conn)
    assert run.aggregate_rows_removed > 0  # some groups emptied and were deleted
    rebuilt = aggregates.refresh(conn, full=True)
    assert rebuilt.mode == "full"
    assert _aggregate_contents(conn) == incremental  # folding changes == recomputing from scratch


def test_only_months_are_stored_and_quarters_and_years_sum_them(conn):
    """A change writes its month only (two rows, not six); reports sum months into quarters and years."""
    RandomCRM(conn, 7).create(deals=300, leads=200)
    aggregates.refresh(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT grain FROM report_deal_periods UNION SELECT DISTINCT grain FROM report_lead_periods")
        assert cur.fetchall() == [("month",)]
    months = reports.revenue(connection=conn, grain="month", by_owner=True).rows
    for grain in ("quarter", "year"):
        summed: dict = {}
        for row in months:
            key = (periods.period_start(row["period_start"], grain), row["owner_id"])
            count, revenue = summed.get(key, (0, 0))
            summed[key] = (count + row["deal_count"], revenue + row["revenue"])
        got = {(row["period_start"], row["owner_id"]): (row["deal_count"], row["revenue"])
               for row in reports.revenue(connection=conn, grain=grain, by_owner=True).rows}
        assert got == summed and len(got) > 1


def test_an_incremental_run_reads_only_the_changed_rows(conn):
    RandomCRM(conn, 11).create(deals=200, leads=50, accounts=20)
    aggregates.refresh(conn)
    deal_id = _ids(conn, "SELECT id FROM deals WHERE stage = 'Closed Won' AND close_date BETWEEN '2023-03-01' AND '2023-12-31' LIMIT 1")[0]
    with conn.cursor() as cur:
        cur.execute("UPDATE deals SET name = 'renamed', updated_at = now()")  # no reported column: nothing logged
    quiet = aggregates.refresh(conn)
    assert quiet.rows_read == {"deals": 0, "leads": 0, "accounts": 0} and quiet.aggregate_rows_written == 0

    with conn.cursor() as cur:
        cur.execute("SELECT close_date FROM deals WHERE id = %s", (deal_id,))
        old_close = cur.fetchone()[0]
        cur.execute("UPDATE deals SET close_date = '2024-02-10', stage = 'Closed Lost' WHERE id = %s", (deal_id,))
    moved = aggregates.refresh(conn)
    assert moved.rows_read["deals"] == 2  # the old image and the new one
    assert moved.months_touched == sorted({old_close.strftime("%Y-%m"), "2024-02"})

    with conn.cursor() as cur:
        cur.execute("DELETE FROM deals WHERE id = %s", (deal_id,))
    deleted = aggregates.refresh(conn)
    assert deleted.rows_read["deals"] == 1 and deleted.months_touched == ["2024-02"]
    assert_reports_equal_live(conn, random.Random(11))


class _StatementLog(psycopg2.extensions.connection):
    """A connection that keeps the text of every statement its cursors send (to count a run's round trips)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.statements = []

    def cursor(self, *args, **kwargs):
        kwargs.setdefault("cursor_factory", _LoggedCursor)
        return super().cursor(*args, **kwargs)


class _LoggedCursor(psycopg2.extensions.cursor):
    def execute(self, query, vars=None):
        self.connection.statements.append(query if isinstance(query, str) else query.as_string(self.connection))
        return super().execute(query, vars)


def test_a_run_folds_every_log_and_deletes_emptied_groups_in_one_statement(conn, migrated_database_url):
    RandomCRM(conn, 21).create(deals=200, leads=150, accounts=40)
    aggregates.refresh(conn)
    with conn.cursor() as cur:
        # Whole groups empty, NULL keys included: no owner, no source, no industry, no region.
        cur.execute("DELETE FROM deals WHERE owner_id IS NULL OR owner_id = (SELECT min(owner_id) FROM deals)")
        cur.execute("DELETE FROM leads WHERE source IS NULL OR owner_id IS NULL")
        cur.execute("DELETE FROM accounts WHERE industry IS NULL OR region IS NULL OR owner_id IS NULL")
    RandomCRM(conn, 22).edit()
    job_conn = psycopg2.connect(migrated_database_url, connection_factory=_StatementLog)
    job_conn.autocommit = True
    try:
        stats = aggregates.refresh(job_conn)
        statements = [" ".join(text.split()) for text in job_conn.statements]
    finally:
        job_conn.close()
    assert stats.mode == "incremental" and stats.aggregate_rows_removed > 0
    assert all(stats.rows_read[source] > 0 for source in ("deals", "leads", "accounts"))
    # BEGIN with the snapshot's first query and the lock, [the owners' new names: edit() renames users], the fold
    # (prepared in the same round trip on this new connection), COMMIT: every log, every table, the emptied groups
    # and as_of in one statement; no unlock (the lock ends with the transaction).
    assert statements[0].startswith("BEGIN ISOLATION LEVEL REPEATABLE READ") and "pg_try_advisory_xact_lock" in statements[0]
    assert "DELETE FROM report_owner_changes" in statements[1] and stats.owners_refreshed > 0
    assert statements[2].startswith('PREPARE "crmtasks_report_fold_deals_leads_accounts" (timestamptz) AS WITH deal_images AS')
    assert statements[2].endswith('EXECUTE "crmtasks_report_fold_deals_leads_accounts" (%s)')
    assert statements[3:] == ["COMMIT"], statements
    _aggregate_contents(conn)  # no emptied group left behind
    assert_reports_equal_live(conn, random.Random(21))


def test_later_runs_on_a_connection_only_execute_the_prepared_fold_and_stay_exact(conn, migrated_database_url):
    RandomCRM(conn, 41).create(deals=150, leads=60, accounts=20)
    job_conn = psycopg2.connect(migrated_database_url, connection_factory=_StatementLog)
    job_conn.autocommit = True
    try:
        assert aggregates.refresh(job_conn).mode == "full"
        trips = []
        for round_number in range(4):
            with conn.cursor() as cur:
                cur.execute("UPDATE deals SET amount = coalesce(amount, 0) + 1, owner_id = NULL WHERE id %% 7 = %s",
                            (round_number,))
            if round_number == 2:
                with job_conn.cursor() as cur:
                    cur.execute("DEALLOCATE ALL")  # as a pooler's DISCARD ALL would
            job_conn.statements.clear()
            stats = aggregates.refresh(job_conn)
            trips.append([" ".join(text.split())[:40] for text in job_conn.statements])
            assert stats.mode == "incremental" and stats.rows_read["deals"] > 0
            assert_reports_equal_live(conn, random.Random(41))
    finally:
        job_conn.close()
    # Prepared on the connection's first fold of deals, then executed only; prepared again once it was lost.
    prepared, executed = 'PREPARE "crmtasks_report_fold_deals" (ti', 'EXECUTE "crmtasks_report_fold_deals" (%s'
    assert [trip[1] for trip in trips] == [prepared, executed, prepared, executed], trips
    assert all(len(trip) == 3 and trip[2] == "COMMIT" for trip in trips), trips


def test_the_job_vacuums_the_logs_it_consumed_so_they_stop_growing(conn):
    from crmtasks.jobs import precompute_aggregates

    RandomCRM(conn, 31).create(deals=150, leads=40, accounts=10)
    assert precompute_aggregates.run()["mode"] == "full"
    sizes = []
    for _ in range(6):
        with conn.cursor() as cur:
            cur.execute("UPDATE deals SET amount = coalesce(amount, 0) + 1")  # two images per deal
            stats = precompute_aggregates.run()
            cur.execute("SELECT pg_relation_size('report_deal_changes')")
            sizes.append(cur.fetchone()[0])
        assert stats["mode"] == "incremental" and stats["logs_vacuumed"] == ["report_deal_changes"]
    # Each round's images go into the pages the previous run's VACUUM freed.
    assert sizes[-1] == sizes[0], sizes


def test_a_change_committed_during_a_run_is_left_for_the_next_run(conn, migrated_database_url):
    RandomCRM(conn, 5).create(deals=150, leads=10, accounts=5)
    aggregates.refresh(conn)
    deal_id, earlier_id = _ids(conn, "SELECT id FROM deals WHERE stage = 'Closed Won' AND close_date IS NOT NULL "
                                     "AND amount IS NOT NULL LIMIT 2")
    with conn.cursor() as cur:
        # Committed before the run: something in the log, so the run folds deals (and blocks on the log below).
        cur.execute("UPDATE deals SET amount = amount + 1 WHERE id = %s", (earlier_id,))
    # Hold the change log so the run blocks right after taking its snapshot; then commit a change after that
    # snapshot: the run must neither fold nor delete it.
    stats = _run_while_blocked(
        conn, migrated_database_url, "LOCK TABLE report_deal_changes IN EXCLUSIVE MODE",
        then=("UPDATE deals SET amount = amount + 1000 WHERE id = %s", (deal_id,)))
    assert stats.mode == "incremental" and stats.rows_read["deals"] == 2  # the earlier change
    assert aggregates.state(conn)["pending_changes"] == 2  # still waiting in the log
    live = live_reports.revenue(conn, grain="month")
    assert [tuple(r.values())[1:] for r in reports.revenue(connection=conn).rows] != live

    caught_up = aggregates.refresh(conn)
    assert caught_up.rows_read["deals"] == 2
    assert [tuple(r.values())[1:] for r in reports.revenue(connection=conn).rows] == live


def _run_while_blocked(conn, database_url, hold: str, then: tuple | None = None) -> aggregates.RefreshStats:
    """A run on a connection of its own while another transaction runs ``hold`` (which the run waits for), and
    once the run waits, ``then`` (statement, params); that transaction commits, and the run's stats come back."""
    writer = psycopg2.connect(database_url)
    job_conn = psycopg2.connect(database_url)
    job_conn.autocommit = True
    result = {}
    try:
        with writer.cursor() as cur:
            cur.execute(hold)
            job = threading.Thread(target=lambda: result.update(stats=aggregates.refresh(job_conn)))
            job.start()
            _wait_until_blocked(conn, job_conn.get_backend_pid())
            if then:
                cur.execute(*then)
        writer.commit()
        job.join(timeout=30)
    finally:
        writer.close()
        job_conn.close()
    return result["stats"]


def _wait_until_blocked(conn, pid, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with conn.cursor() as cur:
            cur.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
            row = cur.fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError("the run never blocked on a lock")


def test_a_failed_run_changes_nothing_and_the_next_run_catches_up(conn, migrated_database_url):
    RandomCRM(conn, 9).create(deals=120, leads=40, accounts=10)
    aggregates.refresh(conn)
    before = _aggregate_contents(conn)
    as_of_before = aggregates.state(conn)["as_of"]
    RandomCRM(conn, 10).edit()
    pending = aggregates.state(conn)["pending_changes"]
    assert pending > 0

    blocker = psycopg2.connect(migrated_database_url)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE report_deal_periods IN EXCLUSIVE MODE")
            # The fold waits for the lock and hits its statement timeout, like a run killed midway.
            with pytest.raises(psycopg2.errors.QueryCanceled):
                aggregates.refresh(conn, statement_timeout_s=1)
    finally:
        blocker.close()
    assert _aggregate_contents(conn) == before
    assert aggregates.state(conn)["as_of"] == as_of_before
    assert aggregates.state(conn)["pending_changes"] == pending  # the log was not consumed
    assert aggregates.refresh(conn).mode == "incremental"
    assert_reports_equal_live(conn, random.Random(9))


def test_a_run_killed_with_sigkill_commits_nothing_and_the_next_run_folds_the_same_changes(conn, migrated_database_url):
    RandomCRM(conn, 14).create(deals=120, leads=30, accounts=10)
    aggregates.refresh(conn)
    before = _aggregate_contents(conn)
    RandomCRM(conn, 15).edit()
    pending = aggregates.state(conn)["pending_changes"]
    logged = _log_rows(conn)
    blocker = psycopg2.connect(migrated_database_url)
    child = None
    try:
        with blocker.cursor() as cur:
            # The run waits here, mid-run: after consuming the owners' log or the change logs, before its COMMIT.
            cur.execute("LOCK TABLE report_deal_periods IN EXCLUSIVE MODE")
        child = subprocess.Popen([sys.executable, "-c", "import sys, psycopg2; from crmtasks.reports import refresh; "
                                  "c = psycopg2.connect(sys.argv[1], application_name='killed_run'); c.autocommit = True; "
                                  "refresh.refresh(c)",
                                  migrated_database_url])
        deadline = time.monotonic() + 30
        while not _killed_run(conn):
            assert time.monotonic() < deadline and child.poll() is None, "the child's run never reached the fold"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        blocker.close()  # the orphaned run goes on, then finds no client to commit for, and rolls back
        if child is not None and child.poll() is None:
            child.kill()
    deadline = time.monotonic() + 30
    while _killed_run(conn, state="any"):
        assert time.monotonic() < deadline, "the orphaned run never ended"
        time.sleep(0.05)
    assert _aggregate_contents(conn) == before and aggregates.state(conn)["pending_changes"] == pending
    stats = aggregates.refresh(conn)
    assert stats.mode == "incremental" and stats.rows_read == logged  # the same changes, folded once
    assert aggregates.state(conn)["pending_changes"] == 0
    assert_reports_equal_live(conn, random.Random(14))


def _killed_run(conn, state: str = "waiting") -> bool:
    """Whether the killed run's backend is there (waiting for a lock, or in any state)."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'killed_run' "
                    "AND datname = current_database() AND (%s = 'any' OR wait_event_type = 'Lock')", (state,))
        return cur.fetchone()[0] > 0


def _log_rows(conn) -> dict:
    """Change-log rows waiting per source."""
    with conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM report_deal_changes), (SELECT count(*) FROM report_lead_changes), "
                    "(SELECT count(*) FROM report_account_changes)")
        return dict(zip(("deals", "leads", "accounts"), cur.fetchone()))


def test_a_second_concurrent_run_is_skipped(conn, migrated_database_url):
    other = psycopg2.connect(migrated_database_url)
    other.autocommit = True
    try:
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (AdvisoryLock.AGGREGATES_REFRESH.key,))
        stats = aggregates.refresh(conn)
    finally:
        other.close()
    assert stats.mode == "skipped"
    assert aggregates.state(conn)["as_of"] is None


def test_a_run_whose_snapshot_went_stale_before_it_locked_the_state_runs_again(conn, migrated_database_url):
    RandomCRM(conn, 12).create(deals=60, leads=10, accounts=5)
    aggregates.refresh(conn)
    # As a run publishing (or a TRUNCATE asking for a rebuild) would: the state row changes after the snapshot the
    # next run's first query takes, and before that query locks the row.
    stats = _run_while_blocked(conn, migrated_database_url, "UPDATE report_aggregate_state SET rebuild_required = true")
    # Not a serialization error: the run started again with a fresh snapshot, and saw the rebuild asked for.
    assert stats.mode == "full" and stats.reason.startswith("rebuild required")
    assert_reports_equal_live(conn, random.Random(12))


def test_truncate_and_age_trigger_full_rebuilds(conn):
    crm = RandomCRM(conn, 3)
    crm.create(deals=80, leads=30, accounts=10)
    aggregates.refresh(conn)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE deals CASCADE")
    assert aggregates.state(conn)["rebuild_required"] is True
    rebuilt = aggregates.refresh(conn)
    assert rebuilt.mode == "full" and rebuilt.reason.startswith("rebuild required")
    assert reports.pipeline(connection=conn).rows == [] and reports.revenue(connection=conn).rows == []

    assert aggregates.refresh(conn, rebuild_after_hours=1).mode == "incremental"
    with conn.cursor() as cur:
        cur.execute("UPDATE report_aggregate_state SET last_rebuild_at = last_rebuild_at - interval '2 hours'")
    periodic = aggregates.refresh(conn, rebuild_after_hours=1)
    assert periodic.mode == "full" and periodic.reason.startswith("periodic rebuild")
    assert_reports_equal_live(conn, random.Random(3), minimum_rows=20)


def test_reports_refuse_bad_filters_in_one_line(conn):
    RandomCRM(conn, 4).create(deals=30, leads=10, accounts=5)
    with pytest.raises(reports.AggregatesNotReady, match="run `python -m crmtasks.run --task precompute_aggregates`"):
        reports.revenue(connection=conn)
    aggregates.refresh(conn)
    bad = [
        (reports.revenue, {"owner": 10**9}, "no user has id"),
        (reports.revenue, {"owner": "7"}, "is not a user id"),
        (reports.revenue, {"grain": "week"}, "grain 'week' is not one of"),
        (reports.win_rate, {"date_from": datetime.date(2024, 2, 1)}, "does not start a quarter"),
        (reports.revenue, {"date_to": datetime.date(2024, 2, 28)}, "does not end a month"),
        (reports.revenue, {"date_from": datetime.date(2024, 3, 1), "date_to": datetime.date(2024, 1, 31)}, "is after"),
        (reports.sales_cycle, {"stage": "Proposal"}, "is not a closed stage"),
        (reports.pipeline, {"stage": "Closed Won"}, "is closed"),
    ]
    for function, filters, message in bad:
        with pytest.raises(reports.ReportError, match=message) as caught:
            function(connection=conn, **filters)
        assert "\n" not in str(caught.value)
    # A leap-year month end is a valid bound.
    reports.revenue(connection=conn, date_from=datetime.date(2024, 2, 1), date_to=datetime.date(2024, 2, 29))


def test_the_registered_job_runs_under_the_runner_and_records_its_stats(conn, redis_client):
    from crmtasks.jobs import registry
    from crmtasks.runs import runner
    from crmtasks.settings import get_settings

    spec = registry.get("analytics.precompute_aggregates")
    assert (spec.name, spec.cron, spec.queue) == ("precompute_aggregates", "*/10 * * * *", "workflow_cpu")
    RandomCRM(conn, 8).create(deals=50, leads=20, accounts=5)
    outcome = runner.run_now(spec, get_settings())
    assert outcome.status == "succeeded", outcome.error
    assert outcome.stats["mode"] == "full" and outcome.stats["rows_read_total"] == 75
    with conn.cursor() as cur:
        cur.execute("SELECT status, stats->>'mode', stats->>'as_of' FROM task_runs WHERE id = %s", (outcome.run_id,))
        status, mode, as_of = cur.fetchone()
    assert (status, mode) == ("succeeded", "full")
    assert datetime.datetime.fromisoformat(as_of) == reports.accounts(connection=conn).as_of
