"""A search reads what changed since this process last looked (the overlay), in one statement when nothing did.

Checked against the real PostgreSQL: the number of statements a search
sends, exact counts and pages (an independent SQL oracle, and the live
answer's page) after inserts, updates and deletes between searches and
across generation switches, the memory bound, a caller's older snapshot,
and threads searching while a writer commits.
"""

from __future__ import annotations

import threading

import psycopg2
import psycopg2.extensions
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from crmtasks.jobs import precompute_facets
from crmtasks.pg import db
from crmtasks.search import overlay as overlay_module
from crmtasks.search.facets import ENTITIES
from crmtasks.search.overlay import OVERLAYS, Overflow, Overlay
from crmtasks.search.query import faceted_search
from tests.integration.test_search_facets import dataset, load
from tests.integration.test_search_index import apply_changes, changes, oracle, search_shape


class CountingCursor(psycopg2.extensions.cursor):
    """Counts the statements sent (one ``execute`` is one round trip)."""

    sent = 0

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's name
        CountingCursor.sent += 1
        return super().execute(query, vars)


def _counting_connection(database):
    conn = psycopg2.connect(database.connection().dsn, cursor_factory=CountingCursor)
    conn.autocommit = True
    return conn


def _statements(conn, *args, **kwargs):
    CountingCursor.sent = 0
    result = faceted_search(*args, connection=conn, **kwargs)
    return CountingCursor.sent, result


def _leads(database, count):
    load(database, {"accounts": [], "contacts": [], "deals": [], "leads": []})
    database.execute_sql("INSERT INTO leads (name, status, owner_id, industry) SELECT 'L' || i, "
                         "(ARRAY['new', 'won', 'lost'])[1 + i %% 3], 1 + i %% 2, 'Retail' FROM generate_series(1, %s) i",
                         (count,))


def test_a_search_with_nothing_changed_since_the_last_sends_one_statement(crm_db):
    _leads(crm_db, 300)
    precompute_facets.run()
    conn = _counting_connection(crm_db)
    OVERLAYS.clear()  # no overlay of an earlier test's generation: the first search finds none to try
    try:
        first, _ = _statements(conn, "leads", {"status": "won"})  # this process's first look since the generation
        preparing, _ = _statements(conn, "leads", {"status": "won"})  # its page statement, once per connection
        again, result = _statements(conn, "leads", {"status": "won"})
        assert (first > 1, preparing, again) == (True, 2, 1)
        live = faceted_search("leads", {"status": "won"}, allow_precomputed=False)
        assert (result.source, result.total, result.facets, result.records) == (
            "precomputed", live.total, live.facets, live.records)
        crm_db.execute_sql("UPDATE leads SET status = 'won' WHERE id IN (2, 3)")  # since the last look: read them
        changed, result = _statements(conn, "leads", {"status": "won"})
        assert changed > 1 and result.total == 102
        assert _statements(conn, "leads", {"status": "won"})[0] == 1  # and then one statement again
        _statements(conn, "leads", {"owner": 2}, q="L29")  # the server's lower() is read once per process
        assert _statements(conn, "leads", {"owner": 2}, order_by="name")[0] == 2  # another order: prepared once
        assert _statements(conn, "leads", {"owner": 2}, order_by="name")[0] == 1
        assert _statements(conn, "leads", {"owner": 2}, q="L29")[0] == 1  # then text takes one statement too
    finally:
        conn.close()


def test_a_search_reads_only_the_changes_since_this_process_last_looked(crm_db):
    _leads(crm_db, 300)
    precompute_facets.run()
    crm_db.execute_sql("UPDATE leads SET status = 'lost' WHERE id <= 50")
    faceted_search("leads")
    held = OVERLAYS.get("leads")
    assert isinstance(held, Overlay) and len(held.changed) == 50
    crm_db.execute_sql("UPDATE leads SET status = 'won' WHERE id IN (60, 61)")
    crm_db.execute_sql("DELETE FROM leads WHERE id = 3")
    crm_db.execute_sql("INSERT INTO leads (name, status) VALUES ('new one', 'won')")
    result = faceted_search("leads")
    advanced = OVERLAYS.get("leads")
    assert len(advanced.segments[-1].index) == 3  # one layer: the rows of 60, 61 and the new lead, not the 50 again
    assert len(advanced.changed) == 53  # 1..50 (3 among them), 60, 61, 301
    live = faceted_search("leads", allow_precomputed=False)
    assert (result.total, result.facets, result.records) == (live.total, live.facets, live.records)


def _check(database, shapes):
    """Every entity's search equals the SQL oracle (counts) and the live answer (counts and page)."""
    with database.connection().cursor() as cur:
        for entity, (facet_filters, ranges, q, _) in zip(ENTITIES, shapes):
            filters = {**facet_filters, **ranges}
            for order_by in (None, "name"):
                result = faceted_search(entity, filters, q=q, order_by=order_by, per_page=5, page=2)
                live = faceted_search(entity, filters, q=q, order_by=order_by, per_page=5, page=2,
                                      allow_precomputed=False)
                cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                total, facets = oracle(cur, entity, filters, q)
                cur.execute("COMMIT")
                expected = {field: {(None if value is None else str(value)): n for value, n in buckets.items()}
                            for field, buckets in facets.items()}
                decoded = {field: {(None if value is None else str(value)): n for value, n in buckets.items()}
                           for field, buckets in result.facets.items()}
                assert (result.source, result.total, decoded) == ("precomputed", total, expected), (entity, filters, q)
                assert (result.facets, result.records) == (live.facets, live.records), (entity, filters, q, order_by)


@hypothesis_settings(max_examples=25, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=dataset(), rounds=st.lists(st.tuples(changes(), st.sampled_from([None, "delta", "full"])),
                                       min_size=2, max_size=4),
       shapes=st.lists(st.tuples(*(search_shape(entity) for entity in ENTITIES)), min_size=4, max_size=4))
def test_the_overlay_is_exact_between_searches_and_across_generations(crm_db, data, rounds, shapes):
    load(crm_db, data)
    precompute_facets.run()
    _check(crm_db, shapes[0])
    for (edits, build), shape in zip(rounds, shapes[1:] * 2):
        apply_changes(crm_db, edits)
        if build == "delta":
            precompute_facets.run()
        elif build == "full":
            from crmtasks.search.precompute import precompute  # noqa: PLC0415 - the job's function, for full=True
            precompute(crm_db.connection(), full=True)
        _check(crm_db, shape)  # the first search advances the overlay (or starts the new generation's) ...
        _check(crm_db, shape)  # ... the next ones find nothing new: one statement each


def test_past_the_bound_the_process_keeps_no_overlay_until_the_next_generation(crm_db, monkeypatch):
    _leads(crm_db, 100)
    precompute_facets.run()
    monkeypatch.setattr(overlay_module, "MAX_CHANGED_ROWS", 5)
    crm_db.execute_sql("UPDATE leads SET status = 'lost' WHERE id <= 10")
    result = faceted_search("leads", {"status": "lost"})
    assert isinstance(OVERLAYS.get("leads"), Overflow)
    assert (result.source, result.total) == ("precomputed", faceted_search("leads", {"status": "lost"},
                                                                             allow_precomputed=False).total)
    crm_db.execute_sql("UPDATE leads SET status = 'won' WHERE id = 1")
    assert faceted_search("leads", {"status": "lost"}).total == faceted_search(
        "leads", {"status": "lost"}, allow_precomputed=False).total
    precompute_facets.run()
    assert faceted_search("leads", {"status": "lost"}).total == faceted_search(
        "leads", {"status": "lost"}, allow_precomputed=False).total
    assert isinstance(OVERLAYS.get("leads"), Overlay)


def test_a_callers_older_snapshot_is_not_answered_from_a_newer_overlay(crm_db):
    _leads(crm_db, 30)
    precompute_facets.run()
    before = faceted_search("leads", {"status": "won"}).total
    conn = psycopg2.connect(crm_db.connection().dsn)
    conn.autocommit = True  # BEGIN below is the caller's own
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT 1")  # the caller's snapshot, taken now
            crm_db.execute_sql("UPDATE leads SET status = 'won' WHERE status <> 'won'")
            assert faceted_search("leads", {"status": "won"}).total == 30  # the overlay moves past the caller
            result = faceted_search("leads", {"status": "won"}, connection=conn)
            assert (result.source, result.total) == ("precomputed", before)  # the caller's own snapshot
            assert len(result.records) == min(25, before)
            cur.execute("COMMIT")
    finally:
        conn.close()
    assert faceted_search("leads", {"status": "won"}).total == 30


def test_threads_searching_while_a_writer_commits_see_whole_states(crm_db):
    _leads(crm_db, 60)
    precompute_facets.run()
    conn = crm_db.connection()
    states, reads, failures = [], [], []
    stop = threading.Event()

    def write(number):
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO leads (name, status, owner_id) VALUES ('w', 'new', 1)")
            cur.execute("UPDATE leads SET status = %s WHERE id %% 7 = %s", (f"s{number}", number % 7))
            cur.execute("DELETE FROM leads WHERE id = (SELECT min(id) FROM leads)")
            cur.execute("SELECT status, count(*) FROM leads WHERE owner_id = 1 GROUP BY 1")
            states.append(dict(cur.fetchall()))
            cur.execute("COMMIT")

    write(0)

    def read():
        try:
            while not stop.is_set():
                result = faceted_search("leads", {"owner": 1})
                ids = [record["id"] for record in result.records]
                reads.append((result.source, result.facets["status"], ids == sorted(ids, reverse=True)))
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)
        finally:
            db.release_connection()

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    for number in range(1, 25):
        write(number)
        if number % 8 == 0:
            precompute_facets.run()
    stop.set()
    for reader in readers:
        reader.join(timeout=30)
    assert not failures, failures
    assert reads
    for source, status, ordered in reads:
        assert source == "precomputed" and status in states and ordered  # one whole state, never a mix


def test_rows_changed_again_and_folded_layers_stay_exact(crm_db):
    _leads(crm_db, 200)
    precompute_facets.run()
    for step in range(14):
        crm_db.execute_sql("UPDATE leads SET status = %s WHERE id %% 10 = %s OR id <= %s", (f"s{step}", step % 10, step))
        crm_db.execute_sql("DELETE FROM leads WHERE id = (SELECT max(id) FROM leads)")
        crm_db.execute_sql("INSERT INTO leads (name, status, owner_id) VALUES ('n', %s, 1)", (f"s{step}",))
        result = faceted_search("leads", per_page=100)
        live = faceted_search("leads", per_page=100, allow_precomputed=False)
        assert (result.total, result.facets, result.records) == (live.total, live.facets, live.records), step
    held = OVERLAYS.get("leads")
    assert 2 <= len(held.segments) <= 1 + overlay_module.MAX_LAYERS  # folded as it went
