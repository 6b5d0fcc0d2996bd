"""run_now: the in-process run honours the cluster-wide mutex and records every outcome."""

from __future__ import annotations

import pytest

from crmtasks.broker.middleware.job_mutex import job_mutex
from crmtasks.jobs import registry
from crmtasks.models import TaskRun
from crmtasks.runs import runner
from crmtasks.settings import get_settings
from tests.acceptance.jobs_for_tests import TEST_SPECS

TALLY, FAIL = TEST_SPECS


@pytest.fixture()
def test_jobs(monkeypatch, crm_db):
    monkeypatch.setattr(registry, "JOBS", TEST_SPECS)


def test_success_failure_and_lock_release(test_jobs):
    settings = get_settings()
    ok = runner.run_now(TALLY, settings)
    bad = runner.run_now(FAIL, settings)
    assert (ok.status, ok.stats) == ("succeeded", {"users": 0})
    assert (bad.status, bad.error) == ("failed", "ValueError: deal 12 has a negative amount")
    rows = {r.id: r for r in TaskRun.select()}
    assert rows[ok.run_id].status == "succeeded" and rows[bad.run_id].status == "failed"
    assert job_mutex(settings, TALLY).holder() is None
    assert job_mutex(settings, FAIL).holder() is None


def test_a_job_running_elsewhere_is_skipped(test_jobs):
    settings = get_settings()
    mutex = job_mutex(settings, TALLY)
    assert mutex.acquire("worker-on-another-host")
    try:
        outcome = runner.run_now(TALLY, settings)
    finally:
        mutex.release("worker-on-another-host")
    assert outcome.status == "skipped"
    run = TaskRun.get_by_id(outcome.run_id)
    assert (run.status, run.trigger, run.stats) == ("skipped", "manual", {"skip_reason": "overlap"})


def test_resolve_keeps_registry_order_and_rejects_unknown_names(test_jobs):
    assert runner.resolve(["fail_on_bad_data", "tally_users"]) == [TALLY, FAIL]
    assert runner.resolve([]) == [TALLY, FAIL]
    assert runner.resolve(["tests.tally_users"]) == [TALLY]  # the actor name works too
    with pytest.raises(KeyError, match="valid tasks: tally_users, fail_on_bad_data"):
        runner.resolve(["nope"])
