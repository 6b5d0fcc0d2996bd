"""The dashboard in a real headless browser: Debian's chromium driven by selenium through chromedriver.

The login wall, the history page, a job's page and its chart, run now
putting a message on the job's Redis queue, a dead letter deleted, and the
operator trail showing each of those, as an operator would click through them. Screenshots of
each page land in the test's temporary directory (their paths are printed).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
import uuid

import pytest
from dramatiq import Message

from tests.acceptance.dashboard_for_tests import PASSWORD, USER, served_dashboard

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver; "
                ".ci/run installs them)", allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

UTC = datetime.timezone.utc


@pytest.fixture()
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture()
def dashboard(crm_db, tmp_path):
    with served_dashboard(tmp_path / "home") as base:
        yield base


def _screenshot(browser, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path}")


def _wait_for(browser, selector: str):
    return WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector)))


def _dead_letter(redis_client) -> str:
    """One dead-lettered message of the default queue, filed as the broker files it; its Redis id."""
    redis_id = str(uuid.uuid4())
    message = Message(queue_name="default", actor_name="tests.tally_users", args=(), kwargs={},
                      options={"redis_message_id": redis_id})
    queue = f"{os.environ['CRMTASKS_REDIS_PREFIX']}:default.XQ"
    redis_client.hset(queue + ".msgs", redis_id, message.encode())
    redis_client.zadd(queue, {redis_id: int(time.time() * 1000)})
    return redis_id


def _log_in(browser, user: str, password: str) -> None:
    browser.find_element(By.ID, "user").clear()
    browser.find_element(By.ID, "user").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login").click()


def test_login_history_and_run_now_in_a_real_browser(browser, dashboard, redis_client, tmp_path):
    from crmtasks.models import TaskRun
    from crmtasks.pg.db import database
    from crmtasks.runs.trail import TRAIL_ENTITY

    database.execute_sql("DELETE FROM audit_log WHERE entity = %s", (TRAIL_ENTITY,))

    now = datetime.datetime.now(UTC)
    recorded = TaskRun.create(task="fail_on_bad_data", trigger="schedule", status="failed",
                              started_at=now - datetime.timedelta(seconds=3), finished_at=now,
                              error="Traceback (most recent call last):\n  File \"jobs.py\", line 9, in run\n"
                                    "ValueError: deal 12 has a negative amount")
    TaskRun.create(task="tally_users", trigger="manual", status="succeeded", started_at=now - datetime.timedelta(minutes=2),
                   finished_at=now - datetime.timedelta(minutes=2) + datetime.timedelta(seconds=1.25),
                   stats={"users": 1234, "duration_ms": 1250})

    # The wall: any page sends an unknown visitor to the login form.
    browser.get(dashboard + "/runs")
    _wait_for(browser, "form.login")
    assert "/login" in browser.current_url
    _screenshot(browser, tmp_path, "1-login")

    _log_in(browser, USER, "not the password")
    assert _wait_for(browser, "#login-error").text == "Wrong user name or password."
    assert "/login" in browser.current_url

    _log_in(browser, USER, PASSWORD)
    # Back to the page first asked for: the history, with the run recorded in task_runs.
    row = _wait_for(browser, f"#run-{recorded.id}")
    assert browser.current_url == dashboard + "/runs"
    assert "fail_on_bad_data" in row.text and "failed" in row.text
    details = row.find_element(By.CSS_SELECTOR, "details")
    assert "ValueError: deal 12 has a negative amount" in details.find_element(By.TAG_NAME, "summary").text
    assert not details.find_element(By.TAG_NAME, "pre").is_displayed()
    details.find_element(By.TAG_NAME, "summary").click()
    assert 'File "jobs.py", line 9, in run' in details.find_element(By.TAG_NAME, "pre").text
    stats = browser.find_element(By.CSS_SELECTOR, "#runs dl.stats").text.splitlines()
    assert stats == ["duration ms", "1,250", "users", "1,234"], stats  # labelled values, not JSON
    _screenshot(browser, tmp_path, "2-runs")

    browser.find_element(By.LINK_TEXT, "Jobs").click()
    _wait_for(browser, "#jobs")
    _screenshot(browser, tmp_path, "3-jobs")

    # A job's page: its chart is drawn (one bar for its one run), its failures listed.
    browser.find_element(By.ID, "job-link-fail_on_bad_data").click()
    chart = _wait_for(browser, "#duration-chart")
    assert chart.size["width"] > 300 and chart.size["height"] > 80
    assert len(chart.find_elements(By.CSS_SELECTOR, "rect.bar-failed")) == 1
    assert "ValueError: deal 12 has a negative amount" in browser.find_element(By.ID, "failures").text
    _screenshot(browser, tmp_path, "3b-job-page")
    browser.find_element(By.LINK_TEXT, "Jobs").click()
    _wait_for(browser, "#jobs")
    browser.find_element(By.ID, "run-tally_users").click()
    message_id = _wait_for(browser, "#sent-message-id").text
    _screenshot(browser, tmp_path, "4-run-now")
    queue = f"{os.environ['CRMTASKS_REDIS_PREFIX']}:default"
    queued = [json.loads(raw) for raw in redis_client.hvals(queue + ".msgs")]
    message = next(message for message in queued if message["message_id"] == message_id)
    assert message["actor_name"] == "tests.tally_users"
    assert message["options"]["redis_message_id"].encode() in redis_client.lrange(queue, 0, -1)

    # The message as dramatiq-dashboard shows it, behind the same wall.
    browser.find_element(By.ID, "sent-in-queue").click()
    _wait_for(browser, ".crm-topbar")
    assert "tests.tally_users" in browser.page_source
    _screenshot(browser, tmp_path, "5-queue-message")

    # A dead letter deleted through dramatiq-dashboard's own form: our CSRF field rides along in it.
    dead = _dead_letter(redis_client)
    browser.get(dashboard + "/dramatiq/queues/default/failed")
    delete = _wait_for(browser, f"form[action$='delete-message'] input[name='id'][value='{dead}']")
    form = delete.find_element(By.XPATH, "./..")
    assert form.find_element(By.CSS_SELECTOR, "input[name='csrf_token']").get_attribute("value")
    form.find_element(By.TAG_NAME, "button").click()
    WebDriverWait(browser, 15).until(lambda _: not redis_client.hexists(queue + ".XQ.msgs", dead))
    _screenshot(browser, tmp_path, "6-dead-letter-deleted")

    # The operator trail: what was just done here, newest first, by whom and from where.
    browser.find_element(By.ID, "trail-link").click()
    _wait_for(browser, "#trail")
    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#trail tr.trail-entry")]
    # when, who, via, from, action, on, details
    assert [row[1:6] for row in rows] == [
        [USER, "dashboard", "127.0.0.1", "dead_letter_delete", f"default.XQ/{dead}"],
        [USER, "dashboard", "127.0.0.1", "run_now", "tally_users"],
        [USER, "dashboard", "127.0.0.1", "login", ""],
        [USER, "dashboard", "127.0.0.1", "login_failed", ""]], rows
    assert message_id in rows[1][6]
    _screenshot(browser, tmp_path, "7-operator-trail")
    browser.find_element(By.CSS_SELECTOR, "#trail-action option[value='run_now']").click()
    browser.find_element(By.ID, "trail-filter").click()
    WebDriverWait(browser, 15).until(lambda _: "action=run_now" in browser.current_url)
    filtered = browser.find_elements(By.CSS_SELECTOR, "#trail tr.trail-entry td.trail-action")
    assert [cell.text for cell in filtered] == ["run_now"]

    browser.find_element(By.ID, "logout").click()
    _wait_for(browser, "form.login")
    browser.get(dashboard + "/")
    _wait_for(browser, "form.login")


def _wait_for_notice(browser, text: str) -> None:
    WebDriverWait(browser, 15, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        lambda _: text in browser.find_element(By.ID, "schedule-notice").text)


def test_the_schedule_form_previews_five_times_then_saves_in_a_real_browser(browser, dashboard, tmp_path):
    from crmtasks.models import JobSchedule

    browser.get(dashboard + "/jobs/fail_on_bad_data")
    _wait_for(browser, "form.login")
    _log_in(browser, USER, PASSWORD)
    _wait_for(browser, "#schedule-form")
    assert browser.find_element(By.ID, "job-schedule").text == "0 2 * * *"
    assert browser.find_element(By.ID, "job-zone").text == "UTC"

    cron = browser.find_element(By.ID, "schedule-cron")
    cron.clear()
    cron.send_keys("30 2 * * 1-5")
    zone = browser.find_element(By.ID, "schedule-zone")
    zone.clear()
    zone.send_keys("America/New_York")
    browser.find_element(By.ID, "schedule-preview-button").click()
    times = [item.text for item in _wait_for(browser, "#schedule-preview").find_elements(By.TAG_NAME, "li")]
    assert len(times) == 5 and all(" 02:30 E" in time for time in times), times  # EST or EDT, local 02:30
    assert not JobSchedule.select().exists()  # a preview stores nothing
    _screenshot(browser, tmp_path, "7-schedule-preview")

    browser.find_element(By.ID, "schedule-save").click()
    _wait_for_notice(browser, "Schedule saved")
    assert browser.find_element(By.ID, "job-schedule").text == "30 2 * * 1-5"
    assert browser.find_element(By.ID, "job-zone").text == "America/New_York"
    assert "set by ops (dashboard)" in browser.find_element(By.ID, "job-schedule-source").text
    next_runs = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#next-runs li")]
    assert next_runs[:5] == times
    stored = JobSchedule.get(JobSchedule.task == "fail_on_bad_data")
    assert (stored.cron, stored.zone, stored.changed_by) == ("30 2 * * 1-5", "America/New_York", "ops (dashboard)")
    _screenshot(browser, tmp_path, "8-schedule-saved")

    browser.find_element(By.ID, "schedule-reset").click()
    _wait_for_notice(browser, "default applies again")  # the saved page had a notice too: wait for the new one
    assert browser.find_element(By.ID, "job-schedule").text == "0 2 * * *"
    assert not JobSchedule.select().exists()
