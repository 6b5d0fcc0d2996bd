"""Alerts end to end: a real HTTP receiver on 127.0.0.1, Apprise ``json://`` URLs, real Redis, PostgreSQL, workers.

Final failures go through a real Dramatiq worker on the real RedisBroker
with crmtasks' middleware; overdue jobs and missing processes are noticed
by real heartbeats (two at once, a worker's and a scheduler's, each with
its alert sweep, ticking many times), as in the running system.
"""

from __future__ import annotations

import datetime
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis as redis_module

from crmtasks.alerts import AlertSweep
from crmtasks.broker.heartbeats import Heartbeat, alive
from crmtasks.jobs import registry
from crmtasks.models import TaskRun
from crmtasks.redis_client import get_redis, key
from crmtasks.settings import get_settings
from tests.integration.in_process_worker import in_process_worker

UTC = datetime.timezone.utc
ALL_QUEUES = sorted({spec.queue for spec in registry.JOBS})


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.alerts.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.alerts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _clear_alert_state():
    client = get_redis(get_settings())
    for pattern in ("alert:*", "heartbeat:*", "test:*"):
        for name in client.scan_iter(match=key(get_settings(), pattern), count=500):
            client.delete(name)


@pytest.fixture()
def alerting(receiver, monkeypatch):
    """Settings whose CRMTASKS_ALERT_URLS is the receiver; yields the list of alerts it received."""
    monkeypatch.setenv("CRMTASKS_ALERT_URLS", f"json://127.0.0.1:{receiver.server_port}/alerts")
    get_settings.cache_clear()
    _clear_alert_state()
    yield receiver.alerts
    _clear_alert_state()
    monkeypatch.undo()
    get_settings.cache_clear()


def _titles(alerts):
    return [(alert["type"], alert["title"].split("] ", 1)[1]) for alert in alerts]


def _wait(predicate, what, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


# --- final failures, through a real worker -------------------------------------------


def fail_until_fixed() -> dict:
    if not get_redis().exists(key(get_settings(), "test", "fixed")):
        raise ValueError("deal 12 has a negative amount")
    return {"fixed": True}


def always_loses_redis() -> dict:
    get_redis().incr(key(get_settings(), "test", "attempts"))
    raise redis_module.ConnectionError("Redis went away")


def loses_redis_once() -> dict:
    if get_redis().incr(key(get_settings(), "test", "once")) == 1:
        raise redis_module.ConnectionError("Redis went away")
    return {}


def _spec(name):
    return registry.JobSpec(name=name, actor_name=f"tests.{name}", cron="* * * * *", queue="default",
                            job=f"{__name__}:{name}", description=name, time_limit_s=30, max_retries=2,
                            min_backoff_ms=10, max_backoff_ms=50)


@pytest.fixture()
def worker(alerting, crm_db):
    specs = {name: _spec(name) for name in ("fail_until_fixed", "always_loses_redis", "loses_redis_once")}
    with in_process_worker(specs) as running:
        def run(name):
            running.actors[name].send()
            running.drain()

        yield run


def _statuses(task):
    return [run.status for run in TaskRun.select().where(TaskRun.task == task).order_by(TaskRun.id)]


def test_a_job_that_fails_for_good_alerts_once_and_once_more_when_it_succeeds_again(worker, alerting):
    worker("fail_until_fixed")
    worker("fail_until_fixed")  # fails for good again while its incident is open: no second alert
    assert _statuses("fail_until_fixed") == ["failed", "failed"]
    assert _titles(alerting) == [("failure", "job fail_until_fixed failed for good")]
    assert "ValueError: deal 12 has a negative amount" in alerting[0]["message"]

    get_redis().set(key(get_settings(), "test", "fixed"), 1)
    worker("fail_until_fixed")
    worker("fail_until_fixed")
    assert _statuses("fail_until_fixed") == ["failed", "failed", "succeeded", "succeeded"]
    assert _titles(alerting)[1:] == [("success", "job fail_until_fixed succeeded again")]


def test_retries_alert_only_when_the_last_one_fails(worker, alerting):
    worker("loses_redis_once")  # failed once, cured by its retry: no incident
    assert _statuses("loses_redis_once") == ["failed", "succeeded"]
    assert alerting == []
    worker("always_loses_redis")  # max_retries=2: three attempts, one alert, after the last
    assert _statuses("always_loses_redis") == ["failed", "failed", "failed"]
    assert _titles(alerting) == [("failure", "job always_loses_redis failed for good")]


def test_a_failing_destination_never_breaks_a_job(monkeypatch, crm_db, caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    monkeypatch.setenv("CRMTASKS_ALERT_URLS", f"json://127.0.0.1:{dead_port}/alerts")
    get_settings.cache_clear()
    try:
        _clear_alert_state()
        with in_process_worker({"fail_until_fixed": _spec("fail_until_fixed")}) as running:
            running.actors["fail_until_fixed"].send()
            running.drain()
            get_redis().set(key(get_settings(), "test", "fixed"), 1)
            running.actors["fail_until_fixed"].send()
            running.drain()
        assert _statuses("fail_until_fixed") == ["failed", "succeeded"]
        assert "was not delivered to every destination" in caplog.text
    finally:
        _clear_alert_state()
        monkeypatch.undo()
        get_settings.cache_clear()


# --- overdue jobs and missing processes, noticed by heartbeats -----------------------


def _sweep(**overrides):
    options = dict(every_s=0, grace_s=0)
    options.update(overrides)
    return AlertSweep(get_settings(), alive, **options)


@pytest.fixture()
def heartbeats(alerting, crm_db):
    """Start heartbeats with their alert sweeps ticking every 50 ms; stops them all at the end.

    Heartbeats of one role in one process share a key: stop one (``replace``) before starting the next.
    """
    started = []

    def start(role, info, replace=None, **sweep_options):
        if replace is not None:
            started[replace].stop(wait_s=10)
        sweep = _sweep(**sweep_options)
        started.append(Heartbeat(get_settings(), role, info, interval_s=0.05, sweep=sweep).start())
        return sweep

    yield start
    for heartbeat in started:
        heartbeat.stop(wait_s=10)


def _ticks(*sweeps, more=20):
    """Wait until the sweeps together have swept ``more`` more times."""
    target = sum(sweep.sweeps for sweep in sweeps) + more
    _wait(lambda: sum(sweep.sweeps for sweep in sweeps) >= target, f"{more} sweeps")


def _succeeded(task, finished_ago):
    finished = datetime.datetime.now(UTC) - finished_ago
    TaskRun.create(task=task, trigger="schedule", status="succeeded", started_at=finished, finished_at=finished)


def test_an_overdue_job_alerts_once_across_ticks_and_once_when_a_run_succeeds(heartbeats, alerting):
    _succeeded("precompute_facets", datetime.timedelta(hours=1))  # every 5 minutes: overdue after 10
    sweeps = [heartbeats("worker", {"queues": ALL_QUEUES}), heartbeats("scheduler", {"jobs": []})]
    _ticks(*sweeps)
    assert _titles(alerting) == [("failure", "job precompute_facets is overdue")]
    assert "more than twice its interval (5 min)" in alerting[0]["message"]

    _succeeded("precompute_facets", datetime.timedelta(seconds=1))
    _wait(lambda: len(alerting) == 2, "the resolved alert")
    _ticks(*sweeps)
    assert _titles(alerting) == [("failure", "job precompute_facets is overdue"),
                                 ("success", "job precompute_facets is no longer overdue")]


def test_no_live_worker_on_a_queue_alerts_once_and_once_when_one_is_back(heartbeats, alerting):
    missing = ALL_QUEUES[0]
    sweeps = [heartbeats("worker", {"queues": ALL_QUEUES[1:]}), heartbeats("scheduler", {"jobs": []})]
    _ticks(*sweeps)
    assert _titles(alerting) == [("failure", f"no live worker on queue {missing}")]
    assert f"dramatiq crmtasks.tasks --queues {missing}" in alerting[0]["message"]

    sweeps.append(heartbeats("worker", {"queues": ALL_QUEUES}, replace=0))  # a worker of every queue instead
    _wait(lambda: len(alerting) == 2, "the resolved alert")
    _ticks(*sweeps)
    assert _titles(alerting)[1:] == [("success", f"a worker consumes queue {missing} again")]


def test_a_missing_scheduler_within_its_grace_period_is_not_an_incident_yet(heartbeats, alerting):
    sweep = heartbeats("worker", {"queues": ALL_QUEUES}, grace_s=3600)
    _ticks(sweep)
    assert alerting == []
    _ticks(heartbeats("worker", {"queues": ALL_QUEUES}, replace=0, grace_s=0))
    assert _titles(alerting) == [("failure", "no live scheduler")]
