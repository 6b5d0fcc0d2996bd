"""``scripts/bench --scale small`` end to end, as a user runs it: a real process against the real servers.

Checks the outputs' shape, never a timing: the figures depend on the
machine. The run seeds its own databases next to this test run's one (on
the server of DATABASE_URL) and must leave none behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "scripts" / "bench"
sys.path.insert(0, str(ROOT / "scripts"))

from benchsuite.report import REQUIRED_KEYS
from benchsuite.rows import SEED_CLAIMS

pytestmark = pytest.mark.slow

ROW_KEYS = {"suite", "metric", "unit", "baseline", "ours", "ratio", "target", "met", "detail", "claim", "claim_text"}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results"
    # This interpreter (the test environment's), not whatever `python3` is first on PATH.
    result = subprocess.run([sys.executable, str(BENCH), "--scale", "small", "--out", str(out)], check=False, cwd=ROOT,
                            env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return out, result


def test_bench_is_an_executable_python_script():
    assert os.access(BENCH, os.X_OK)
    assert BENCH.read_text().startswith("#!/usr/bin/env python3\n")


def test_writes_the_three_files(bench_run):
    out, _ = bench_run
    assert sorted(path.name for path in out.iterdir()) == ["ratios.png", "results.json", "results.md"]
    assert (out / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_json_has_one_verdict_per_seed_claim(bench_run):
    out, _ = bench_run
    results = json.loads((out / "results.json").read_text())
    assert set(REQUIRED_KEYS) <= set(results)
    assert results["scale"] == "small"
    assert results["command"].startswith("scripts/bench --scale small")
    assert [claim["claim"] for claim in results["claims"]] == list(SEED_CLAIMS)
    for claim in results["claims"]:
        assert ROW_KEYS <= set(claim)
        assert claim["claim_text"] == SEED_CLAIMS[claim["claim"]]
    # Every claim this build can measure was measured (sharing is merged separately: a row says so).
    measured = {claim["claim"] for claim in results["claims"] if claim["ours"] is not None}
    assert {"search", "reports", "audit"} <= measured
    assert all(ROW_KEYS <= set(row) for row in results["rows"])
    assert {row["suite"] for row in results["rows"]} >= {"search", "reports", "audit"}
    assert results["machine"]["cores"] >= 1 and results["machine"]["postgresql"]["server_version"]


def test_jobs_and_growth_are_reported(bench_run):
    from crmtasks.jobs import registry

    out, _ = bench_run
    results = json.loads((out / "results.json").read_text())
    assert [job["task"] for job in results["jobs"]] == registry.names()
    assert all(job["status"] == "succeeded" and job["rss_peak_mb"] > 0 for job in results["jobs"])
    assert len(results["growth"]) == 3
    assert [size["leads"] for size in results["growth"]] == sorted(size["leads"] for size in results["growth"])
    assert all(size["archive_rows"] > 0 and size["facets_rows"] > 0 for size in results["growth"])


def test_markdown_table_is_printed_and_written(bench_run):
    out, result = bench_run
    markdown = (out / "results.md").read_text()
    for text in SEED_CLAIMS.values():
        assert text in markdown
    assert "| Claim in the seed | Measured as | Baseline | Ours | Ratio | Target | Met |" in markdown
    assert markdown.strip() in result.stdout


def test_leaves_no_database_behind(bench_run, server_database_url):
    out, _ = bench_run
    run_id = json.loads((out / "results.json").read_text())["run_id"]
    with psycopg2.connect(server_database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"crmtasks\\_bench\\_{run_id}%",))
        left = cur.fetchall()
    conn.close()
    assert left == []


def test_sigterm_stops_the_run_and_drops_its_database(tmp_path, server_database_url):
    process = subprocess.Popen([sys.executable, str(BENCH), "--scale", "small", "--out", str(tmp_path / "out")],
                               cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        first_line = process.stderr.readline()  # logged once its database exists
        match = re.search(r"database (crmtasks_bench_[0-9a-f]+) ", first_line)
        assert match, first_line
        time.sleep(1.0)  # into the seeding
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    with psycopg2.connect(server_database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (match.group(1) + "%",))
        left = cur.fetchall()
    conn.close()
    assert left == []
    assert not (tmp_path / "out").exists()
