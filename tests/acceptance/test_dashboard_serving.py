"""``crmtasks dashboard`` served by waitress in a subprocess, against the real PostgreSQL and Redis.

The login wall (form login, signed session cookie, logout), CSRF refusal,
our pages (jobs, runs), run now, dramatiq-dashboard behind the wall, and
the loopback-only mode without credentials.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import subprocess
import sys
import zlib

import pytest

from tests.acceptance.dashboard_for_tests import (
    PASSWORD,
    SESSION_COOKIE,
    USER,
    call,
    login,
    login_reply,
    served_dashboard,
)

pytestmark = pytest.mark.slow

UTC = datetime.timezone.utc


def queued_message_ids(redis_client, queue: str = "default") -> set[str]:
    """message_id of every message waiting in ``<prefix>:<queue>`` (the broker keeps them in the .msgs hash)."""
    key = f"{os.environ['CRMTASKS_REDIS_PREFIX']}:{queue}.msgs"
    return {json.loads(raw)["message_id"] for raw in redis_client.hvals(key)}


@pytest.fixture(scope="module")
def dashboard_home(tmp_path_factory):
    return tmp_path_factory.mktemp("dashboard-home")


@pytest.fixture(scope="module")
def dashboard(migrated_database_url, dashboard_home):
    with served_dashboard(dashboard_home) as base:
        yield base


@pytest.fixture()
def history(crm_db):
    """Two recorded runs: a success with stats and a failure with a traceback (markup in it, to check escaping)."""
    from crmtasks.models import TaskRun

    now = datetime.datetime.now(UTC)
    ok = TaskRun.create(task="tally_users", trigger="schedule", status="succeeded", started_at=now - datetime.timedelta(minutes=5),
                        finished_at=now - datetime.timedelta(minutes=5) + datetime.timedelta(seconds=2.5),
                        stats={"users": 42, "facets": ["stage", "owner"]})
    failed = TaskRun.create(task="fail_on_bad_data", trigger="manual", status="failed",
                            started_at=now - datetime.timedelta(minutes=1), finished_at=now,
                            error="Traceback (most recent call last):\n  File \"jobs.py\", line 9, in run\n"
                                  "ValueError: deal 12 has a <b>negative</b> amount")
    return ok, failed


# --- the login wall -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/runs?task=tally_users", "/dramatiq/", "/dramatiq/queues/default"])
def test_every_page_sends_a_visitor_without_session_to_login(dashboard, path):
    reply = call(dashboard, "GET", path)
    assert reply.status == 303
    location = reply.header("Location")
    assert location.startswith("/login?next=")
    assert call(dashboard, "GET", location).status == 200


def test_login_page_is_a_form(dashboard):
    reply = call(dashboard, "GET", "/login?next=/runs")
    assert reply.status == 200
    assert '<form class="login" method="post" action="/login">' in reply.body
    assert 'name="next" value="/runs"' in reply.body
    head = call(dashboard, "HEAD", "/login")
    assert head.status == 200 and head.body == "" and int(head.header("Content-Length")) > 0


def test_wrong_password_is_refused_without_a_session(dashboard):
    reply = login_reply(dashboard, password="not the password")
    assert reply.status == 403
    assert "Wrong user name or password." in reply.body
    assert SESSION_COOKIE not in reply.set_cookies()
    reply = login_reply(dashboard, user="root")
    assert reply.status == 403


def test_right_password_sets_a_private_session_cookie_and_goes_to_next(dashboard):
    reply = login_reply(dashboard, next_path="/runs?task=x")
    assert reply.status == 303
    assert reply.header("Location") == "/runs?task=x"
    header = reply.set_cookies()[SESSION_COOKIE]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert call(dashboard, "GET", "/runs", session=reply.cookie_value(SESSION_COOKIE)).status == 200


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(dashboard, target):
    reply = login_reply(dashboard, next_path=target)
    assert reply.header("Location") == "/"


def test_a_tampered_session_cookie_is_refused(dashboard):
    cookie = login(dashboard)
    payload, timestamp, signature = cookie.rsplit(".", 2)
    raw = base64.urlsafe_b64decode(payload.lstrip(".") + "=" * (-len(payload.lstrip(".")) % 4))
    session = json.loads(zlib.decompress(raw) if payload.startswith(".") else raw)  # "." marks a zlib payload
    assert session["user"] == USER and PASSWORD not in cookie
    longer = base64.urlsafe_b64encode(json.dumps({**session, "expires_at": session["expires_at"] + 86400})
                                      .encode()).decode().rstrip("=")
    other_signature = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for forged in (f"{longer}.{timestamp}.{signature}", f"{payload}.{timestamp}.{other_signature}",
                   f"{payload}.{timestamp}.", f"{payload}.{timestamp}", "garbage", "é" * 40):
        assert call(dashboard, "GET", "/", session=forged).status == 303, forged


def test_logout_needs_the_csrf_token_and_clears_the_cookie(dashboard):
    cookie = login(dashboard)
    assert call(dashboard, "POST", "/logout", session=cookie, form={}).status == 403
    token = call(dashboard, "GET", "/", session=cookie).csrf_token()
    reply = call(dashboard, "POST", "/logout", session=cookie, form={"csrf_token": token})
    assert reply.status == 303 and reply.header("Location") == "/login"
    assert "Max-Age=0" in reply.set_cookies()[SESSION_COOKIE]


def test_sessions_survive_a_restart_and_are_shared_by_processes_of_one_home(dashboard, dashboard_home,
                                                                           tmp_path_factory):
    cookie = login(dashboard)
    # Another process on the same CRMTASKS_HOME reads the same key file: the session is valid there too.
    assert oct((dashboard_home / "dashboard.key").stat().st_mode & 0o777) == "0o600"
    with served_dashboard(dashboard_home) as second:
        assert call(second, "GET", "/", session=cookie).status == 200
    with served_dashboard(tmp_path_factory.mktemp("other-home")) as stranger:
        assert call(stranger, "GET", "/", session=cookie).status == 303


# --- our pages ------------------------------------------------------------------------------------------------------

def test_jobs_page_shows_schedule_queue_last_and_next_run_status_and_state(dashboard, history):
    from crmtasks.scheduler import pauses

    pauses.pause("fail_on_bad_data", "data fix in progress")
    reply = call(dashboard, "GET", "/", session=login(dashboard))
    assert reply.status == 200
    tally = re.search(r'<tr id="job-tally_users">(.*?)</tr>', reply.body, re.DOTALL).group(1)
    assert "<code>*/5 * * * *</code>" in tally and "<td>default</td>" in tally
    assert history[0].started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") in tally
    assert "status-succeeded" in tally and "2.50 s" in tally
    assert "state-active" in tally and 'id="run-tally_users"' in tally
    next_slot = re.search(r'<td class="nowrap">\s*(\d{4}-\d\d-\d\d \d\d:(\d\d):00)', tally)
    assert int(next_slot.group(2)) % 5 == 0
    failing = re.search(r'<tr id="job-fail_on_bad_data">(.*?)</tr>', reply.body, re.DOTALL).group(1)
    assert "status-failed" in failing
    assert "ValueError: deal 12 has a &lt;b&gt;negative&lt;/b&gt; amount" in failing
    assert "state-paused" in failing and "data fix in progress" in failing
    assert re.search(r'id="run-fail_on_bad_data"\s+disabled', failing)
    assert 'href="/dramatiq/"' in reply.body
    assert "Login is off" not in reply.body


def test_runs_page_shows_stats_and_expandable_errors_and_filters_by_task(dashboard, history):
    ok, failed = history
    cookie = login(dashboard)
    reply = call(dashboard, "GET", "/runs", session=cookie)
    assert reply.status == 200
    ok_row = re.search(rf'<tr id="run-{ok.id}">(.*?)</tr>', reply.body, re.DOTALL).group(1)
    # Stats as labelled values, not JSON.
    assert re.search(r"<dt>facets</dt>\s*<dd>stage, owner</dd>\s*<dt>users</dt>\s*<dd>42</dd>", ok_row), ok_row
    assert "&#34;" not in ok_row
    assert "schedule" in ok_row and "2.50 s" in ok_row
    failed_row = re.search(rf'<tr id="run-{failed.id}">(.*?)</tr>', reply.body, re.DOTALL).group(1)
    assert '<summary class="mono">ValueError: deal 12 has a &lt;b&gt;negative&lt;/b&gt; amount</summary>' in failed_row
    assert "<pre>Traceback (most recent call last):\n  File &#34;jobs.py&#34;, line 9, in run" in failed_row
    assert reply.body.index(f'id="run-{failed.id}"') < reply.body.index(f'id="run-{ok.id}"')  # newest first
    only_tally = call(dashboard, "GET", "/runs?task=tally_users", session=cookie).body
    assert f'id="run-{ok.id}"' in only_tally and f'id="run-{failed.id}"' not in only_tally
    assert "No runs recorded for nothing_like_it yet." in call(dashboard, "GET", "/runs?task=nothing_like_it",
                                                              session=cookie).body


def test_a_job_page_shows_its_schedule_next_fire_times_duration_chart_failures_and_stats(dashboard, crm_db):
    from crmtasks.models import TaskRun

    now = datetime.datetime.now(UTC)
    runs = []
    for minutes_ago, seconds, status in ((50, 1.0, "succeeded"), (40, 2.5, "failed"), (30, 4.0, "succeeded"),
                                        (20, 0.5, "skipped"), (10, None, "running")):
        started = now - datetime.timedelta(minutes=minutes_ago)
        runs.append(TaskRun.create(
            task="tally_users", trigger="schedule", status=status, started_at=started,
            finished_at=None if seconds is None else started + datetime.timedelta(seconds=seconds),
            stats={"users": 1234567, "rows_written": 12, "facets": ["stage", "owner"]} if status == "succeeded" else {},
            error="Traceback (most recent call last):\nValueError: deal 7 has a <script>bad</script> amount"
            if status == "failed" else None))
    TaskRun.create(task="fail_on_bad_data", trigger="manual", status="failed", started_at=now, finished_at=now,
                   error="ValueError: not this job's")
    cookie = login(dashboard)
    assert 'href="/jobs/tally_users"' in call(dashboard, "GET", "/", session=cookie).body
    reply = call(dashboard, "GET", "/jobs/tally_users", session=cookie)
    assert reply.status == 200, reply.body
    assert '<code id="job-schedule">*/5 * * * *</code>' in reply.body and '<dd id="job-queue">default</dd>' in reply.body
    next_runs = re.findall(r"<li>(\d{4}-\d\d-\d\d \d\d:(\d\d) UTC)</li>",  # in the job's zone, here UTC
                           re.search(r'<ol class="times" id="next-runs">(.*?)</ol>', reply.body, re.DOTALL).group(1))
    assert len(next_runs) == 10 and all(int(minute) % 5 == 0 for _, minute in next_runs)
    assert [moment for moment, _ in next_runs] == sorted(moment for moment, _ in next_runs)
    # The chart: one bar per run, oldest first, failed in its colour, each with its run in a tooltip.
    chart = re.search(r'<svg id="duration-chart".*?</svg>', reply.body, re.DOTALL).group(0)
    bars = re.findall(r'<rect class="bar bar-(\w+)"[^>]*height="([\d.]+)"[^>]*><title>run (\d+) ', chart)
    assert [(status, int(run_id)) for status, _, run_id in bars] == [(run.status, run.id) for run in runs]
    heights = {int(run_id): float(height) for _, height, run_id in bars}
    assert heights[runs[2].id] > heights[runs[1].id] > heights[runs[0].id] > 0 and heights[runs[4].id] == 0
    # Failures of this job only, escaped; the last success's stats as labelled values.
    failures = re.search(r'<table id="failures">(.*?)</table>', reply.body, re.DOTALL).group(1)
    assert f'id="failure-{runs[1].id}"' in failures and "not this job" not in failures
    assert "deal 7 has a &lt;script&gt;bad&lt;/script&gt; amount" in failures and "<script>" not in reply.body
    stats = re.search(r'<div id="last-stats">(.*?)</div>', reply.body, re.DOTALL).group(1)
    assert re.search(r"<dt>rows written</dt>\s*<dd>12</dd>\s*<dt>users</dt>\s*<dd>1,234,567</dd>", stats), stats


def test_a_job_page_of_no_job_says_so(dashboard, crm_db):
    cookie = login(dashboard)
    assert call(dashboard, "GET", "/jobs/nothing_like_it", session=cookie).status == 404
    reply = call(dashboard, "GET", "/jobs/bad%00name", session=cookie)
    assert reply.status == 400 and "is not a job name" in reply.body
    empty = call(dashboard, "GET", "/jobs/fail_on_bad_data", session=cookie)
    assert empty.status == 200 and 'id="duration-chart-empty"' in empty.body and 'id="no-runs"' in empty.body


def test_queues_pages_of_dramatiq_dashboard_are_served_with_our_navigation(dashboard):
    cookie = login(dashboard)
    reply = call(dashboard, "GET", "/dramatiq/", session=cookie)
    assert reply.status == 200
    assert "Dramatiq Dashboard" in reply.body and 'class="crm-topbar"' in reply.body
    assert 'href="/dramatiq/queues/default"' in reply.body
    assert call(dashboard, "GET", "/dramatiq/queues/default/failed", session=cookie).status == 200


def test_unknown_paths_are_404_behind_the_wall(dashboard):
    assert call(dashboard, "GET", "/no/such/page").status == 303
    assert call(dashboard, "GET", "/no/such/page", session=login(dashboard)).status == 404


def test_a_page_that_fails_says_so_and_the_dashboard_keeps_serving(fresh_database, tmp_path_factory):
    # A database without the schema: the jobs page cannot be built.
    with served_dashboard(tmp_path_factory.mktemp("broken-home"), environ={"DATABASE_URL": fresh_database}) as base:
        cookie = login(base)
        reply = call(base, "GET", "/", session=cookie)
        assert reply.status == 500
        assert "Something went wrong" in reply.body and "schema migrated" in reply.body
        assert call(base, "GET", "/dramatiq/", session=cookie).status == 200


# --- run now and CSRF -----------------------------------------------------------------------------------------------

def test_run_now_enqueues_the_job_and_shows_its_message_id(dashboard, crm_db, redis_client):
    cookie = login(dashboard)
    token = call(dashboard, "GET", "/", session=cookie).csrf_token()
    reply = call(dashboard, "POST", "/jobs/tally_users/run", session=cookie, form={"csrf_token": token})
    assert reply.status == 303
    location = reply.header("Location")
    message_id = re.search(r"message=([0-9a-f-]{36})", location).group(1)
    assert message_id in queued_message_ids(redis_client)
    page = call(dashboard, "GET", location, session=cookie).body
    assert f'<code id="sent-message-id">{message_id}</code>' in page


@pytest.mark.parametrize("case", ["no token", "wrong token", "another session's token", "no session"])
def test_run_now_without_a_valid_csrf_token_is_refused(dashboard, crm_db, redis_client, case):
    cookie, other = login(dashboard), login(dashboard)
    other_token = call(dashboard, "GET", "/", session=other).csrf_token()
    form = {"no token": {}, "wrong token": {"csrf_token": "x" * 43},
            "another session's token": {"csrf_token": other_token},
            "no session": {"csrf_token": other_token}}[case]
    before = queued_message_ids(redis_client)
    reply = call(dashboard, "POST", "/jobs/tally_users/run", session=None if case == "no session" else cookie,
                 form=form)
    assert reply.status == 403
    assert queued_message_ids(redis_client) == before


def test_run_now_of_an_unknown_job_is_404_and_of_a_paused_job_409(dashboard, crm_db, redis_client):
    from crmtasks.scheduler import pauses

    cookie = login(dashboard)
    token = call(dashboard, "GET", "/", session=cookie).csrf_token()
    before = queued_message_ids(redis_client)
    assert call(dashboard, "POST", "/jobs/drop_all_tables/run", session=cookie, form={"csrf_token": token}).status == 404
    pauses.pause("tally_users", "testing")
    assert call(dashboard, "POST", "/jobs/tally_users/run", session=cookie, form={"csrf_token": token}).status == 409
    assert call(dashboard, "GET", "/jobs/tally_users/run", session=cookie).status == 405
    assert queued_message_ids(redis_client) == before


# --- without credentials ----------------------------------------------------------------------------------------------

def test_without_credentials_loopback_serves_without_login_says_so_and_still_checks_csrf(
        crm_db, tmp_path_factory, redis_client):
    with served_dashboard(tmp_path_factory.mktemp("open-home"), credentials=False) as base:
        reply = call(base, "GET", "/")
        assert reply.status == 200
        assert "Login is off." in reply.body
        assert "Login is off." in call(base, "GET", "/dramatiq/").body
        assert call(base, "GET", "/login").status == 303
        cookie = reply.cookie_value(SESSION_COOKIE)
        assert cookie
        before = queued_message_ids(redis_client)
        assert call(base, "POST", "/jobs/tally_users/run", form={"csrf_token": reply.csrf_token()}).status == 403
        assert queued_message_ids(redis_client) == before
        sent = call(base, "POST", "/jobs/tally_users/run", session=cookie, form={"csrf_token": reply.csrf_token()})
        assert sent.status == 303
        assert re.search(r"message=([0-9a-f-]{36})", sent.header("Location")).group(1) in queued_message_ids(redis_client)


def test_refuses_a_public_address_without_credentials():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMTASKS_DASHBOARD_")}
    result = subprocess.run([sys.executable, "-m", "crmtasks", "dashboard", "--host", "0.0.0.0"], check=False, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("crmtasks: refusing to serve the dashboard on 0.0.0.0 without a login")


def test_sigterm_stops_the_dashboard_cleanly(migrated_database_url):
    import signal
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "crmtasks", "dashboard", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0, process.stdout.read()
