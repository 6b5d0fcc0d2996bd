"""Search respects sharing: a user's search returns, and counts, only the records they may read.

Random organizations (the strategy of test_sharing_reference) are written to
the database; for every user and entity, faceted_search(..., user_id=...)
must return exactly the records the reference evaluator lets them read, and
facet counts equal to a GROUP BY over those records alone.
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, given, settings

from crmtasks.search.query import faceted_search
from tests.integration.sharing_support import (
    ENTITY_NAMES,
    reference_access,
    reset_defaults,
    write_org,
)
from tests.integration.test_sharing_reference import orgs

# Facet fields that are plain columns of the records the organizations carry.
PLAIN_FACETS = {
    "leads": {"status": "status", "industry": "industry", "source": "source", "rating": "rating",
              "owner": "owner_id"},
    "deals": {"stage": "stage", "owner": "owner_id"},
    "accounts": {"industry": "industry", "region": "region", "owner": "owner_id"},
    "contacts": {"lead_source": "lead_source", "owner": "owner_id"},
}


@pytest.fixture(autouse=True)
def _private_defaults_afterwards(migrated_database_url):
    yield
    reset_defaults(migrated_database_url)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(org=orgs())
def test_search_returns_and_counts_only_what_the_user_may_read(crm_db, migrated_database_url, org):
    write_org(migrated_database_url, org)
    for user_id in sorted(org.users):
        for entity in ENTITY_NAMES:
            readable = {record_id: row for record_id, row in org.records[entity].items()
                        if reference_access(org, user_id, entity, record_id, "read")}
            result = faceted_search(entity, user_id=user_id, per_page=100)
            assert result.source == "live"
            assert {record["id"] for record in result.records} == set(readable), (user_id, entity)
            assert result.total == len(readable)
            for facet, column in PLAIN_FACETS[entity].items():
                expected = collections.Counter(row[column] for row in readable.values())
                got = {value: count for value, count in result.facets[facet].items()}
                got = {(value.get("id") if isinstance(value, dict) else value): count for value, count in got.items()}
                assert got == dict(expected), (user_id, entity, facet)


def test_user_id_must_be_a_positive_whole_number(crm_db):
    for bad in (0, -3, "7", True, 1.5):
        with pytest.raises(ValueError, match="user_id must be a positive whole number"):
            faceted_search("leads", user_id=bad)
