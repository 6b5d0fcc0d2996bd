"""Sharing pieces that need no services: settings, the job's registration, the cached form, the filters' SQL."""

from __future__ import annotations

import os
import re

import pytest
from psycopg2 import sql

from crmtasks.jobs import registry
from crmtasks.pg.db import open_database
from crmtasks.settings import SettingsError, load_settings
from crmtasks.sharing import filters
from crmtasks.sharing.cache import (
    LocalRecordCache,
    LocalVisibilityCache,
    visibility_key,
)
from crmtasks.sharing.visibility import EntityGrants, Epoch, RecordFacts, Visibility

EPOCH = Epoch(7, "2f0c2f3e-0000-4000-8000-000000000000")


def _visibility(**overrides) -> Visibility:
    leads = EntityGrants(public=None, read_owners=frozenset({1, 2, 9}), edit_owners=frozenset({1, 2}),
                         read_criteria=frozenset({("industry", "retail"), ("status", "new"), ("industry", "tech")}),
                         edit_criteria=frozenset({("status", "new")}))
    deals = EntityGrants(public=None, read_owners=frozenset({1, 2}), edit_owners=frozenset({1, 2}),
                         read_criteria=frozenset(), edit_criteria=frozenset())
    accounts = EntityGrants("read", frozenset({1, 2}), frozenset({1, 2}), frozenset(), frozenset())
    values = {"user_id": 1, "epoch": EPOCH, "active": True, "hierarchy_owners": frozenset({1, 2}),
              "entities": {"leads": leads, "deals": deals, "accounts": accounts}}
    values.update(overrides)
    return Visibility(**values)


def test_sharing_settings_defaults_and_overrides(tmp_path):
    settings = load_settings({"CRMTASKS_HOME": str(tmp_path)})
    assert (settings.sharing_cache_ttl_s, settings.sharing_local_cache_users) == (172_800, 10_000)
    settings = load_settings({"CRMTASKS_SHARING_CACHE_TTL_S": "3600", "CRMTASKS_SHARING_LOCAL_CACHE_USERS": "0"})
    assert (settings.sharing_cache_ttl_s, settings.sharing_local_cache_users) == (3600, 0)


@pytest.mark.parametrize("variable,value,problem", [
    ("CRMTASKS_SHARING_CACHE_TTL_S", "59", "out of range (60 to 2592000)"),
    ("CRMTASKS_SHARING_CACHE_TTL_S", "2d", "is not a whole number"),
    ("CRMTASKS_SHARING_LOCAL_CACHE_USERS", "-1", "out of range (0 to 1000000)"),
])
def test_bad_sharing_settings(variable, value, problem):
    with pytest.raises(SettingsError, match=f"^{variable}: .*{re.escape(problem)}"):
        load_settings({variable: value})


def test_warm_caches_job_is_registered():
    from crmtasks.jobs import warm_caches

    spec = registry.get("analytics.warm_caches")
    assert (spec.name, spec.cron, spec.queue, spec.overlap) == ("warm_caches", "0 3 * * *", "workflow_io", "skip")
    assert (spec.max_retries, spec.min_backoff_ms, spec.max_backoff_ms, spec.time_limit_s) == (3, 5_000, 60_000, 1800)
    assert spec.load() is warm_caches.run
    assert [warmer.name for warmer in warm_caches.WARMERS] == ["sharing_visibility", "facets", "reports"]


def test_cached_form_round_trips_and_refuses_what_it_does_not_know():
    visibility = _visibility()
    assert Visibility.from_json(visibility.to_json()) == visibility
    inactive = Visibility(user_id=3, epoch=EPOCH, active=False, hierarchy_owners=frozenset(), entities={})
    assert Visibility.from_json(inactive.to_json()) == inactive
    assert Visibility.from_json(visibility.to_json().replace('"format":1', '"format":2')) is None
    for garbage in (b"", b"not json", b"[]", b'{"format":1}', b'{"format":1,"user_id":"x"}'):
        assert Visibility.from_json(garbage) is None


def test_allows_reads_owners_criteria_public_default_and_account_owner():
    visibility = _visibility()
    lead = RecordFacts(owner_id=9, fields={"status": "lost", "industry": None})
    assert visibility.allows("leads", "read", lead) and not visibility.allows("leads", "edit", lead)
    by_status = RecordFacts(owner_id=None, fields={"status": "new", "industry": None})
    assert visibility.allows("leads", "edit", by_status)
    assert visibility.allows("accounts", "read", RecordFacts(5, {})) and not visibility.allows("accounts", "edit", RecordFacts(5, {}))
    child = RecordFacts(owner_id=5, fields={"stage": "open"}, account_owner_id=2)
    assert visibility.allows("deals", "read", child) and not visibility.allows("deals", "edit", child)
    assert not visibility.allows("contacts", "read", RecordFacts(5, {}, account_owner_id=5))
    assert not visibility.allows("leads", "read", None)
    assert not _visibility(active=False).allows("accounts", "read", RecordFacts(1, {}))


def test_condition_is_composed_sql_over_the_alias():
    rendered = repr(filters.condition(_visibility(), "leads", "r"))
    assert "Identifier('r', 'owner_id')" in rendered and "Literal([1, 2, 9])" in rendered
    assert "Identifier('r', 'industry')" in rendered and "Literal(['retail', 'tech'])" in rendered
    assert "::text[]" in rendered
    assert repr(filters.condition(_visibility(), "accounts", "a")) == repr(sql.SQL("TRUE"))
    assert repr(filters.condition(_visibility(active=False), "leads", "r")) == repr(sql.SQL("FALSE"))
    assert repr(filters.condition(_visibility(), "contacts", "c", "edit")) == repr(sql.SQL("FALSE"))
    child = repr(filters.condition(_visibility(), "deals", "d"))
    assert "EXISTS (SELECT 1 FROM accounts AS" in child and "Identifier('d', 'account_id')" in child
    assert "EXISTS" not in repr(filters.condition(_visibility(), "deals", "d", "edit"))


def test_local_cache_keeps_the_most_recent_users_at_their_epoch(tmp_path):
    cache = LocalVisibilityCache(max_users=2)
    for user_id in (1, 2, 3):
        cache.put(_visibility(user_id=user_id))
    assert cache.get(1, EPOCH) is None  # evicted: least recently used
    assert cache.get(3, EPOCH).user_id == 3
    assert cache.get(3, Epoch(8, "another")) is None
    assert visibility_key(load_settings({"CRMTASKS_REDIS_PREFIX": "crm-a"}), 42) == "crm-a:sharing:visibility:42"


def test_consistency_setting_defaults_to_exact_and_is_checked(tmp_path):
    settings = load_settings({"CRMTASKS_HOME": str(tmp_path)})
    assert (settings.sharing_consistency, settings.sharing_local_cache_records) == ("exact", 100_000)
    settings = load_settings({"CRMTASKS_SHARING_CONSISTENCY": "Notify", "CRMTASKS_SHARING_LOCAL_CACHE_RECORDS": "0"})
    assert (settings.sharing_consistency, settings.sharing_local_cache_records) == ("notify", 0)
    with pytest.raises(SettingsError, match="^CRMTASKS_SHARING_CONSISTENCY: 'eventual' is not one of exact, notify$"):
        load_settings({"CRMTASKS_SHARING_CONSISTENCY": "eventual"})
    with pytest.raises(SettingsError, match=r"^CRMTASKS_SHARING_LOCAL_CACHE_RECORDS: .*out of range \(0 to 10000000\)"):
        load_settings({"CRMTASKS_SHARING_LOCAL_CACHE_RECORDS": "-5"})


def _facts(owner, account=None, account_owner=None, **fields):
    return RecordFacts(owner_id=owner, fields=fields, account_owner_id=account_owner, account_id=account)


def test_record_memory_answers_only_when_it_holds_every_record_and_account_owner():
    cache = LocalRecordCache(max_records=10)
    assert cache.put_many("leads", {1: _facts(5, status="new"), 2: _facts(6, status="won")}, cache.generation("leads"))
    assert cache.get_many("leads", [1, 2]) == {1: _facts(5, status="new"), 2: _facts(6, status="won")}
    assert cache.get_many("leads", [1, 3]) is None
    assert cache.put_many("deals", {7: _facts(5, account=40, account_owner=9, stage="open")}, cache.generation("deals"))
    assert cache.get_many("deals", [7])[7].account_owner_id == 9
    cache.invalidate("accounts", [40])  # the account's owner changed: its children cannot answer
    assert cache.get_many("deals", [7]) is None
    cache.invalidate("leads", [2])
    assert cache.get_many("leads", [1]) is not None and cache.get_many("leads", [2]) is None
    cache.flush("leads")
    assert cache.get_many("leads", [1]) is None


def test_record_memory_drops_a_fill_that_a_notification_overtook_and_stays_bounded():
    cache = LocalRecordCache(max_records=3)
    before = cache.generation("leads")
    cache.invalidate("leads", [99])  # applied while the fill was reading the database
    assert not cache.put_many("leads", {1: _facts(5)}, before) and cache.get_many("leads", [1]) is None
    before = cache.generation("deals")
    cache.invalidate("accounts", [1])  # deals carry their account's owner
    assert not cache.put_many("deals", {1: _facts(5, account=1, account_owner=2)}, before)
    before = cache.generation("contacts")
    cache.clear()  # the listener reconnected: everything read before is suspect
    assert not cache.put_many("contacts", {1: _facts(5)}, before)
    cache.put_many("leads", {i: _facts(i) for i in range(1, 6)}, cache.generation("leads"))
    assert len(cache) == 3 and cache.get_many("leads", [3, 4, 5]) is not None and cache.get_many("leads", [1]) is None
    assert not LocalRecordCache(max_records=0).put_many("leads", {1: _facts(5)}, (0, 0, 0))


def test_sharing_checks_at_once_setting():
    assert load_settings({}).sharing_checks_at_once == 0  # 1 per CPU core, at least 2 (crmtasks.pg.db)
    assert load_settings({"CRMTASKS_SHARING_CHECKS_AT_ONCE": "8"}).sharing_checks_at_once == 8
    for bad, problem in (("-1", "out of range (0 to 500)"), ("501", "out of range (0 to 500)"), ("8x", "is not a whole number")):
        with pytest.raises(SettingsError, match=f"^CRMTASKS_SHARING_CHECKS_AT_ONCE: .*{re.escape(problem)}"):
            load_settings({"CRMTASKS_SHARING_CHECKS_AT_ONCE": bad})


def test_sharing_checks_served_at_once_default_to_one_per_core_and_at_least_two():
    # Few servers make big batches: fewer statements and GIL handovers per check (README, Under load).
    pool = open_database("postgresql://nobody@127.0.0.1:1/none")  # lazy: opens no connection
    assert pool._short_calls == max(2, os.cpu_count() or 1)
    assert open_database("postgresql://nobody@127.0.0.1:1/none", sharing_checks_at_once=5)._short_calls == 5
