"""The operator trail from the dashboard: the real Flask app, real PostgreSQL and Redis, a real Dramatiq worker.

Each action taken through the app (Flask's test client, from a chosen
client address) must leave exactly one trail row naming who, what and
where; a manual run's task_runs row names who started it, as recorded by
the worker that ran it; the trail page shows, filters and pages them.
"""

from __future__ import annotations

import os
import re
import time
import uuid

import markupsafe
import pytest
from dramatiq import Message

from crmtasks.jobs import registry
from crmtasks.models import TaskRun
from crmtasks.redis_client import get_redis
from crmtasks.runs.trail import TRAIL_ENTITY, Operator, OperatorAction, Via, read_trail, record_operator_action
from crmtasks.scheduler import pauses
from crmtasks.settings import load_settings
from crmtasks.web.app import create_app
from tests.acceptance.jobs_for_tests import TEST_SPECS
from tests.integration.in_process_worker import in_process_worker

USER, PASSWORD = "ops", "Tr41l-password-never-stored"
KEY = bytes(range(32))
TALLY = TEST_SPECS[0]


@pytest.fixture()
def trail_db(crm_db, monkeypatch):
    monkeypatch.setattr(registry, "JOBS", TEST_SPECS)
    crm_db.execute_sql("DELETE FROM audit_log WHERE entity = %s", (TRAIL_ENTITY,))
    redis = get_redis()
    for name in redis.scan_iter(match=f"{os.environ['CRMTASKS_REDIS_PREFIX']}:dashboard:*"):
        redis.delete(name)
    return crm_db


@pytest.fixture()
def worker(trail_db):
    with in_process_worker({spec.name: spec for spec in TEST_SPECS}) as running:
        yield running


def _app(worker, *, login: bool):
    environ = dict(os.environ)
    if login:
        environ.update(CRMTASKS_DASHBOARD_USER=USER, CRMTASKS_DASHBOARD_PASSWORD=PASSWORD)
    else:
        environ = {name: value for name, value in environ.items() if not name.startswith("CRMTASKS_DASHBOARD_")}
    settings = load_settings(environ)
    return create_app(settings, worker.broker, worker.actors, KEY, get_redis())


def _client(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _token(client, path: str = "/") -> str:
    page = client.get(path)
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page.get_data(as_text=True)).group(1)


def _trail_rows(database) -> list[tuple]:
    return database.execute_sql("SELECT action, changes, host(ip_address) FROM audit_log WHERE entity = %s "
                                "ORDER BY id", (TRAIL_ENTITY,)).fetchall()


def _login(client, user=USER, password=PASSWORD):
    return client.post("/login", data={"user": user, "password": password, "next": "/",
                                       "csrf_token": _token(client, "/login")})


def test_run_now_with_login_off_is_one_trail_row_by_loopback_and_the_run_names_its_starter(worker, trail_db):
    client = _client(_app(worker, login=False), "127.0.0.1")
    reply = client.post(f"/jobs/{TALLY.name}/run", data={"csrf_token": _token(client)})
    assert reply.status_code == 303, reply.get_data(as_text=True)
    message_id = re.search(r"message=([0-9a-f-]{36})", reply.headers["Location"]).group(1)
    worker.drain()
    [(action, changes, address)] = _trail_rows(trail_db)
    assert (action, address) == ("run_now", "127.0.0.1")
    assert changes == {"who": "loopback", "via": "dashboard", "target": TALLY.name,
                       "details": {"message_id": message_id, "queue": TALLY.queue}}
    [run] = TaskRun.select().where(TaskRun.task == TALLY.name)
    assert (run.trigger, run.status, run.message_id, run.started_by) == (
        "manual", "succeeded", message_id, "loopback (dashboard)")


def test_logins_failed_and_not_are_recorded_without_the_password(worker, trail_db):
    client = _client(_app(worker, login=True), "192.0.2.10")
    assert _login(client, password="wrong " + PASSWORD).status_code == 403
    assert _login(client, user="hunter2", password=PASSWORD).status_code == 403  # a password in the user box
    assert _login(client).status_code == 303
    assert client.post("/logout", data={"csrf_token": _token(client)}).status_code == 303
    rows = _trail_rows(trail_db)
    assert [(action, changes["who"], address) for action, changes, address in rows] == [
        ("login_failed", USER, "192.0.2.10"), ("login_failed", "(unknown user)", "192.0.2.10"),
        ("login", USER, "192.0.2.10"), ("logout", USER, "192.0.2.10")]
    assert rows[0][1]["details"] == {"reason": "wrong user name or password"}
    everything = str(trail_db.execute_sql("SELECT * FROM audit_log WHERE entity = %s", (TRAIL_ENTITY,)).fetchall())
    assert PASSWORD not in everything and "hunter2" not in everything


def test_a_throttled_login_is_recorded_as_failed(worker, trail_db):
    app = _app(worker, login=True)
    app.wall.throttle = type(app.wall.throttle)(get_redis(), app.wall.settings, per_user=1)
    client = _client(app, "192.0.2.11")
    assert _login(client, password="nope").status_code == 403
    assert _login(client).status_code == 429
    assert [changes["details"]["reason"] for _, changes, _ in _trail_rows(trail_db)] == [
        "wrong user name or password", "too many failed logins"]


def test_pause_resume_and_run_now_by_a_logged_in_user(worker, trail_db):
    client = _client(_app(worker, login=True), "192.0.2.20")
    _login(client)
    token = _token(client, f"/jobs/{TALLY.name}")
    assert client.post(f"/jobs/{TALLY.name}/pause", data={"csrf_token": token, "note": "db upgrade"}).status_code == 303
    assert pauses.is_paused(TALLY.name)
    assert client.post(f"/jobs/{TALLY.name}/resume", data={"csrf_token": token}).status_code == 303
    assert not pauses.is_paused(TALLY.name)
    assert client.post(f"/jobs/{TALLY.name}/run", data={"csrf_token": token}).status_code == 303
    worker.drain()
    rows = [(action, changes["who"], changes["target"], address) for action, changes, address in _trail_rows(trail_db)]
    assert rows == [("login", USER, None, "192.0.2.20"), ("pause", USER, TALLY.name, "192.0.2.20"),
                    ("resume", USER, TALLY.name, "192.0.2.20"), ("run_now", USER, TALLY.name, "192.0.2.20")]
    assert _trail_rows(trail_db)[1][1]["details"] == {"note": "db upgrade"}
    [run] = TaskRun.select().where(TaskRun.task == TALLY.name)
    assert run.started_by == f"{USER} (dashboard)"


def test_a_refused_action_leaves_no_trail_row(worker, trail_db):
    client = _client(_app(worker, login=True), "192.0.2.21")
    _login(client)
    assert client.post(f"/jobs/{TALLY.name}/pause", data={}).status_code == 403  # no CSRF token
    assert client.post("/jobs/nope/pause", data={"csrf_token": _token(client)}).status_code == 404
    assert [action for action, _, _ in _trail_rows(trail_db)] == ["login"]


def _dead_letter(redis) -> str:
    redis_id = str(uuid.uuid4())
    message = Message(queue_name="default", actor_name=TALLY.actor_name, args=(), kwargs={},
                      options={"redis_message_id": redis_id})
    queue = f"{os.environ['CRMTASKS_REDIS_PREFIX']}:default.XQ"
    redis.hset(queue + ".msgs", redis_id, message.encode())
    redis.zadd(queue, {redis_id: int(time.time() * 1000)})
    return redis_id, message.message_id


def test_dead_letter_requeue_and_delete_are_recorded_with_the_message(worker, trail_db):
    redis = get_redis()
    client = _client(_app(worker, login=True), "192.0.2.30")
    _login(client)
    deleted, deleted_message = _dead_letter(redis)
    requeued, requeued_message = _dead_letter(redis)
    page = client.get("/dramatiq/queues/default/failed").get_data(as_text=True)
    tokens = {"csrf_token": _token(client),
              "__dd_csrf": re.search(r'name="__dd_csrf" value="([0-9a-f]+)"', page).group(1)}
    for action, redis_id in (("delete-message", deleted), ("requeue-message", requeued)):
        reply = client.post(f"/dramatiq/{action}", data={**tokens, "queue": "default.XQ", "id": redis_id})
        assert reply.status_code == 302, reply.get_data(as_text=True)
    # Gone already: dramatiq-dashboard answers 410 and nothing is recorded.
    assert client.post("/dramatiq/requeue-message", data={**tokens, "queue": "default.XQ",
                                                          "id": requeued}).status_code == 410
    worker.drain()
    rows = [(action, changes["who"], changes["target"], changes["details"], address)
            for action, changes, address in _trail_rows(trail_db)][1:]
    assert rows == [
        ("dead_letter_delete", USER, f"default.XQ/{deleted}", {"actor": TALLY.actor_name,
                                                                "message_id": deleted_message}, "192.0.2.30"),
        ("dead_letter_requeue", USER, f"default.XQ/{requeued}", {"actor": TALLY.actor_name,
                                                                  "message_id": requeued_message}, "192.0.2.30")]


def test_the_trail_page_shows_filters_and_pages(worker, trail_db):
    client = _client(_app(worker, login=True), "192.0.2.40")
    _login(client)
    for number in range(55):
        record_operator_action(OperatorAction.PAUSE if number % 2 else OperatorAction.RESUME,
                               Operator(f"alice{number}@web-1", Via.CLI, "198.51.100.1"), target=TALLY.name)
    first = client.get("/trail").get_data(as_text=True)
    assert first.count('class="trail-entry"') == 50 and 'id="trail-older"' in first
    assert "alice54@web-1" in first and "198.51.100.1" in first
    second = client.get("/trail?page=2").get_data(as_text=True)
    assert second.count('class="trail-entry"') == 6 and 'id="trail-older"' not in second  # 55 + the login
    assert f"<td class=\"trail-who\">{USER}</td>" in second
    paused = client.get("/trail?action=pause&who=alice1").get_data(as_text=True)
    whos = re.findall(r'<td class="trail-who">([^<]+)</td>', paused)
    assert whos and all(who.startswith("alice1") for who in whos)
    assert all(entry.action == "pause" for entry in read_trail(action="pause", who="alice1"))
    assert len(whos) == len(read_trail(action="pause", who="alice1"))
    assert client.get("/trail?who=%00").status_code == 400
    assert client.get("/trail?since=yesterday").status_code == 400
    assert client.get("/trail?since=1d").status_code == 200
    assert 'class="trail-entry"' not in client.get("/trail?since=2999-01-01").get_data(as_text=True)


@pytest.mark.parametrize("password", ["Tr41l-plain-secret", 'p<w&"d>1'])
def test_a_dead_letters_traceback_is_shown_without_passwords(worker, trail_db, password, monkeypatch):
    monkeypatch.setenv("CRMTASKS_DASHBOARD_PASSWORD", password)
    environ = dict(os.environ, CRMTASKS_DASHBOARD_USER=USER, CRMTASKS_DASHBOARD_PASSWORD=password)
    app = create_app(load_settings(environ), worker.broker, worker.actors, KEY, get_redis())
    client = _client(app, "192.0.2.50")
    assert _login(client, password=password).status_code == 303
    redis = get_redis()
    redis_id = str(uuid.uuid4())
    traceback = (f"Traceback (most recent call last):\n  File \"job.py\", line 3\n"
                 f"OperationalError: connection to postgresql://app:{password}@db/crm failed")
    message = Message(queue_name="default", actor_name=TALLY.actor_name, args=(), kwargs={},
                      options={"redis_message_id": redis_id, "traceback": traceback})
    queue = f"{os.environ['CRMTASKS_REDIS_PREFIX']}:default.XQ"
    redis.hset(queue + ".msgs", redis_id, message.encode())
    redis.zadd(queue, {redis_id: int(time.time() * 1000)})
    page = client.get(f"/dramatiq/queues/default/failed/{redis_id}").get_data(as_text=True)
    assert "OperationalError: connection to postgresql://app:***@db/crm failed" in page
    assert password not in page and str(markupsafe.escape(password)) not in page


@pytest.mark.parametrize(("login", "who"), [(True, USER), (False, "loopback")])
def test_the_schedule_form_leaves_one_row_per_change(worker, trail_db, login, who):
    client = _client(_app(worker, login=login), "127.0.0.1")
    if login:
        _login(client)
    token = _token(client, f"/jobs/{TALLY.name}")
    form = {"csrf_token": token, "cron": "*/15 * * * *", "zone": "America/New_York"}
    assert client.post(f"/jobs/{TALLY.name}/schedule/preview", data=form).status_code == 200  # nothing stored
    assert client.post(f"/jobs/{TALLY.name}/schedule", data={**form, "cron": "61 * * * *"}).status_code == 400
    assert client.post(f"/jobs/{TALLY.name}/schedule", data=form).status_code == 303
    assert client.post(f"/jobs/{TALLY.name}/schedule/reset", data={"csrf_token": token}).status_code == 303
    rows = [(action, changes["who"], changes["via"], changes["target"], changes["details"]["after"], address)
            for action, changes, address in _trail_rows(trail_db) if action.startswith("schedule")]
    assert rows == [("schedule_set", who, "dashboard", TALLY.name,
                     {"cron": "*/15 * * * *", "zone": "America/New_York"}, "127.0.0.1"),
                    ("schedule_reset", who, "dashboard", TALLY.name, None, "127.0.0.1")]
