"""A search as a user sends one statement when nothing changed, and a sharing change counts at once.

The user's visibility is taken from the sharing checker's memory at the epoch
token this process last read; the search's one statement reads the token again
in its own snapshot and the answer is used only when both agree. Checked
against the real PostgreSQL: statements sent, and answers equal to the live
search's (``sharing.visible`` in SQL) before and right after sharing changes.
"""

from __future__ import annotations

import pytest

from crmtasks.jobs import precompute_facets
from crmtasks.search import visibility_index
from crmtasks.search.overlay import OVERLAYS
from crmtasks.search.query import faceted_search
from tests.integration.sharing_support import RESET_SQL, reset_defaults
from tests.integration.test_search_overlay import _counting_connection, _statements

MANAGER, SELLER, PEER = 1, 2, 3


@pytest.fixture(autouse=True)
def _private_defaults_afterwards(migrated_database_url):
    yield
    reset_defaults(migrated_database_url)


def _org(database) -> None:
    """A manager above a seller, a peer of the manager's in another branch; 300 leads owned by the three."""
    database.execute_sql(RESET_SQL)
    database.execute_sql("INSERT INTO roles (id, name, parent_id) VALUES (1, 'head', NULL), (2, 'sales', 1), "
                         "(3, 'support', NULL)")
    database.execute_sql("INSERT INTO users (id, username, full_name, role_id, is_active) VALUES "
                         "(1, 'manager', 'M', 1, true), (2, 'seller', 'S', 2, true), (3, 'peer', 'P', 3, true)")
    database.execute_sql("INSERT INTO leads (id, name, status, owner_id, industry) SELECT i, 'L' || i, "
                         "(ARRAY['new', 'won', 'lost'])[1 + i %% 3], 1 + i %% 3, 'Retail' FROM generate_series(1, 300) i")


def _same_as_live(result, user_id, **kwargs) -> None:
    live = faceted_search("leads", user_id=user_id, allow_precomputed=False, **kwargs)
    assert (result.source, result.total, result.facets, result.records) == (
        "precomputed", live.total, live.facets, live.records)


def test_a_users_search_is_one_statement_and_sees_a_sharing_change_at_once(crm_db, monkeypatch):
    monkeypatch.setattr(visibility_index, "CACHE_FROM_ROWS", 0)  # keep visible sets (and counts) even for 300 rows
    _org(crm_db)
    precompute_facets.run()
    conn = _counting_connection(crm_db)
    OVERLAYS.clear()
    try:
        for user_id in (MANAGER, SELLER, PEER):
            _statements(conn, "leads", user_id=user_id)  # the first look: the visibility read in the snapshot
            _statements(conn, "leads", {"status": "won"}, user_id=user_id)  # the page statement prepared
            sent, result = _statements(conn, "leads", {"status": "won"}, user_id=user_id)
            assert sent == 1, user_id
            _same_as_live(result, user_id, filters={"status": "won"})
        assert _statements(conn, "leads", user_id=MANAGER)[1].total == 200  # the seller's leads and their own

        # Records changed since the generation: the kept set's counts minus its skipped rows, plus the rows read live.
        crm_db.execute_sql("UPDATE leads SET owner_id = 3 WHERE id IN (1, 4, 7)")  # the seller's, now the peer's
        crm_db.execute_sql("UPDATE leads SET status = 'won' WHERE id IN (2, 5)")
        for user_id in (MANAGER, SELLER, PEER):
            _statements(conn, "leads", user_id=user_id)  # reads the changes
            for filters in ({}, {"status": "won"}):
                sent, result = _statements(conn, "leads", filters, user_id=user_id)
                assert sent == 1, user_id
                _same_as_live(result, user_id, filters=filters)
        assert _statements(conn, "leads", user_id=MANAGER)[1].total == 197

        crm_db.execute_sql("UPDATE sharing_defaults SET access = 'public_read' WHERE entity = 'leads'")
        sent, result = _statements(conn, "leads", user_id=SELLER)  # rules cached at the old epoch: not used
        assert sent > 1 and result.total == 300
        _same_as_live(result, SELLER)
        assert _statements(conn, "leads", user_id=SELLER)[0] == 1  # then one statement again, at the new epoch

        crm_db.execute_sql("UPDATE sharing_defaults SET access = 'private' WHERE entity = 'leads'")
        crm_db.execute_sql("UPDATE users SET role_id = 3 WHERE id = 2")  # the seller moves under nobody
        for user_id, own in ((MANAGER, 100), (SELLER, 97)):
            sent, result = _statements(conn, "leads", user_id=user_id)
            assert result.total == own, user_id  # each reads only their own now
            _same_as_live(result, user_id)
        crm_db.execute_sql("UPDATE users SET is_active = false WHERE id = 3")
        assert _statements(conn, "leads", user_id=PEER)[1].total == 0
    finally:
        conn.close()


def test_a_search_in_the_callers_transaction_sees_its_own_sharing_change(crm_db):
    _org(crm_db)
    precompute_facets.run()
    conn = _counting_connection(crm_db)
    OVERLAYS.clear()
    try:
        _statements(conn, "leads", user_id=SELLER)
        _statements(conn, "leads", user_id=SELLER)
        assert _statements(conn, "leads", user_id=SELLER)[1].total == 100
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("UPDATE sharing_defaults SET access = 'public_read' WHERE entity = 'leads'")  # not committed
        assert _statements(conn, "leads", user_id=SELLER)[1].total == 300
        conn.rollback()
        conn.autocommit = True
        assert _statements(conn, "leads", user_id=SELLER)[1].total == 100
    finally:
        conn.close()
