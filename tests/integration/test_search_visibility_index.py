"""A user's search from the index keeps exactly what ``sharing.visible`` keeps, after random sharing and record changes.

Random organizations (the strategy and the reference evaluator of
test_sharing_reference) are written and indexed; then random changes to roles,
users, rules, defaults, owners, fields and accounts are made, some after the
per-user grant bitmaps were cached. For every user and entity the indexed answer
must equal the reference evaluator and the live SQL answer (``sharing.visible``).
"""

from __future__ import annotations

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmtasks.search import visibility_index
from crmtasks.search.precompute import precompute
from crmtasks.search.query import faceted_search
from tests.integration.sharing_support import (
    ENTITY_NAMES,
    reference_access,
    reset_defaults,
    write_org,
)
from tests.integration.test_sharing_reference import apply_random_change, orgs


@pytest.fixture(autouse=True)
def _private_defaults_afterwards(migrated_database_url):
    yield
    reset_defaults(migrated_database_url)


@pytest.fixture()
def conn(crm_db, migrated_database_url):
    connection = psycopg2.connect(migrated_database_url)
    connection.autocommit = True
    yield connection
    connection.close()


def _check_every_user(org) -> None:
    for user_id in sorted(org.users) + [max(org.users, default=0) + 1]:  # and a user that does not exist
        for entity in ENTITY_NAMES:
            readable = {record_id for record_id in org.records[entity]
                        if reference_access(org, user_id, entity, record_id, "read")}
            indexed = faceted_search(entity, user_id=user_id, per_page=100)
            live = faceted_search(entity, user_id=user_id, per_page=100, allow_precomputed=False)
            assert indexed.source == "precomputed", (user_id, entity)
            assert indexed.total == len(readable), (user_id, entity)
            assert {record["id"] for record in indexed.records} == readable, (user_id, entity)
            assert (indexed.total, indexed.facets) == (live.total, live.facets), (user_id, entity)
            for page, order_by in ((2, None), (2, "id"), (3, "-created_at")):  # pages past the first
                paged = faceted_search(entity, user_id=user_id, page=page, per_page=2, order_by=order_by)
                live_page = faceted_search(entity, user_id=user_id, page=page, per_page=2, order_by=order_by,
                                           allow_precomputed=False)
                assert [r["id"] for r in paged.records] == [r["id"] for r in live_page.records], (user_id, entity)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(org=orgs(), data=st.data())
def test_indexed_visibility_equals_the_reference_after_random_changes(conn, migrated_database_url, monkeypatch,
                                                                      org, data):
    monkeypatch.setattr(visibility_index, "CACHE_FROM_ROWS", 0)  # cache grant bitmaps even for tiny indexes
    write_org(migrated_database_url, org)
    precompute(conn, full=True)
    _check_every_user(org)  # fills the grant cache at the current epoch
    for _ in range(data.draw(st.integers(1, 4), label="changes")):
        apply_random_change(data, org, migrated_database_url)
    _check_every_user(org)  # a sharing change must not be answered from a grant cached before it
    precompute(conn)
    _check_every_user(org)
