"""Search facets against the real PostgreSQL: exact counts, atomic publishing, idempotent runs, bad input.

The oracle for counts is plain Python over the rows the test inserted (an
independent GROUP BY): it shares no code with the SQL built from the registry.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import json
import operator
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from crmtasks.jobs import precompute_facets, registry
from crmtasks.pg import db
from crmtasks.runs import runner
from crmtasks.search.facets import ENTITIES
from crmtasks.search.query import faceted_search
from crmtasks.settings import get_settings

USERS = (1, 2, 3)
CRM_TABLES = ("roles, users, accounts, contacts, leads, deals, task_runs, search_changes, search_index_current, "
              "search_index_parts, search_index_generations")

# Small domains so values collide and every bucket, NULL included, gets several records.
NAMES = ["Acme", "ACME Corp", "O'Brien", "zoë café", "50%_off", "back\\slash", "Globex", None]
DOMAINS = {
    "status": ["new", "won", "lost"],
    "industry": [None, "Tech", "Retail", "tech"],
    "source": [None, "web", "event"],
    "rating": [None, "hot", "cold"],
    "owner": [None, *USERS],
    "stage": ["open", "won", "lost"],
    "region": [None, "EU", "US"],
    "lead_source": [None, "web", "partner"],
}
AMOUNTS = [None, decimal.Decimal(-5), decimal.Decimal(0), decimal.Decimal("999.99"), decimal.Decimal(1000),
           decimal.Decimal("9999.99"), decimal.Decimal(10000), decimal.Decimal(50000), decimal.Decimal("99999.99"),
           decimal.Decimal(100000), decimal.Decimal(500000), decimal.Decimal("1234567.89")]
BANDS = [(decimal.Decimal(1_000), "under 1k"), (decimal.Decimal(10_000), "1k-10k"), (decimal.Decimal(50_000), "10k-50k"),
         (decimal.Decimal(100_000), "50k-100k"), (decimal.Decimal(500_000), "100k-500k")]
QUERIES = [None, "acme", "o'brien", "café", "50%_", "h\\s", "zzz"]


# ---------------------------------------------------------------- the oracle

def quarter_of(day):
    return None if day is None else f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def band_of(amount):
    if amount is None:
        return None
    for upper, label in BANDS:
        if amount < upper:
            return label
    return "500k+"


def facet_values(entity, row, accounts):
    """The facet buckets of one inserted row, written out by hand for the oracle."""
    if entity == "leads":
        return {f: row[f] for f in ("status", "industry", "source", "rating", "owner")}
    if entity == "deals":
        return {"stage": row["stage"], "owner": row["owner"], "close_quarter": quarter_of(row["close_date"]),
                "amount_band": band_of(row["amount"])}
    if entity == "accounts":
        return {f: row[f] for f in ("industry", "region", "owner")}
    account = accounts[row["account"] - 1] if row["account"] else None
    return {"lead_source": row["lead_source"], "owner": row["owner"],
            "account_industry": account["industry"] if account else None}


TEXT_COLUMNS = {"leads": ("name", "company", "email"), "deals": ("name",), "accounts": ("name",),
                "contacts": ("name", "email")}


def matches(entity, row, buckets, filters, q):
    for field, wanted in filters.items():
        if field == "amount":
            if not _in_range(row["amount"], wanted):
                return False
        elif field == "close_date":
            if not _in_range(row["close_date"], wanted):
                return False
        else:
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if buckets[field] not in allowed:
                return False
    if q is not None:
        return any(row[column] is not None and q.lower() in row[column].lower() for column in TEXT_COLUMNS[entity])
    return True


def _in_range(value, bounds):
    comparisons = {"gte": operator.ge, "gt": operator.gt, "lte": operator.le, "lt": operator.lt}
    return value is not None and all(comparisons[op](value, bound) for op, bound in bounds.items())


def expected_search(entity, data, filters, q):
    """(ids of matching records, newest first; facets as {field: {value: count}}) by counting in Python."""
    matching = []
    counts = {facet.name: collections.Counter() for facet in ENTITIES[entity].facets}
    for row_id, row in enumerate(data[entity], start=1):
        buckets = facet_values(entity, row, data["accounts"])
        if matches(entity, row, buckets, filters, q):
            matching.append(row_id)
            for field, value in buckets.items():
                counts[field][value] += 1
    return sorted(matching, reverse=True), {field: dict(counter) for field, counter in counts.items()}


# ---------------------------------------------------------------- data

def rows(**fields):
    return st.lists(st.fixed_dictionaries(fields), max_size=14)


def owner():
    return st.sampled_from(DOMAINS["owner"])


def dataset():
    name = st.sampled_from(NAMES)
    return st.fixed_dictionaries({
        "accounts": rows(name=name.map(lambda n: n or "unnamed"), industry=st.sampled_from(DOMAINS["industry"]),
                         region=st.sampled_from(DOMAINS["region"]), owner=owner()),
    }).flatmap(lambda partial: st.fixed_dictionaries({
        "accounts": st.just(partial["accounts"]),
        "contacts": rows(name=name.map(lambda n: n or "unnamed"), email=name,
                         account=st.sampled_from([None, *range(1, len(partial["accounts"]) + 1)]),
                         owner=owner(), lead_source=st.sampled_from(DOMAINS["lead_source"])),
        "leads": rows(name=name.map(lambda n: n or "unnamed"), company=name, email=name,
                      status=st.sampled_from(DOMAINS["status"]), industry=st.sampled_from(DOMAINS["industry"]),
                      source=st.sampled_from(DOMAINS["source"]), rating=st.sampled_from(DOMAINS["rating"]),
                      owner=owner()),
        "deals": rows(name=name.map(lambda n: n or "unnamed"), owner=owner(), stage=st.sampled_from(DOMAINS["stage"]),
                      amount=st.sampled_from(AMOUNTS),
                      close_date=st.one_of(st.none(), st.dates(datetime.date(2023, 12, 25), datetime.date(2025, 1, 5)))),
    }))


def load(database, data):
    """Replace the CRM's records with ``data`` (ids 1..n in list order)."""
    conn = database.connection()
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE {CRM_TABLES} RESTART IDENTITY CASCADE")
        for user in USERS:
            cur.execute("INSERT INTO users (username, full_name) VALUES (%s, %s)", (f"user{user}", f"User {user}"))
        for row in data["accounts"]:
            cur.execute("INSERT INTO accounts (name, industry, region, owner_id) VALUES (%s, %s, %s, %s)",
                        (row["name"], row["industry"], row["region"], row["owner"]))
        for row in data["contacts"]:
            cur.execute("INSERT INTO contacts (name, email, account_id, owner_id, lead_source) VALUES (%s, %s, %s, %s, %s)",
                        (row["name"], row["email"], row["account"], row["owner"], row["lead_source"]))
        for row in data["leads"]:
            cur.execute("INSERT INTO leads (name, company, email, status, industry, source, rating, owner_id) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (row["name"], row["company"], row["email"], row["status"], row["industry"], row["source"],
                         row["rating"], row["owner"]))
        for row in data["deals"]:
            cur.execute("INSERT INTO deals (name, owner_id, stage, amount, close_date) VALUES (%s, %s, %s, %s, %s)",
                        (row["name"], row["owner"], row["stage"], row["amount"], row["close_date"]))


def search_spec(entity):
    """Random filters (0-2 facet fields, a value, NULL or a list; deals also ranges) and maybe a text query."""
    facet_names = ENTITIES[entity].facet_names

    def value_of(field):
        if field == "close_quarter":
            domain = [None, "2023-Q4", "2024-Q1", "2024-Q2", "2024-Q4", "2025-Q1", "1999-Q1"]
        elif field == "amount_band":
            domain = [None, "under 1k", "1k-10k", "10k-50k", "50k-100k", "100k-500k", "500k+"]
        elif field == "account_industry":
            domain = DOMAINS["industry"] + ["Mining"]
        else:
            domain = DOMAINS[field] + ["absent"] if field != "owner" else DOMAINS["owner"] + [99]
        one = st.sampled_from(domain)
        return st.one_of(one, st.lists(one, min_size=1, max_size=3))

    facet_filters = st.lists(st.sampled_from(facet_names), max_size=2, unique=True).flatmap(
        lambda fields: st.fixed_dictionaries({field: value_of(field) for field in fields}))
    ranges = st.just({})
    if entity == "deals":
        bound = st.sampled_from(AMOUNTS[1:])
        ranges = st.fixed_dictionaries({}, optional={
            "amount": st.fixed_dictionaries({}, optional={"gte": bound, "lt": bound}).filter(bool),
            "close_date": st.fixed_dictionaries({}, optional={
                "gte": st.dates(datetime.date(2024, 1, 1), datetime.date(2024, 12, 31)),
                "lte": st.dates(datetime.date(2024, 1, 1), datetime.date(2024, 12, 31))}).filter(bool),
        })
    return st.tuples(facet_filters, ranges, st.sampled_from(QUERIES), st.integers(1, 3), st.integers(1, 4))


# ---------------------------------------------------------------- tests

@hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])
@given(data=dataset(), specs=st.tuples(*(search_spec(entity) for entity in ENTITIES)))
def test_facets_equal_an_independent_group_by(crm_db, data, specs):
    load(crm_db, data)
    stats = precompute_facets.run()
    assert stats["rows_scanned"] == sum(len(data[entity]) for entity in ENTITIES)
    for entity, (facet_filters, ranges, q, page, per_page) in zip(ENTITIES, specs):
        filters = {**facet_filters, **ranges}
        expected_ids, expected_facets = expected_search(entity, data, filters, q)
        for allow_precomputed in (True, False):
            result = faceted_search(entity, filters, q=q, page=page, per_page=per_page,
                                    allow_precomputed=allow_precomputed)
            context = f"{entity} filters={filters} q={q!r} precomputed allowed={allow_precomputed}"
            assert result.facets == expected_facets, context
            assert result.total == len(expected_ids), context
            assert [record["id"] for record in result.records] == \
                expected_ids[(page - 1) * per_page: page * per_page], context
            if allow_precomputed:  # text q too: from the index (crmtasks.search.text_filter)
                assert result.source == "precomputed", context
            else:
                assert result.source == "live", context


def test_no_published_counts_means_a_live_answer(crm_db):
    load(crm_db, {"accounts": [], "contacts": [], "deals": [],
                  "leads": [dict(name="A", company=None, email=None, status="new", industry=None, source=None,
                                 rating=None, owner=1)]})
    result = faceted_search("leads")
    assert result.source == "live" and result.total == 1
    assert result.facets == {"status": {"new": 1}, "industry": {None: 1}, "source": {None: 1}, "rating": {None: 1},
                             "owner": {1: 1}}


def test_counts_are_exact_at_the_moment_of_the_search_between_runs(crm_db):
    lead = dict(name="A", company=None, email=None, status="new", industry=None, source=None, rating=None, owner=1)
    load(crm_db, {"accounts": [], "contacts": [], "deals": [], "leads": [lead, lead]})
    precompute_facets.run()
    crm_db.execute_sql("INSERT INTO leads (name, status, owner_id) VALUES ('B', 'won', 2)")
    crm_db.execute_sql("UPDATE leads SET status = 'lost' WHERE id = 1")
    between = faceted_search("leads")
    assert (between.source, between.total, between.facets["status"]) == ("precomputed", 3,
                                                                         {"new": 1, "won": 1, "lost": 1})
    assert [record["name"] for record in between.records] == ["B", "A", "A"]  # the page, same snapshot
    live = faceted_search("leads", allow_precomputed=False)
    assert (live.total, live.facets) == (between.total, between.facets)
    assert live.as_of > between.as_of
    crm_db.execute_sql("DELETE FROM leads WHERE id = 2")
    after_delete = faceted_search("leads", {"status": ["new", "lost"], "owner": 1})
    assert (after_delete.total, after_delete.facets["status"]) == (1, {"lost": 1})


def _facet_table_state(cur):
    cur.execute("SELECT generation_id, count(*) FROM search_index_parts GROUP BY 1 ORDER BY 1")
    per_generation = cur.fetchall()
    cur.execute("SELECT id FROM search_index_generations ORDER BY 1")
    generations = [row[0] for row in cur.fetchall()]
    cur.execute("SELECT generation_id FROM search_index_current")
    current = [row[0] for row in cur.fetchall()]
    return per_generation, generations, current


def test_rerunning_is_idempotent_and_leaves_one_generation(crm_db):
    lead = dict(name="A", company="C", email=None, status="new", industry="Tech", source="web", rating=None, owner=2)
    load(crm_db, {"accounts": [dict(name="X", industry="Tech", region=None, owner=1)],
                  "contacts": [dict(name="N", email=None, account=1, owner=None, lead_source="web")],
                  "deals": [dict(name="D", owner=1, stage="open", amount=decimal.Decimal(5), close_date=None)],
                  "leads": [lead, {**lead, "status": "won"}]})
    first = precompute_facets.run()
    answers = {entity: faceted_search(entity).facets for entity in ENTITIES}
    with crm_db.connection().cursor() as cur:
        _, generations, current = _facet_table_state(cur)
        assert generations == current == [first["generation"]]
        threads = [threading.Thread(target=lambda: (precompute_facets.run(), db.release_connection()))
                   for _ in range(3)]
        for thread in threads:  # concurrent runs queue on the publish lock; each still publishes whole
            thread.start()
        second = precompute_facets.run()
        for thread in threads:
            thread.join(timeout=60)
        per_generation, generations, current = _facet_table_state(cur)
    # nothing changed: each later run is an empty delta on the first base; only the base and the newest remain
    assert generations == [first["generation"], current[0]] and [g for g, _ in per_generation] == generations
    assert second["kind"] == "delta" and second["base"] == first["generation"] and second["rows_scanned"] == 0
    assert {entity: faceted_search(entity).facets for entity in ENTITIES} == answers


def test_a_run_killed_mid_way_publishes_nothing(crm_db, database_url):
    lead = dict(name="A", company=None, email=None, status="new", industry=None, source=None, rating=None, owner=1)
    load(crm_db, {"accounts": [], "contacts": [], "deals": [], "leads": [lead]})
    before = precompute_facets.run()
    crm_db.execute_sql("UPDATE leads SET status = 'won'")
    blocker = psycopg2.connect(database_url)
    with blocker.cursor() as cur:
        # the run blocks on contacts, the last entity, after writing leads, deals and accounts
        cur.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
    script = "from crmtasks.pg import db; db.bind(); from crmtasks.jobs.precompute_facets import run; run()"
    job = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ))
    try:
        backend = _wait_for_lock_wait(crm_db, job.pid)
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        blocker.rollback()
        blocker.close()
    _wait_for_backend_gone(crm_db, backend)
    with crm_db.connection().cursor() as cur:
        per_generation, generations, current = _facet_table_state(cur)
    assert current == generations == [before["generation"]] and [g for g, _ in per_generation] == current
    # the change log kept the update: the search merges it at read time
    assert faceted_search("leads").facets["status"] == {"won": 1}
    with crm_db.connection().cursor() as cur:
        cur.execute("SELECT count(*) FROM search_changes")
        assert cur.fetchone()[0] == 1
    after = precompute_facets.run()  # the advisory lock died with the session
    assert after["generation"] > before["generation"] and after["rows_scanned"] == 1
    assert faceted_search("leads").facets["status"] == {"won": 1}


def _wait_for_lock_wait(database, pid, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cursor = database.execute_sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            (f"crmtasks[{pid}]",))
        row = cursor.fetchone()
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError("the run never reached the locked table")


def _wait_for_backend_gone(database, backend, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not database.execute_sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone():
            return
        time.sleep(0.05)
    raise AssertionError("the killed run's session did not end")


@pytest.mark.parametrize("filters, expected_total", [
    ({"status": "new' OR '1'='1"}, 0),
    ({"status": ["x'); DROP TABLE leads; --", "new"]}, 1),
    ({"industry": "\\'; SELECT pg_sleep(10); --"}, 0),
])
def test_injection_in_values_is_data_never_sql(crm_db, filters, expected_total):
    lead = dict(name="A", company=None, email=None, status="new", industry=None, source=None, rating=None, owner=1)
    load(crm_db, {"accounts": [], "contacts": [], "deals": [], "leads": [lead]})
    precompute_facets.run()
    for allow_precomputed in (True, False):
        result = faceted_search("leads", filters, allow_precomputed=allow_precomputed)
        assert result.total == expected_total
    result = faceted_search("leads", {**filters, "owner": 1}, q="'; DROP TABLE leads; --")
    assert result.total == 0 and result.source == "precomputed"
    assert crm_db.execute_sql("SELECT count(*) FROM leads").fetchone()[0] == 1


def test_bad_input_is_refused_before_any_database_work(crm_db, monkeypatch):
    from crmtasks.search import query as search

    def no_database(*args, **kwargs):
        raise AssertionError("bad input reached the database layer")

    monkeypatch.setattr(search.db, "bind", no_database)
    for arguments, message in [(("opportunities",), "unknown entity"), (("leads", {"colour": "red"}), "no filter field"),
                               (("leads", {"owner": "7"}), "expected a user id"),
                               (("leads", {"owner": list(range(101))}), "at most 100 values"),
                               (("leads", {"status; DROP TABLE leads": "x"}), "no filter field")]:
        with pytest.raises(ValueError, match=message):
            faceted_search(*arguments)


def test_text_search_uses_the_trigram_indexes(crm_db):
    from crmtasks.search import sql as facet_sql
    from crmtasks.search.request import build_request

    conn = crm_db.connection()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SET LOCAL enable_seqscan = off")
        for entity, columns in TEXT_COLUMNS.items():
            where = facet_sql.where_clause(build_request(entity, q="acme"))
            cur.execute(psycopg2.sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE {}").format(
                ENTITIES[entity].from_sql(), where))
            plan = "\n".join(row[0] for row in cur.fetchall())
            for column in columns:
                assert f"{entity}_{column}_trgm_idx" in plan, plan
        cur.execute("ROLLBACK")


def test_cli_search_prints_the_result_as_json(crm_db):
    lead = dict(name="Acme", company=None, email=None, status="new", industry="Tech", source=None, rating=None, owner=1)
    load(crm_db, {"accounts": [], "contacts": [], "deals": [], "leads": [lead, {**lead, "owner": 2}]})
    precompute_facets.run()
    command = [sys.executable, "-m", "crmtasks", "search", "leads", "--filter", "owner=2", "--filter", "owner=3",
               "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["source"], result["total"]) == ("precomputed", 1)
    assert result["facets"]["owner"] == {"2": 1} and result["facets"]["status"] == {"new": 1}
    assert [record["owner_id"] for record in result["records"]] == [2]
    done = subprocess.run([sys.executable, "-m", "crmtasks", "search", "leads", "--filter", "owner=me"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "crmtasks: filter owner: expected a user id (int), got 'me'"
    done = subprocess.run([sys.executable, "-m", "crmtasks", "search", "leads", "--q", "acm", "--filter",
                           "created_at>=2000-01-01"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "leads: 2 records; facets precomputed" in " ".join(done.stdout.split())


def test_the_run_command_shows_what_was_computed(crm_db):
    load(crm_db, {"accounts": [], "contacts": [], "deals": [],
                  "leads": [dict(name="A", company=None, email=None, status="new", industry=None, source=None,
                                 rating=None, owner=1)]})
    outcome = runner.run_now(registry.get("precompute_facets"), get_settings())
    assert outcome.status == "succeeded", outcome.error
    recorded = crm_db.execute_sql("SELECT stats FROM task_runs WHERE id = %s", (outcome.run_id,)).fetchone()[0]
    assert recorded["rows_scanned"] == 1 and recorded["entities"]["leads"]["rows"] == 1
    assert recorded["bytes_written"] > 0 and recorded["as_of"] and recorded["kind"] == "full"
    assert isinstance(recorded["duration_s"], float)
    done = subprocess.run([sys.executable, "-m", "crmtasks.run", "--task", "precompute_facets", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (printed,) = json.loads(done.stdout)
    assert printed["status"] == "succeeded" and printed["stats"]["kind"] == "delta"


def test_search_timeout_applies_and_leaves_the_pooled_connection_clean(crm_db, monkeypatch):
    import dataclasses

    from crmtasks.search import query as search

    load(crm_db, {"accounts": [], "contacts": [], "deals": [], "leads": []})
    crm_db.execute_sql("INSERT INTO leads (name, status, owner_id) "
                       "SELECT 'L' || i, 'new', 1 + mod(i, 3) FROM generate_series(1, 30000) i")
    precompute_facets.run()
    conn = crm_db.connection()
    for allow_precomputed in (True, False):
        assert faceted_search("leads", allow_precomputed=allow_precomputed).total == 30_000
        assert crm_db.execute_sql("SELECT current_setting('statement_timeout')").fetchone()[0] == "0"
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    hurried = dataclasses.replace(get_settings(), search_timeout_ms=1)
    monkeypatch.setattr(search, "get_settings", lambda: hurried)
    with pytest.raises(psycopg2.errors.QueryCanceled):
        faceted_search("leads", allow_precomputed=False)  # counting 30,000 rows live takes more than 1 ms
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    monkeypatch.undo()
    assert faceted_search("leads", {"owner": 1}).total == 10_000


def test_search_inside_a_callers_transaction_uses_it(crm_db):
    load(crm_db, {"accounts": [], "contacts": [], "deals": [], "leads": []})
    with crm_db.atomic() as transaction:
        crm_db.execute_sql("INSERT INTO leads (name, status) VALUES ('uncommitted', 'new')")
        result = faceted_search("leads")
        assert (result.source, result.total) == ("live", 1)  # sees the caller's own uncommitted row
        transaction.rollback()
    assert faceted_search("leads").total == 0
