"""Text ``q`` from memory equals PostgreSQL's ILIKE: the case map, the trigram index, the scan, and faceted_search.

Random leads (mixed case, accents, ß, Turkish İ, Greek Σ, the Kelvin sign, ``%``, ``_``,
backslash, tabs and newlines) are written to the real server; every in-memory answer is
compared with ``ILIKE '%' || like_escape(q) || '%'`` run by that server.
"""

from __future__ import annotations

import psycopg2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crmtasks.search import text_filter as text_filter_module
from crmtasks.search.coded_text import CodedText
from crmtasks.search.facets import get_entity
from crmtasks.search.index_cache import CACHE
from crmtasks.search.index_read import read_index
from crmtasks.search.precompute import precompute
from crmtasks.search.query import faceted_search
from crmtasks.search.request import build_request
from crmtasks.search.sql import like_escape
from crmtasks.search.text_case import ServerLower, lower_is_per_code_point
from crmtasks.search.text_index import TextIndex, scanned_positions

LEADS = get_entity("leads")
ALPHABET = "aAbBsSzZiIıİkKK%_\\ ßẞσΣςéÉèÈåÅøØæÆœŒǅǄǆ.@-\t\n"
texts = st.text(alphabet=ALPHABET, max_size=12)
queries = st.text(alphabet=ALPHABET.replace("\t", "").replace("\n", ""), min_size=3, max_size=5).filter(
    lambda q: q.strip() == q and len(q) >= 3)
rows = st.lists(st.tuples(st.none() | texts, st.none() | texts, st.none() | texts), min_size=0, max_size=25)


def _write_leads(url: str, leads) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE leads RESTART IDENTITY CASCADE")
        cur.executemany("INSERT INTO leads (name, company, email, status) VALUES (%s, %s, %s, 'New')",
                        [(name or "", company, email) for name, company, email in leads])


def _ilike_ids(cur, q: str) -> set[int]:
    pattern = "%" + like_escape(q) + "%"
    cur.execute("SELECT id FROM leads WHERE name ILIKE %s OR company ILIKE %s OR email ILIKE %s",
                (pattern, pattern, pattern))
    return {row[0] for row in cur.fetchall()}


@pytest.fixture()
def conn(crm_db, migrated_database_url):
    connection = psycopg2.connect(migrated_database_url)
    connection.autocommit = True  # no transaction left open to block the next example's TRUNCATE
    yield connection
    connection.close()


def test_lowering_as_the_server_does_where_python_does_not(conn):
    text = "İSTANBUL ΣΑΣ Straße KELVIN ǄǅǆẞÅ"
    lowering = ServerLower()
    with conn.cursor() as cur:
        assert lower_is_per_code_point(cur)  # this server: UTF8 and a libc collation
        cur.execute("SELECT lower(%s)", (text,))
        server = cur.fetchone()[0]
        assert lowering.lower(cur, text) == server
        assert lowering.lower(cur, text) == lowering.lower(None, text)  # learnt: no second round trip
    assert lowering.lower(None, text) != text.lower()  # Python lowers İ to two code points and a final Σ to ς


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(leads=rows, searches=st.lists(queries, min_size=1, max_size=6))
# Every trigram of the q in the value, but not the q itself; a q across the first "@"; one inside
# the part after it; three bytes of one Kelvin sign lowered to "k".
@example(leads=[("abzb bza", "ab@ba@zz", "zb@@ab")], searches=["abza", "b@ba", "ba@z", "a@zz", "@@a", "b@@"])
@example(leads=[("\u212a\u212a", "İsa", None), ("kk", "isa", "ISA")], searches=["kkk", "\u212ak", "i̇sa", "isa"])
def test_trigram_index_and_scan_equal_ilike(conn, migrated_database_url, leads, searches):
    _write_leads(migrated_database_url, leads)
    with conn.cursor() as cur:
        lowering = ServerLower()
        index = read_index(cur, LEADS)
        trigrams = TextIndex.build(index)
        for q in searches:
            needle = lowering.lower(cur, q).encode()
            expected = _ilike_ids(cur, q)
            assert set(index.ids[list(trigrams.positions(needle))].tolist()) == expected, q
            assert set(index.ids[list(scanned_positions(index, needle))].tolist()) == expected, q


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(leads=rows, changes=rows, searches=st.lists(queries | st.sampled_from(["ßẞ%", "İs_", "\\%_"]),
                                                    min_size=1, max_size=3))
# Python's lower() differs from the server's here: İ (two code points in Python), a final Σ (ς in Python).
@example(leads=[("isa", "ασ.", None)], changes=[], searches=["İsa", "ΑΣ."])
@example(leads=[(f"Ab%c {i}", None, None) for i in range(14)], changes=[("ab%C", None, None)] * 4, searches=["ab%c"])
# Across the first space of a name or company (the base's text is split there), and after it.
@example(leads=[("Ab Cd", "X Yz W", "p q@r s"), ("abc", "x  yz", None)], changes=[], searches=["b c", "x y", "yz w", "q@r s"])
def test_faceted_search_with_q_equals_live_sql_before_and_after_changes(conn, migrated_database_url, monkeypatch,
                                                                        leads, changes, searches):
    monkeypatch.setattr(text_filter_module, "SCAN_BELOW_ROWS", 1)  # the base goes through the trigram index
    _write_leads(migrated_database_url, leads)
    precompute(conn, full=True)
    with psycopg2.connect(migrated_database_url) as writer, writer.cursor() as cur:
        cur.executemany("INSERT INTO leads (name, company, email, status) VALUES (%s, %s, %s, 'Working')",
                        [(name or "", company, email) for name, company, email in changes])
        cur.execute("UPDATE leads SET company = upper(coalesce(company, 'İSΣ')) WHERE id % 3 = 0")
        cur.execute("DELETE FROM leads WHERE id % 5 = 0")
    for q in searches:
        build_request("leads", q=q)  # what the search sees is the checked q
        indexed = faceted_search("leads", q=q, per_page=100)
        live = faceted_search("leads", q=q, per_page=100, allow_precomputed=False)
        assert indexed.source == "precomputed" and live.source == "live"
        assert (indexed.total, indexed.facets) == (live.total, live.facets), q
        assert [r["id"] for r in indexed.records] == [r["id"] for r in live.records]
        for page, per_page, order_by in ((2, 3, None), (3, 2, "id"), (2, 4, "-name")):  # pages past the first
            paged = faceted_search("leads", q=q, page=page, per_page=per_page, order_by=order_by)
            live_page = faceted_search("leads", q=q, page=page, per_page=per_page, order_by=order_by,
                                       allow_precomputed=False)
            assert [r["id"] for r in paged.records] == [r["id"] for r in live_page.records], (q, page, order_by)
        with conn.cursor() as cur:
            assert indexed.total == len(_ilike_ids(cur, q))
    base = CACHE._loaded["leads"].base  # the answers above came from the base as a searching process holds it
    assert all(isinstance(text, CodedText) for text in base.texts.values())



def test_a_text_column_with_a_collation_of_its_own_keeps_text_search_live(conn, migrated_database_url):
    _write_leads(migrated_database_url, [("Ann Lee", "İSA Labs", "ann@isa.example"), ("Bo", None, None)])
    precompute(conn, full=True)
    text_filter_module.STATE.clear()  # the collation is checked once per process and entity
    with conn.cursor() as cur:
        cur.execute('ALTER TABLE leads ALTER COLUMN company TYPE text COLLATE "C"')  # lower() is ASCII-only there
    try:
        result = faceted_search("leads", q="isa", per_page=100)
        assert result.source == "live"
        assert {record["id"] for record in result.records} == {1}  # found by the e-mail, as ILIKE finds it
    finally:
        with conn.cursor() as cur:
            cur.execute('ALTER TABLE leads ALTER COLUMN company TYPE text COLLATE "default"')
        text_filter_module.STATE.clear()
    assert faceted_search("leads", q="isa", per_page=100).source == "precomputed"
