"""The search suite's baseline, the best single live statement, against plain SQL over a seeded demo CRM.

The baseline is only a fair yardstick if it answers what faceted search
answers: every facet's counts, the total and the page, with the same
filters, in one statement. Checked here against one ``GROUP BY`` per facet,
a ``count(*)`` and a page query written out by hand (the oracle), on the
demo CRM, for each kind of condition the suite uses (facets, lists, NULL,
a date range, text with LIKE's wildcards, a user's visibility).
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchsuite.search import (  # noqa: E402 - scripts/ is put on the path above
    LEAD_FACET_COLUMNS,
    PAGE_SIZE,
    SURNAME_SHARE,
    best_live_statement,
    live_search,
    shapes_from_data,
)
from benchsuite.search_targets import ONE_MILLION  # noqa: E402

from crmtasks.demo import DemoSize, seed_demo  # noqa: E402

SIZE = DemoSize(users=60, accounts=300, contacts=600, leads=6_000, deals=500)
SINCE = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=120)


@pytest.fixture(scope="module")
def conn(migrated_database_url):
    connection = psycopg2.connect(migrated_database_url)
    seed_demo(connection, SIZE, 7, replace=True)
    connection.autocommit = True
    yield connection
    with connection.cursor() as cur:
        cur.execute("TRUNCATE roles, users, accounts, contacts, leads, deals RESTART IDENTITY CASCADE")
    connection.close()


def oracle(conn, condition: str, params: tuple = ()) -> tuple:
    """(total, {field: {value as text: count}}, page ids) by one GROUP BY per facet, a count and a page query."""
    with conn.cursor() as cur:
        facets = {}
        for field, column in LEAD_FACET_COLUMNS.items():
            cur.execute(f"SELECT {column}, count(*) FROM leads AS r WHERE {condition} GROUP BY 1", params)
            facets[field] = {None if value is None else str(value): count for value, count in cur.fetchall()}
        cur.execute(f"SELECT count(*) FROM leads AS r WHERE {condition}", params)
        total = cur.fetchone()[0]
        cur.execute(f"SELECT id FROM leads AS r WHERE {condition} ORDER BY id DESC LIMIT {PAGE_SIZE}", params)
        ids = [row[0] for row in cur.fetchall()]
    return total, facets, ids


CASES = [
    ({}, None, "TRUE", ()),
    ({"status": "New", "source": "Web"}, None, "status = 'New' AND source = 'Web'", ()),
    ({"industry": ["Technology", "Retail", None]}, None,
     "(industry IN ('Technology', 'Retail') OR industry IS NULL)", ()),
    ({"status": "Working", "rating": "Hot", "owner": 20}, None,
     "status = 'Working' AND rating = 'Hot' AND owner_id = 20", ()),
    ({"status": "New", "created_at": {"gte": SINCE}}, None, "status = 'New' AND created_at >= %s", (SINCE,)),
    ({}, "smith", "(name ILIKE '%%smith%%' OR company ILIKE '%%smith%%' OR email ILIKE '%%smith%%')", ()),
    ({}, "a_b%", r"(name ILIKE '%%a\_b\%%%%' OR company ILIKE '%%a\_b\%%%%' OR email ILIKE '%%a\_b\%%%%')", ()),
]


@pytest.mark.parametrize(("filters", "q", "condition", "params"), CASES)
def test_the_baseline_answers_what_plain_sql_answers(conn, filters, q, condition, params):
    answer = live_search(conn, filters, q)
    total, facets, ids = oracle(conn, condition, params)
    assert answer.key() == (total, facets)
    assert [record["id"] for record in answer.records] == ids
    assert all(set(record) >= {"id", "name", "status", "owner_id", "created_at"} for record in answer.records)


def test_as_a_user_the_baseline_keeps_the_rows_sharing_lets_them_read(conn):
    from crmtasks import sharing

    with conn.cursor() as cur:
        cur.execute("SELECT owner_id FROM leads WHERE owner_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
        user = cur.fetchone()[0]
    visible = sharing.visible(user, "leads", "r")
    answer = live_search(conn, {"status": "New"}, None, visible)
    condition = sql.SQL("status = 'New' AND ({})").format(visible).as_string(conn).replace("%", "%%")
    total, facets, ids = oracle(conn, condition)
    everyone = live_search(conn, {"status": "New"})
    assert 0 < total < everyone.total
    assert answer.key() == (total, facets) and [record["id"] for record in answer.records] == ids


def test_the_baseline_is_one_statement(conn):
    text = best_live_statement({"status": "New", "created_at": {"gte": SINCE}}, "x;y").as_string(conn)
    assert "%x;y%" in text and ";" not in text.replace("%x;y%", "")  # no ';' but inside the text literal
    assert text.count("GROUPING SETS") == 1 and "LIMIT 25" in text


def test_the_shapes_come_from_the_data(conn):
    shapes = shapes_from_data(conn, SIZE.leads)
    assert [shape.name for shape in shapes] == [
        "no filter", "one filter", "two facet filters", "three facet filters", "facet + date range",
        "text, company name", "text, surname", "as a user (visibility-filtered)"]
    assert all(shape.cases and shape.group in ONE_MILLION.p95_ms for shape in shapes)
    by_name = {shape.name: shape for shape in shapes}
    assert all(len(case[0]) == 2 for case in by_name["two facet filters"].cases)
    assert all(len(case[0]) == 3 for case in by_name["three facet filters"].cases)
    assert all(case[2] is not None for case in by_name["as a user (visibility-filtered)"].cases)
    for _, surname, _ in by_name["text, surname"].cases:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM leads WHERE split_part(name, ' ', 2) = %s", (surname,))
            share = cur.fetchone()[0] / SIZE.leads
        assert SURNAME_SHARE / 2 <= share <= SURNAME_SHARE * 2, surname
