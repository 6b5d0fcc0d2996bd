"""The warm_caches job: what it writes to Redis, what it records in task_runs, how it fails."""

from __future__ import annotations

import pytest
import redis

from crmtasks import sharing
from crmtasks.jobs import registry, warm_caches
from crmtasks.models import TaskRun
from crmtasks.runs import runner
from crmtasks.settings import get_settings
from crmtasks.sharing.cache import (
    LocalVisibilityCache,
    RedisVisibilityCache,
    VisibilityCache,
    visibility_key,
)
from crmtasks.sharing.checker import AccessChecker
from crmtasks.sharing.visibility import Epoch, Visibility
from tests.integration import test_sharing_model as hand_made
from tests.integration.test_sharing_model import GONE, SUPPORT, USERS

organization = hand_made.organization  # the fixture writing the hand-made organization

ACTIVE = [user_id for user_id, (_, active) in USERS.items() if active]


def _current_epoch(crm_db):
    return crm_db.execute_sql("SELECT epoch, token::text FROM sharing_epoch").fetchone()


def test_run_warms_every_active_user_and_records_its_stats(organization, crm_db, redis_client):
    settings = get_settings()
    redis_client.set(visibility_key(settings, GONE), b"left over from when the user was active")
    outcome = runner.run_now(registry.get("warm_caches"), settings)
    assert outcome.status == "succeeded", outcome.error
    stats = TaskRun.get_by_id(outcome.run_id).stats
    warmed = stats["sharing_visibility"]
    assert warmed["users_warmed"] == len(ACTIVE) == stats["keys"]
    assert warmed["users_evicted"] == 1 and warmed["epoch_changed"] is False
    assert stats["bytes"] == warmed["bytes"] > 0
    assert "duration_s" in stats and "duration_s" in warmed
    number, token = _current_epoch(crm_db)
    total = 0
    for user_id in ACTIVE:
        raw = redis_client.get(visibility_key(settings, user_id))
        entry = Visibility.from_json(raw)
        assert (entry.user_id, entry.epoch.number, entry.epoch.token, entry.active) == (user_id, number, token, True)
        assert 0 < redis_client.ttl(visibility_key(settings, user_id)) <= settings.sharing_cache_ttl_s
        total += len(raw)
    assert total == warmed["bytes"]
    assert redis_client.exists(visibility_key(settings, GONE)) == 0
    # the other tier: this process's memory, where its next checks look first
    assert (warmed["consistency"], warmed["memory_capacity"]) == ("exact", settings.sharing_local_cache_users)
    local = sharing.checker().cache.local
    assert warmed["memory_users"] == len(local) >= len(ACTIVE)
    assert all(local.get(user_id, Epoch(number, token)) is not None for user_id in ACTIVE)


def test_a_failing_warmer_fails_the_run_after_the_others_ran(organization, redis_client, monkeypatch):
    def broken(settings):
        raise ConnectionError("facet table missing")

    monkeypatch.setattr(warm_caches, "WARMERS", (warm_caches.Warmer("facets", broken), *warm_caches.WARMERS))
    with pytest.raises(warm_caches.WarmingFailed, match=r"warmers failed: facets \(ConnectionError: facet table missing\)"):
        warm_caches.run()
    assert redis_client.exists(visibility_key(get_settings(), SUPPORT)) == 1


def test_checks_stay_exact_when_redis_is_down(organization):
    settings = get_settings()
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    checker = AccessChecker(VisibilityCache(LocalVisibilityCache(100), RedisVisibilityCache(unreachable, settings, 60)))
    assert checker.can_access(SUPPORT, "leads", 3) is True
    assert checker.can_access(SUPPORT, "leads", 4) is False
    assert checker.cache.counts["redis_errors"] >= 1 and checker.counts["compiles"] == 1
    assert sharing.can_access(SUPPORT, "leads", 3) is True  # the process's own checker is unaffected


def test_facet_and_report_read_paths_are_warmed_once_published(crm_db):
    from crmtasks.reports.warm import warm_reports
    from crmtasks.search.warm import warm_facets

    settings = get_settings()
    crm_db.execute_sql(
        "INSERT INTO users (id, username, full_name) VALUES (1, 'ada', 'Ada'); "
        "INSERT INTO leads (name, status, industry, owner_id) "
        "SELECT 'lead ' || n, (ARRAY['New', 'Working'])[1 + mod(n, 2)], 'Retail', 1 FROM generate_series(1, 40) n; "
        "INSERT INTO deals (name, stage, amount, probability, owner_id) "
        "SELECT 'deal ' || n, 'Prospecting', 100, 10, 1 FROM generate_series(1, 10) n")
    before_facets, before_reports = warm_facets(settings), warm_reports(settings)
    for task in ("precompute_facets", "precompute_aggregates"):
        assert runner.run_now(registry.get(task), settings).status == "succeeded"
    facets, reports = warm_facets(settings), warm_reports(settings)
    assert sorted(before_facets["unpublished"]) == ["accounts", "contacts", "deals", "leads"]
    # unfiltered for the 4 entities, plus the top value of the 2 that have records
    assert facets["unpublished"] == [] and facets["queries"] == 6
    assert before_reports["not_ready"] and reports["not_ready"] == []
    assert reports["queries"] == 12 and reports["rows"] > 0  # 6 reports, overall and per owner
