"""``crmtasks report``: tables, JSON, CSV and PNG plots of the aggregates; one-line errors with exit 2."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest
from click.testing import CliRunner

from crmtasks import reports
from crmtasks.cli import main
from crmtasks.reports import refresh as aggregates
from tests.integration.random_crm import RandomCRM

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def computed(crm_db):
    conn = crm_db.connection()
    RandomCRM(conn, 21).create(deals=200, leads=100, accounts=30)
    aggregates.refresh(conn, full=True)
    return conn


def _invoke(*args):
    return CliRunner().invoke(main, ["report", *args], catch_exceptions=False)


def test_csv_and_json_carry_the_api_rows_and_as_of(computed):
    expected = reports.revenue(connection=computed, by_owner=True, grain="quarter")
    result = _invoke("revenue", "--by-owner", "--grain", "quarter", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(expected.rows) > 0
    assert [Decimal(row["revenue"]) for row in rows] == [row["revenue"] for row in expected.rows]
    assert {row["as_of"] for row in rows} == {expected.as_of.isoformat()}

    result = _invoke("win_rate", "--from", "2023-Q2", "--to", "2024", "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    api = reports.win_rate(connection=computed, date_from=reports.periods.parse_bound("2023-Q2", end=False),
                           date_to=reports.periods.parse_bound("2024", end=True))
    assert document["as_of"] == api.as_of.isoformat()
    assert [(r["period"], r["won"], r["lost"], Decimal(r["win_rate"])) for r in document["rows"]] == \
           [(r["period"], r["won"], r["lost"], r["win_rate"]) for r in api.rows]
    assert document["rows"][0]["period"] == "2023-Q2"


def test_every_report_prints_a_table(computed):
    for name in reports.REPORTS:
        result = _invoke(name)
        assert result.exit_code == 0, (name, result.stderr)
        assert f"{name} (as of" in result.stdout


@pytest.mark.parametrize("name", ["pipeline", "revenue", "win_rate"])
def test_plots_are_png_files(computed, tmp_path, name):
    owner = reports.pipeline(connection=computed, by_owner=True).rows[0]["owner_id"]
    for args in ([], ["--owner", str(owner)]):
        path = tmp_path / f"{name}-{len(args)}.png"
        result = _invoke(name, *args, "--plot", str(path))
        assert result.exit_code == 0, result.stderr
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown report 'nope'; valid reports: pipeline, revenue, win_rate, sales_cycle, lead_conversion, accounts"),
    (["revenue", "--from", "2024-02-30"], "--from '2024-02-30' is not a date"),
    (["revenue", "--from", "2024-02-03"], "--from 2024-02-03 does not start a month"),
    (["win_rate", "--from", "2024-02"], "does not start a quarter"),
    (["revenue", "--to", "2024-02-28"], "--to 2024-02-28 does not end a month"),
    (["revenue", "--from", "2024-06", "--to", "2024-01"], "is after --to"),
    (["revenue", "--owner", "abc"], "--owner 'abc' is not a user id"),
    (["revenue", "--owner", "99999999"], "no user has id 99999999"),
    (["revenue", "--grain", "week"], "grain 'week' is not one of month, quarter, year"),
    (["pipeline", "--from", "2024"], "--from does not apply to pipeline"),
    (["accounts", "--grain", "year"], "--grain does not apply to accounts"),
    (["revenue", "--stage", "Closed Won"], "--stage does not apply to revenue"),
    (["pipeline", "--stage", "Closed Lost"], "stage 'Closed Lost' is closed"),
    (["sales_cycle", "--stage", "Proposal"], "is not a closed stage"),
    (["revenue", "--format", "xml"], "--format 'xml' is not one of table, json, csv"),
    (["accounts", "--plot", "a.png"], "report accounts has no plot"),
    (["revenue", "--plot", "chart.jpg"], "must name a .png file"),
    (["revenue", "--plot", "/no/such/dir/chart.png"], "does not exist"),
    (["revenue", "--by-owner", "--plot", "chart.png"], "drop --by-owner"),
])
def test_mistakes_are_one_line_and_exit_2(computed, args, message):
    result = _invoke(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crmtasks: ") and message in lines[0], result.stderr


def test_before_the_first_run_the_report_says_what_to_run(crm_db):
    with crm_db.connection().cursor() as cur:
        cur.execute("UPDATE report_aggregate_state SET as_of = NULL")
        cur.execute("TRUNCATE report_account_segments")
    result = _invoke("accounts")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("crmtasks: report aggregates have not been computed yet; "
                                     "run `python -m crmtasks.run --task precompute_aggregates`")


def test_the_installed_command_exits_2_with_one_line(migrated_database_url):
    process = subprocess.run([sys.executable, "-m", "crmtasks", "report", "revenue", "--to", "2024-13"],
                             env=dict(os.environ, DATABASE_URL=migrated_database_url), capture_output=True,
                             text=True, timeout=60, check=False)
    assert process.returncode == 2
    assert process.stderr.splitlines() == [
        "crmtasks: --to '2024-13' is not a date (use YYYY-MM-DD, YYYY-MM, YYYY-Qn or YYYY)"]
