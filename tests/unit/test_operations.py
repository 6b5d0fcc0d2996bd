"""Operations plumbing without services: exporter settings and server, stop handling, log routing, scheduler start."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest

from crmtasks.broker import metrics_exporter, stopping
from crmtasks.broker.middleware import graceful_stop
from crmtasks.logging_setup import install_handlers
from crmtasks.scheduler import boot as scheduler_boot
from crmtasks.settings import SettingsError, load_exporter_settings, load_settings

# --- settings -------------------------------------------------------------------------------------


def test_catch_up_window_is_not_mistaken_for_a_task_schedule(tmp_path):
    settings = load_settings({"CRMTASKS_HOME": str(tmp_path), "CRMTASKS_SCHEDULE_CATCHUP_S": "0",
                              "CRMTASKS_SCHEDULE_AUDIT_MAINTENANCE": "*/5 * * * *"})
    assert settings.catch_up_s == 0
    assert settings.schedule("audit_maintenance") == "*/5 * * * *"


def test_exporter_settings_default_to_loopback_and_a_directory_per_port(tmp_path):
    exporter = load_exporter_settings({"CRMTASKS_HOME": str(tmp_path)})
    assert (exporter.host, exporter.port, exporter.directory) == ("127.0.0.1", 9191, tmp_path / "metrics" / "9191")
    environ = {"CRMTASKS_HOME": str(tmp_path), "CRMTASKS_METRICS_HOST": "0.0.0.0", "CRMTASKS_METRICS_PORT": "9300"}
    assert load_settings(environ).exporter == load_exporter_settings(environ)


def test_exporter_settings_are_validated(tmp_path):
    with pytest.raises(SettingsError, match="CRMTASKS_METRICS_PORT"):
        load_exporter_settings({"CRMTASKS_HOME": str(tmp_path), "CRMTASKS_METRICS_PORT": "70000"})


# --- the exporter ---------------------------------------------------------------------------------


def test_exporter_serves_the_workers_metrics_directory_on_the_configured_address(tmp_path):
    exporter = load_exporter_settings({"CRMTASKS_HOME": str(tmp_path), "CRMTASKS_METRICS_PORT": "1"})
    exporter.directory.mkdir(parents=True)
    # What a worker process does: write a multiprocess gauge into that directory, then exit.
    subprocess.run([sys.executable, "-c", (
        "import prometheus_client as p; "
        "p.Gauge('crmtasks_test_gauge', 'test', ['task'], multiprocess_mode='max').labels('tick').set(7)")],
        env=dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(exporter.directory)), check=True, timeout=60)
    server = metrics_exporter.build_server(dataclasses.replace(exporter, port=0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert 'crmtasks_test_gauge{task="tick"} 7.0' in body
    finally:
        server.shutdown()
        server.server_close()


# --- stopping -------------------------------------------------------------------------------------


def test_exit_waits_for_the_end_of_a_critical_section():
    steps = []
    with pytest.raises(SystemExit) as exited, stopping.critical():
        with stopping.critical():
            stopping.exit_when_safe(0)
            steps.append("claim")
        steps.append("send")
    assert steps == ["claim", "send"] and exited.value.code == 0
    stopping._pending_exit = None
    with pytest.raises(SystemExit):
        stopping.exit_when_safe(0)


def test_a_relayed_repeat_of_a_stop_signal_is_the_same_request(monkeypatch):
    calls = []
    clock = iter([100.0, 100.01, 103.0])
    monkeypatch.setattr(graceful_stop.time, "monotonic", lambda: next(clock))
    handler = graceful_stop._first_of_a_burst(lambda signum, frame: calls.append(signum))
    handler(signal.SIGTERM, None)  # from the process manager
    handler(signal.SIGTERM, None)  # relayed by the dramatiq master 10 ms later: ignored
    handler(signal.SIGTERM, None)  # 3 s later: a real second request ("exit now")
    assert calls == [signal.SIGTERM, signal.SIGTERM]


def test_only_dramatiqs_own_handlers_are_wrapped():
    previous = signal.getsignal(signal.SIGTERM)
    assert graceful_stop.tolerate_relayed_signals() == []  # pytest's (default) handler is left alone
    assert signal.getsignal(signal.SIGTERM) is previous


# --- logs -----------------------------------------------------------------------------------------


@pytest.fixture()
def root_handlers():
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in saved:
            root.removeHandler(handler)
            handler.close()
    for handler in saved:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def test_log_handlers_replace_a_libraries_stderr_handler_and_write_json_to_the_file(root_handlers, tmp_path):
    library_handler = logging.StreamHandler()  # what dramatiq's and periodiq's basicConfig install
    root_handlers.addHandler(library_handler)
    log_file = tmp_path / "crmtasks.log"
    install_handlers("INFO", "json", log_file, libraries_level="INFO")
    install_handlers("INFO", "json", log_file, libraries_level="INFO")  # idempotent
    assert library_handler not in root_handlers.handlers
    ours = [h for h in root_handlers.handlers if getattr(h, "_crmtasks_handler", False)]
    assert len(ours) == 2  # stderr and the file
    logging.getLogger("dramatiq.worker.WorkerThread").error("job failed")
    logging.getLogger("crmtasks.scheduler.boot").info("caught up")
    for handler in ours:
        handler.flush()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(r["logger"], r["level"], r["message"]) for r in records] == [
        ("dramatiq.worker.WorkerThread", "ERROR", "job failed"), ("crmtasks.scheduler.boot", "INFO", "caught up")]


# --- scheduler start ------------------------------------------------------------------------------


def test_a_scheduler_starting_late_in_a_minute_waits_for_the_next_one(monkeypatch):
    slept = []
    monkeypatch.setattr(scheduler_boot.time, "sleep", slept.append)
    late = datetime.datetime(2026, 3, 1, 10, 4, 57, 500_000, tzinfo=datetime.timezone.utc)
    assert scheduler_boot.wait_for_next_minute_if_late(late) == pytest.approx(2.55)
    assert slept == [pytest.approx(2.55)]
    early = late.replace(second=55)
    assert scheduler_boot.wait_for_next_minute_if_late(early) == 0.0
    assert len(slept) == 1
