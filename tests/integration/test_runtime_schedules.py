"""Schedules edited at runtime, against the real PostgreSQL: stored, validated, followed, overridden, and the form.

The CLI runs for real (click's CliRunner on ``crmtasks``); a scheduler's view
is a ScheduleBook and its actors' LiveSchedule driven by a controlled clock
as periodiq's loop drives them; the dashboard is the real Flask app behind
its login wall with Flask-WTF's CSRF check on.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re

import pendulum
import pytest
from click.testing import CliRunner

from crmtasks.broker.factory import build_runtime
from crmtasks.broker.heartbeats import heartbeat_key
from crmtasks.cli import main
from crmtasks.models import JobSchedule
from crmtasks.redis_client import get_redis
from crmtasks.runs.trail import Operator, Via, read_trail
from crmtasks.scheduler import runtime
from crmtasks.scheduler.cron import to_utc_minute
from crmtasks.scheduler.live import LiveSchedule, ScheduleBook
from crmtasks.settings import get_settings
from crmtasks.web.app import create_app
from crmtasks.web.session import SESSION_COOKIE

UTC = datetime.timezone.utc
JOB = "audit_maintenance"  # default 0 2 * * * (UTC)
HOST = {"Host": "127.0.0.1", "Origin": "http://127.0.0.1"}
OPERATOR = Operator(who="test", via=Via.CLI)


def _crmtasks(*args, **env):
    return CliRunner().invoke(main, list(args), catch_exceptions=False, prog_name="crmtasks", env=env or None)


@pytest.fixture()
def since():
    """When the test began: the trail rows it wrote are the ones since (audit_log keeps other tests' rows)."""
    return datetime.datetime.now(UTC)


def _stored():
    return {row.task: (row.cron, row.zone) for row in JobSchedule.select()}


# --- the CLI ------------------------------------------------------------------

def test_set_prints_five_fire_times_then_stores_and_reset_goes_back(crm_db, since):
    result = _crmtasks("schedule", "set", JOB, "30 2 * * *", "--tz", "America/New_York")
    assert result.exit_code == 0, result.output
    times = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
    assert len(times) == 5 and all(line.endswith("UTC)") and " 02:30 E" in line for line in times), times
    assert _stored() == {JOB: ("30 2 * * *", "America/New_York")}
    assert JobSchedule.get(JobSchedule.task == JOB).changed_by.endswith("(cli)")
    [entry] = read_trail(since=since, action="schedule_set", target=JOB)
    assert (entry.via, entry.details["before"], entry.details["after"]) == (
        "cli", None, {"cron": "30 2 * * *", "zone": "America/New_York"})

    shown = _crmtasks("schedule", "show", JOB, "--json")
    [entry] = json.loads(shown.output)
    assert (entry["cron"], entry["zone"], entry["source"], len(entry["next_runs"])) == (
        "30 2 * * *", "America/New_York", "stored", 5)

    assert "back to the default 0 2 * * * (UTC)" in _crmtasks("schedule", "reset", JOB).output
    assert _stored() == {}
    [entry] = read_trail(since=since, action="schedule_reset", target=JOB)
    assert (entry.details["before"], entry.details["after"]) == ({"cron": "30 2 * * *", "zone": "America/New_York"}, None)
    assert "no stored schedule" in _crmtasks("schedule", "reset", JOB).output
    assert len(read_trail(since=since, action="schedule_reset", target=JOB)) == 1  # nothing removed, nothing recorded


def test_dry_run_stores_nothing(crm_db):
    result = _crmtasks("schedule", "set", JOB, "*/15 * * * *", "--dry-run")
    assert result.exit_code == 0 and "nothing stored" in result.output
    assert _stored() == {}


@pytest.mark.parametrize(("args", "says"), [
    ((JOB, "61 2 * * *"), "'61 2 * * *' is not a valid cron expression"),
    ((JOB, "0 2 * *"), "is not a 5-field cron expression"),
    ((JOB, "0 0 31 2 *"), "never fires"),
    ((JOB, "0 2 * * *", "--tz", "Mars/Olympus_Mons"), "'Mars/Olympus_Mons' is not an IANA time zone"),
    ((JOB, "0 2 * * *", "--tz", "../../etc/passwd"), "is not an IANA time zone"),
    ((JOB, "0 2 * * *", "--tz", "Europe/Berlin\x00"), "contains a NUL character"),
    (("no_such_job", "0 2 * * *"), "unknown job 'no_such_job'; valid jobs: "),
])
def test_a_bad_schedule_is_one_line_and_stores_nothing(crm_db, since, args, says):
    JobSchedule.create(task=JOB, cron="5 5 * * *", zone="UTC", changed_at=datetime.datetime.now(UTC))
    result = CliRunner().invoke(main, ["schedule", "set", *args], prog_name="crmtasks")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr, result.stderr
    assert _stored() == {JOB: ("5 5 * * *", "UTC")}  # the schedule before is kept
    assert read_trail(since=since, action="schedule_set") == []


def test_an_environment_override_wins_and_the_cli_says_so(crm_db, monkeypatch):
    runtime.set_schedule(JOB, "30 2 * * *", "Europe/Berlin", operator=OPERATOR)
    monkeypatch.setenv("CRMTASKS_SCHEDULE_AUDIT_MAINTENANCE", "0 4 * * *")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        force = runtime.schedules_in_force(settings)[JOB]
        assert (force.cron, force.zone, force.source) == ("0 4 * * *", "UTC", runtime.Source.ENVIRONMENT)
        assert force.stored.cron == "30 2 * * *"
        result = _crmtasks("schedule", "set", JOB, "45 2 * * *")
        assert result.exit_code == 0
        assert "CRMTASKS_SCHEDULE_AUDIT_MAINTENANCE='0 4 * * *' is set in this environment" in result.output
        book = ScheduleBook(settings, max_age_s=0)
        assert LiveSchedule(JOB, book).validate(datetime.datetime(2026, 6, 1, 4, 0, tzinfo=UTC))
        assert not LiveSchedule(JOB, book).validate(datetime.datetime(2026, 6, 1, 0, 45, tzinfo=UTC))
    finally:
        monkeypatch.delenv("CRMTASKS_SCHEDULE_AUDIT_MAINTENANCE")
        get_settings.cache_clear()


# --- what a running scheduler follows ----------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_running_scheduler_follows_a_change_from_its_next_minute(crm_db):
    """periodiq's loop on a controlled clock: wake at next_valid_date, send when validate, the book re-read each tick."""
    clock = Clock()
    actor = build_runtime(get_settings()).actors[JOB]
    live = actor.options["periodic"]
    assert isinstance(live, LiveSchedule)
    book = live.book
    book.clock, book.max_age_s = clock, 30.0
    now, fires = pendulum.datetime(2026, 6, 1, 1, 58, 0), []
    changed_at = pendulum.datetime(2026, 6, 1, 2, 3, 20)
    while now < pendulum.datetime(2026, 6, 1, 2, 12):
        if now >= changed_at and not _stored():
            runtime.set_schedule(JOB, "*/5 * * * *", "UTC", operator=OPERATOR)  # between two ticks
        clock.now = now.timestamp()
        if live.validate(now):
            fires.append(to_utc_minute(now).strftime("%H:%M"))
        now = live.next_valid_date(now)
        assert now.second == 0  # periodiq wakes at every minute boundary, whatever the schedule
    # 02:00 by the default; from 02:04 (the first tick after the change) on, every 5 minutes.
    assert fires == ["02:00", "02:05", "02:10"]


def test_the_book_re_reads_only_after_max_age_and_keeps_the_last_read_when_the_database_fails(crm_db, monkeypatch):
    clock = Clock()
    book = ScheduleBook(get_settings(), max_age_s=60, clock=clock)
    assert book.cron(JOB).expression == "0 2 * * *"
    runtime.set_schedule(JOB, "*/5 * * * *", "Asia/Kolkata", operator=OPERATOR)
    clock.now = 59
    assert book.cron(JOB).expression == "0 2 * * *"
    clock.now = 60
    assert (book.cron(JOB).expression, book.cron(JOB).zone_name) == ("*/5 * * * *", "Asia/Kolkata")

    def fail():
        raise RuntimeError("database gone")

    monkeypatch.setattr(runtime, "stored_schedules", fail)
    clock.now = 200
    assert book.cron(JOB).expression == "*/5 * * * *"


# --- the dashboard's form -----------------------------------------------------

@pytest.fixture()
def dashboard(crm_db, tmp_path):
    settings = dataclasses.replace(get_settings(), dashboard_user="ops", dashboard_password="correct horse")
    runtime_ = build_runtime(settings)
    app = create_app(settings, runtime_.broker, runtime_.actors, bytes(range(32)), get_redis(settings))
    client = app.test_client()
    client.set_cookie(SESSION_COOKIE, app.session_interface.get_signing_serializer(app).dumps(
        {"user": "ops", "expires_at": int(datetime.datetime.now(UTC).timestamp()) + 3600}), domain="127.0.0.1")
    return client


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _page(client) -> str:
    response = client.get(f"/jobs/{JOB}", headers=HOST)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_the_form_previews_five_times_then_saves(dashboard, since):
    token = _token(_page(dashboard))
    preview = dashboard.post(f"/jobs/{JOB}/schedule/preview", headers=HOST,
                             data={"csrf_token": token, "cron": "30 2 * * *", "zone": "Australia/Sydney"})
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200
    listed = re.search(r'<ol class="times" id="schedule-preview">(.*?)</ol>', html, re.S).group(1)
    assert listed.count("<li>") == 5 and listed.count("02:30 AE") == 5
    assert 'id="schedule-save"' in html
    assert _stored() == {}  # a preview stores nothing

    saved = dashboard.post(f"/jobs/{JOB}/schedule", headers=HOST,
                           data={"csrf_token": token, "cron": "30 2 * * *", "zone": "Australia/Sydney"})
    assert saved.status_code == 303 and saved.headers["Location"].endswith(f"/jobs/{JOB}?schedule=saved")
    assert _stored() == {JOB: ("30 2 * * *", "Australia/Sydney")}
    assert JobSchedule.get(JobSchedule.task == JOB).changed_by == "ops (dashboard)"
    [entry] = read_trail(since=since, action="schedule_set", target=JOB)
    assert (entry.who, entry.via, entry.address, entry.details["after"]) == (
        "ops", "dashboard", "127.0.0.1", {"cron": "30 2 * * *", "zone": "Australia/Sydney"})
    page = _page(dashboard)
    assert '<code id="job-schedule">30 2 * * *</code> in <span id="job-zone">Australia/Sydney</span>' in page

    reset = dashboard.post(f"/jobs/{JOB}/schedule/reset", headers=HOST, data={"csrf_token": token})
    assert reset.status_code == 303 and _stored() == {}


def test_the_form_refuses_a_post_without_the_session_s_token(dashboard):
    _page(dashboard)
    for path in (f"/jobs/{JOB}/schedule", f"/jobs/{JOB}/schedule/reset"):
        refused = dashboard.post(path, headers=HOST, data={"cron": "* * * * *", "zone": "UTC"})
        assert refused.status_code == 403
        forged = dashboard.post(path, headers=HOST, data={"csrf_token": "forged", "cron": "* * * * *", "zone": "UTC"})
        assert forged.status_code == 403
    assert _stored() == {}


def test_the_form_says_what_is_wrong_and_stores_nothing(dashboard):
    token = _token(_page(dashboard))
    for data, says in (({"cron": "0 25 * * *", "zone": "UTC"}, "is not a valid cron expression"),
                       ({"cron": "0 2 * * *", "zone": "Europe/Atlantis"}, "is not an IANA time zone")):
        for path in (f"/jobs/{JOB}/schedule/preview", f"/jobs/{JOB}/schedule"):
            response = dashboard.post(path, headers=HOST, data=dict(data, csrf_token=token))
            assert response.status_code == 400
            assert says in re.search(r'id="schedule-error">(.*?)</p>', response.get_data(as_text=True)).group(1)
    assert _stored() == {}


def test_the_page_says_when_an_environment_override_wins(crm_db):
    runtime.set_schedule(JOB, "30 2 * * *", "Europe/Berlin", operator=OPERATOR)
    settings = dataclasses.replace(get_settings(), schedules=tuple(
        (name, "0 4 * * *" if name == JOB else cron) for name, cron in get_settings().schedules),
        schedule_overrides=(JOB,))
    runtime_ = build_runtime(settings)
    app = create_app(settings, runtime_.broker, runtime_.actors, bytes(range(32)), get_redis(settings))
    html = app.test_client().get(f"/jobs/{JOB}", headers=HOST).get_data(as_text=True)
    assert '<code id="job-schedule">0 4 * * *</code> in <span id="job-zone">UTC</span>' in html
    assert "CRMTASKS_SCHEDULE_AUDIT_MAINTENANCE is set in the dashboard's environment" in html
    assert "Stored, not followed here: <code>30 2 * * *</code> in Europe/Berlin" in html


def test_a_change_and_its_trail_row_commit_together(crm_db, since, monkeypatch):
    def trail_fails(*args, **kwargs):
        raise RuntimeError("audit_log unwritable")

    monkeypatch.setattr(runtime, "record_operator_action", trail_fails)
    with pytest.raises(RuntimeError):
        runtime.set_schedule(JOB, "*/5 * * * *", operator=OPERATOR)
    assert _stored() == {}  # no schedule change without its trail row
    monkeypatch.undo()
    runtime.set_schedule(JOB, "*/5 * * * *", operator=OPERATOR)
    monkeypatch.setattr(runtime, "record_operator_action", trail_fails)
    with pytest.raises(RuntimeError):
        runtime.reset_schedule(JOB, operator=OPERATOR)
    assert _stored() == {JOB: ("*/5 * * * *", "UTC")}


def test_the_page_names_a_running_scheduler_whose_environment_overrides_the_job(dashboard, redis_client):
    settings = get_settings()
    beat = heartbeat_key(settings, "scheduler", "sched-host", 4242)
    redis_client.set(beat, json.dumps({"host": "sched-host", "pid": 4242, "jobs": [JOB],
                                       "schedule_overrides": [JOB]}), ex=60)
    try:
        html = _page(dashboard)
        assert "Running scheduler(s) sched-host:4242" in html and "CRMTASKS_SCHEDULE_AUDIT_MAINTENANCE set" in html
        redis_client.set(beat, json.dumps({"host": "sched-host", "pid": 4242, "jobs": [JOB],
                                           "schedule_overrides": []}), ex=60)
        assert "sched-host:4242" not in _page(dashboard)
    finally:
        redis_client.delete(beat)
