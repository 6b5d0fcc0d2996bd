"""Bad input typed by a hostile new user: one line on stderr and exit 2 from the CLI, a ValueError from the API.

Each test drives the real ``crmtasks`` command (click's CliRunner with
exceptions not caught, so a traceback fails the test, or a subprocess when
the environment itself is the bad input) against this run's PostgreSQL and
Redis. Issue 16, items 6 to 13.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from click.testing import CliRunner

from crmtasks.cli import main
from crmtasks.cli.common import OneLineGroup
from crmtasks.redis_client import get_redis
from crmtasks.reports import refresh as aggregates
from crmtasks.runs.health import run_checks
from crmtasks.runs.overview import job_overviews
from crmtasks.search.query import faceted_search
from crmtasks.settings import get_settings
from tests.integration.random_crm import RandomCRM

ROOT = Path(__file__).resolve().parents[2]
UTC = datetime.timezone.utc


def _invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False, prog_name="crmtasks")


def _one_line(result, *, exit_code=2) -> str:
    """The single stderr line of a refused command (nothing on stdout)."""
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crmtasks: "), result.stderr
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def _crmtasks(*args, module="crmtasks", **env_overrides) -> subprocess.CompletedProcess:
    """``python -m module args`` with the environment changed (a None value unsets the variable)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.update(env_overrides)
    env = {name: value for name, value in env.items() if value is not None}
    return subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def _process_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crmtasks: "), done.stderr
    return lines[0]


@pytest.fixture()
def deals(crm_db):
    """Deals around the edges: closing in the last quarter Python dates reach, and aggregates computed."""
    conn = crm_db.connection()
    RandomCRM(conn, 16).create(users=3, accounts=10, deals=40, leads=30)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO deals (name, owner_id, stage, amount, close_date) VALUES "
                    "('far won', NULL, 'Closed Won', 100, '9999-12-15'), "
                    "('far open', NULL, 'Proposal', 250.50, '9999-11-30')")
    aggregates.refresh(conn, full=True)
    return conn


# ------------------------------------------------------------ 6: amounts PostgreSQL's numeric cannot hold

@pytest.mark.parametrize("bound", ["1e-999999999", "1e-20000"])
def test_an_amount_bound_numeric_cannot_hold_is_one_line_and_a_value_error(deals, bound):
    line = _one_line(_invoke("search", "deals", "--filter", f"amount>={bound}"))
    assert line == f"crmtasks: filter amount gte: amount '{bound}' has more than 30 decimal places"
    with pytest.raises(ValueError, match="has more than 30 decimal places") as caught:
        faceted_search("deals", {"amount": {"gte": bound}})
    assert not isinstance(caught.value, psycopg2.Error)


# ------------------------------------------------------------ 7: UTC offsets PostgreSQL refuses

def test_a_utc_offset_beyond_postgresql_s_range_searches_the_same_instant(crm_db):
    conn = crm_db.connection()
    with conn.cursor() as cur:
        for name, created in (("before", "2023-12-31T03:59:59Z"), ("at", "2023-12-31T04:00:00Z"),
                              ("after", "2024-01-02T00:00:00Z")):
            cur.execute("INSERT INTO leads (name, status, created_at) VALUES (%s, 'New', %s)", (name, created))
    result = _invoke("search", "leads", "--filter", "created_at>=2024-01-01T00:00:00+20:00", "--json")
    assert result.exit_code == 0, result.stderr
    assert sorted(record["name"] for record in json.loads(result.stdout)["records"]) == ["after", "at"]
    api = faceted_search("leads", {"created_at": {"gte": "2024-01-01T00:00:00+20:00", "lt": "2024-01-02T00:00:00-20:00"}})
    assert [record["name"] for record in api.records] == ["after", "at"]
    line = _one_line(_invoke("search", "leads", "--filter", "created_at<9999-12-31T23:00:00-05:00"))
    assert "'9999-12-31T23:00:00-05:00' is out of range" in line


# ------------------------------------------------------------ 8: the year 9999

@pytest.mark.parametrize("args, period", [
    (["revenue", "--from", "9999-12", "--to", "9999-12"], "9999-12"),
    (["revenue", "--to", "9999"], "9999-12"),
    (["revenue", "--to", "9999-Q4", "--grain", "quarter"], "9999-Q4"),
    (["revenue", "--to", "9999-12-31", "--grain", "year"], "9999"),
    (["win_rate", "--from", "9999-Q4", "--to", "9999-Q4"], "9999-Q4"),
])
def test_reports_reach_the_last_day_of_9999(deals, args, period):
    result = _invoke("report", *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert rows[-1]["period"] == period


def test_the_quarter_facet_reaches_9999_q4(deals):
    result = _invoke("search", "deals", "--filter", "close_quarter=9999-Q4", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert sorted(record["name"] for record in document["records"]) == ["far open", "far won"]
    live = faceted_search("deals", {"close_quarter": "9999-Q4", "stage": ["Proposal", "Closed Won"]})
    assert live.total == 2 and live.facets["close_quarter"] == {"9999-Q4": 2}


# ------------------------------------------------------------ 9: the plot file, checked before the work

@pytest.mark.parametrize("make_target, message", [
    (lambda tmp: tmp / "plots.png", "is a directory; name a .png file in it"),
    (lambda tmp: Path("/proc/x.png"), "cannot write in '/proc'"),
])
def test_a_plot_file_that_cannot_be_written_is_refused_before_the_report(deals, tmp_path, make_target, message):
    (tmp_path / "plots.png").mkdir()
    target = make_target(tmp_path)
    result = _invoke("report", "pipeline", "--plot", str(target))
    line = _one_line(result)
    assert message in line and result.stdout == ""  # refused before the table was printed


# ------------------------------------------------------------ 10: a schedule that never fires

@pytest.mark.parametrize("command", [["tasks"], ["check"], ["tasks", "--json"]])
def test_a_schedule_that_never_fires_is_refused_at_start(migrated_database_url, command):
    done = _crmtasks(*command, CRMTASKS_SCHEDULE_PRECOMPUTE_FACETS="0 0 31 2 *")
    assert _process_line(done) == ("crmtasks: CRMTASKS_SCHEDULE_PRECOMPUTE_FACETS: '0 0 31 2 *' never fires: "
                                   "no date matches it (e.g. the 31st of a month that has 30 days)")


def test_listings_survive_a_schedule_that_never_fires(crm_db):
    settings = get_settings()
    never = dataclasses.replace(settings, schedules=tuple(
        (name, "0 0 31 2 *" if name == "precompute_facets" else cron) for name, cron in settings.schedules))
    overviews = {overview.task: overview for overview in job_overviews(never)}
    assert overviews["precompute_facets"].next_runs == [] and overviews["precompute_facets"].interval_s is None
    assert overviews["warm_caches"].next_runs and overviews["warm_caches"].interval_s > 0
    findings = [finding for finding in run_checks(never) if finding.area == "jobs"]
    assert any(not f.ok and f.message == "precompute_facets: schedule '0 0 31 2 *' never fires" for f in findings)


# ------------------------------------------------------------ 11: Redis is not there

@pytest.mark.parametrize("args, module", [
    (["run", "--task", "precompute_facets"], "crmtasks"),
    (["run", "--task", "precompute_facets", "--enqueue"], "crmtasks"),
    (["--task", "warm_caches"], "crmtasks.run"),
    (["dashboard", "--port", "1"], "crmtasks"),
])
def test_a_closed_redis_port_is_one_line_naming_the_masked_url(migrated_database_url, args, module):
    port = _closed_port()
    done = _crmtasks(*args, module=module, REDIS_URL=f"redis://:S3cr3t@127.0.0.1:{port}/0")
    assert _process_line(done) == (f"crmtasks: cannot connect to REDIS_URL redis://:***@127.0.0.1:{port}/0: "
                                   f"Error 111 connecting to 127.0.0.1:{port}. Connection refused.")


def test_a_redis_failure_no_command_caught_is_one_line(migrated_database_url, monkeypatch):
    """The group's last guard: whatever command meets a Redis that went away ends in one line, not a traceback."""
    port = _closed_port()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0?password=S3cr3t")
    get_settings.cache_clear()
    try:
        group = OneLineGroup(name="crmtasks")

        @group.command(name="touch-redis")
        def touch_redis():
            get_redis(get_settings()).get("anything")

        result = CliRunner().invoke(group, ["touch-redis"], catch_exceptions=False)
        assert _one_line(result) == (f"crmtasks: cannot connect to REDIS_URL redis://127.0.0.1:{port}/0?password=***: "
                                     f"Error 111 connecting to 127.0.0.1:{port}. Connection refused.")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


# ------------------------------------------------------------ 12: a port that is not a number

@pytest.mark.parametrize("variable, value, masked", [
    ("DATABASE_URL", "postgresql://u:pw@127.0.0.1:notaport/db", "postgresql://u:***@127.0.0.1:notaport/db"),
    ("REDIS_URL", "redis://u:pw@127.0.0.1:notaport/0", "redis://u:***@127.0.0.1:notaport/0"),
])
def test_a_port_that_is_not_a_number_is_one_line(variable, value, masked):
    done = _crmtasks("tasks", **{variable: value})
    assert _process_line(done) == (f"crmtasks: {variable}: is not a valid URL "
                                   f"(Port could not be cast to integer value as 'notaport'): {masked}")


# ------------------------------------------------------------ 13: bytes that are not UTF-8, digits of other scripts

@pytest.mark.parametrize("args, message", [
    (["search", "leads", "--filter", "status=\udcff\udcfe"], "filter status: the value '\\xff\\xfe' is not valid UTF-8 text"),
    (["search", "leads", "--q", "acme\udcff"], "q 'acme\\xff' is not valid UTF-8 text"),
    (["report", "pipeline", "--stage", "\udcff"], "stage '\\xff' is not valid UTF-8 text"),
    (["pause", "precompute_facets", "--note", "\udcff"], "--note '\\xff' is not valid UTF-8 text"),
    (["audit", "restore", "2026-0٥"], "'2026-0٥' is not a month written YYYY-MM"),
    (["search", "leads", "--filter", "owner=１"], "filter owner: expected a user id (int), got '１'"),
    (["search", "deals", "--filter", "amount>=１２"], "filter amount gte: expected a number"),
    (["report", "revenue", "--owner", "٥"], "--owner '٥' is not a user id"),
    (["report", "revenue", "--from", "٢٠٢٤-01"], "is not a date"),
    (["search", "leads", "--page", "２"], "Invalid value for '--page': '２' is not a whole number (digits 0-9)"),
    (["sharing", "check", "١", "leads", "1"], "Invalid value for 'USER_ID': '١' is not a whole number"),
    (["sharing", "check", "1", "leads", "99999999999999999999"], "Invalid value for 'RECORD_ID...'"),
])
def test_text_that_is_not_utf8_or_digits_of_other_scripts_are_one_line(deals, args, message):
    line = _one_line(_invoke(*args))
    assert message in line, line


def test_the_search_api_refuses_bytes_that_are_not_utf8_as_a_value_error_not_a_unicode_error(crm_db):
    for filters in ({"status": "\udcff\udcfe"}, {"status": ["New", "\ud800"]}):
        with pytest.raises(ValueError, match="is not valid UTF-8 text") as caught:
            faceted_search("leads", filters)
        assert not isinstance(caught.value, UnicodeError)


@pytest.mark.parametrize("value, message", [
    ("１２", "CRMTASKS_AUDIT_RETENTION_MONTHS: '１２' is not a whole number of months (ASCII digits 0-9)"),
    ("", "CRMTASKS_AUDIT_RETENTION_MONTHS: is set but empty; unset it to use the default, or give a value"),
])
def test_a_retention_setting_in_other_digits_or_empty_is_refused(migrated_database_url, value, message):
    done = _crmtasks("audit", "status", CRMTASKS_AUDIT_RETENTION_MONTHS=value)
    assert _process_line(done) == f"crmtasks: {message}"


@pytest.mark.parametrize("variable, value, message", [
    ("CRMTASKS_AUDIT_MAINTENANCE_NICENESS", "20", "CRMTASKS_AUDIT_MAINTENANCE_NICENESS: 20 is out of range (0 to 19)"),
    ("CRMTASKS_ARCHIVE_DUTY_PERCENT", "50%", "CRMTASKS_ARCHIVE_DUTY_PERCENT: '50%' is not a whole number of percent (ASCII digits 0-9)"),
])
def test_a_bad_audit_maintenance_priority_or_pacing_is_refused(migrated_database_url, variable, value, message):
    done = _crmtasks("audit", "status", **{variable: value})
    assert _process_line(done) == f"crmtasks: {message}"


# ------------------------------------------------------------ the same class elsewhere: paths that cannot be written

@pytest.mark.parametrize("args, module, env, message", [
    (["tasks"], "crmtasks", {"CRMTASKS_LOG_FILE": "/proc/crmtasks.log"},
     "CRMTASKS_LOG_FILE: cannot write /proc/crmtasks.log: No such file or directory"),
    (["--task", "warm_caches"], "crmtasks.run", {"CRMTASKS_LOG_FILE": "/proc/crmtasks.log"},
     "CRMTASKS_LOG_FILE: cannot write /proc/crmtasks.log: No such file or directory"),
    (["tasks"], "crmtasks", {"CRMTASKS_HOME": "/proc/crmtasks", "DATABASE_URL": None},
     "CRMTASKS_HOME: cannot create /proc/crmtasks for the embedded servers: No such file or directory"),
    (["run", "--enqueue", "--task", "warm_caches"], "crmtasks", {"CRMTASKS_HOME": "/proc/crmtasks",
                                                               "CRMTASKS_METRICS_PORT": "9191"},
     "CRMTASKS_HOME: cannot create /proc/crmtasks/metrics/9191 for the metrics: No such file or directory"),
])
def test_a_log_file_or_home_that_cannot_be_written_is_one_line(migrated_database_url, args, module, env, message):
    assert _process_line(_crmtasks(*args, module=module, **env)) == f"crmtasks: {message}"


def test_usage_mistakes_are_one_line_too(crm_db):
    assert _one_line(_invoke("nope")) == "crmtasks: No such command 'nope'. (see 'crmtasks --help')"
    assert _one_line(_invoke("search")) == "crmtasks: Missing argument 'ENTITY'. (see 'crmtasks search --help')"
