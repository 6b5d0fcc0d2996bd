"""A run's error never shows a password when an overview reads it, even from a row written before errors were masked.

Issue 16, item 14: ``crmtasks tasks``, ``crmtasks check`` and the dashboard
read the errors in ``task_runs``; a library's message in one may echo the
database or Redis URL. (Errors are masked when recorded too: see
tests/acceptance/test_passwords_and_start_errors.py.)
"""

from __future__ import annotations

import dataclasses

from crmtasks.runs.health import run_checks
from crmtasks.runs.overview import job_overviews
from crmtasks.settings import get_settings

SECRET = "S3cr3t-pw"


def test_an_older_error_with_a_password_is_masked_when_read(crm_db):
    settings = dataclasses.replace(get_settings(), redis_url=f"redis://:{SECRET}@127.0.0.1:6379/0")
    crm_db.execute_sql(
        "INSERT INTO task_runs (task, trigger, status, started_at, finished_at, error) "
        "VALUES ('warm_caches', 'manual', 'failed', now() - interval '1 minute', now(), %s)",
        (f"Traceback ...\nConnectionError: cannot reach {settings.redis_url}",))
    try:
        overviews = {overview.task: overview for overview in job_overviews(settings)}
        findings = [finding.message for finding in run_checks(get_settings()) if "warm_caches failed" in finding.message]
        masked = [finding.message for finding in run_checks(settings) if "warm_caches failed" in finding.message]
    finally:  # other modules' tests count task_runs rows
        crm_db.execute_sql("DELETE FROM task_runs WHERE task = 'warm_caches'")
    assert overviews["warm_caches"].last_error == "ConnectionError: cannot reach redis://:***@127.0.0.1:6379/0"
    assert findings and SECRET in findings[0]  # the row as written: the process's own settings know no such secret
    assert masked == ["warm_caches failed on its last run: ConnectionError: cannot reach redis://:***@127.0.0.1:6379/0"]
