"""The search index against the real PostgreSQL: an independent SQL GROUP BY oracle, deltas, generations.

The oracle counts with hand-written SQL (one GROUP BY per facet field, the
filters written out by hand below), sharing no code with the registry's SQL
or the index. Searches are checked right after a build, between builds
(changes merged from the change log at read time) and after a delta build.
"""

from __future__ import annotations

import datetime
import decimal
import json
import os
import subprocess
import sys
import threading

import numpy as np
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from crmtasks import sharing
from crmtasks.jobs import precompute_facets
from crmtasks.pg import db
from crmtasks.search.facets import ENTITIES
from crmtasks.search.index_cache import CACHE
from crmtasks.search.query import faceted_search
from crmtasks.search.segments import combine
from tests.integration.test_search_facets import AMOUNTS, DOMAINS, USERS, dataset, load

# The bucket key of each facet, written by hand (alias r; contacts join accounts as a).
KEYS = {
    "leads": {"status": "r.status", "industry": "r.industry", "source": "r.source", "rating": "r.rating",
              "owner": "r.owner_id"},
    "deals": {"stage": "r.stage", "owner": "r.owner_id",
              "close_quarter": "to_char(r.close_date, 'YYYY') || '-Q' || to_char(r.close_date, 'Q')",
              "amount_band": "CASE WHEN r.amount IS NULL THEN NULL WHEN r.amount < 1000 THEN 'under 1k' "
                             "WHEN r.amount < 10000 THEN '1k-10k' WHEN r.amount < 50000 THEN '10k-50k' "
                             "WHEN r.amount < 100000 THEN '50k-100k' WHEN r.amount < 500000 THEN '100k-500k' "
                             "ELSE '500k+' END"},
    "accounts": {"industry": "r.industry", "region": "r.region", "owner": "r.owner_id"},
    "contacts": {"lead_source": "r.lead_source", "owner": "r.owner_id", "account_industry": "a.industry"},
}
SOURCES = {"leads": "leads r", "deals": "deals r", "accounts": "accounts r",
           "contacts": "contacts r LEFT JOIN accounts a ON a.id = r.account_id"}
OPERATORS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}


TEXT_COLUMNS = {"leads": ("name", "company", "email"), "deals": ("name",), "accounts": ("name",),
                "contacts": ("name", "email")}
# Mixed case, accents, LIKE's wildcards and its escape character: each must match only itself.
QUERIES = [None, "acme", "ACME", "Zoë", "ZOË CAFÉ", "50%_", "%_o", "k\\s", "o'b", "lob", "unnamed"]


def oracle(cur, entity, filters, q=None, user=None):
    """(total, facets) by hand-written SQL GROUP BY; text by ILIKE, a user's rows by sharing.visible's SQL."""
    conditions, params = [], []
    if q is not None:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append("(" + " OR ".join(f"r.{column} ILIKE %s" for column in TEXT_COLUMNS[entity]) + ")")
        params += [pattern] * len(TEXT_COLUMNS[entity])
    if user is not None:
        conditions.append(sharing.visible(user, entity, "r", cursor=cur).as_string(cur).replace("%", "%%"))
    for field, wanted in filters.items():
        if field in KEYS[entity]:
            values = wanted if isinstance(wanted, list) else [wanted]
            alternatives = [f"({KEYS[entity][field]}) IS NULL" if value is None else f"({KEYS[entity][field]})::text = %s"
                            for value in values]
            params += [str(value) for value in values if value is not None]
            conditions.append("(" + " OR ".join(alternatives) + ")")
        else:
            for operator, bound in wanted.items():
                conditions.append(f"r.{field} {OPERATORS[operator]} %s")
                params.append(bound)
    where = " AND ".join(conditions) or "TRUE"
    facets = {}
    for field, key in KEYS[entity].items():
        cur.execute(f"SELECT {key}, count(*) FROM {SOURCES[entity]} WHERE {where} GROUP BY 1", params)
        facets[field] = {value: n for value, n in cur.fetchall()}
    cur.execute(f"SELECT count(*) FROM {SOURCES[entity]} WHERE {where}", params)
    return cur.fetchone()[0], facets


def value_domain(entity, field):
    if field == "close_quarter":
        return [None, "2023-Q4", "2024-Q1", "2024-Q2", "2024-Q4", "2025-Q1"]
    if field == "amount_band":
        return [None, "under 1k", "1k-10k", "10k-50k", "100k-500k", "500k+"]
    if field == "account_industry":
        return DOMAINS["industry"]
    return DOMAINS[field] + (["absent"] if field != "owner" else [99])


def search_shape(entity):
    """0 to 4 facet filters (a value, NULL or a list) and, where the entity has them, ranges."""
    names = ENTITIES[entity].facet_names

    def value_of(field):
        one = st.sampled_from(value_domain(entity, field))
        return st.one_of(one, st.lists(one, min_size=1, max_size=3, unique=True))

    facets = st.lists(st.sampled_from(names), max_size=4, unique=True).flatmap(
        lambda fields: st.fixed_dictionaries({field: value_of(field) for field in fields}))
    moments = st.datetimes(datetime.datetime(2020, 1, 1), datetime.datetime(2030, 1, 1),
                           timezones=st.just(datetime.timezone.utc))
    optional = {"created_at": st.fixed_dictionaries({}, optional={"gte": moments, "lt": moments}).filter(bool)}
    if entity == "deals":
        optional["amount"] = st.fixed_dictionaries({}, optional={"gte": st.sampled_from(AMOUNTS[1:]),
                                                                 "lte": st.sampled_from(AMOUNTS[1:])}).filter(bool)
        optional["close_date"] = st.fixed_dictionaries({}, optional={
            "gt": st.dates(datetime.date(2024, 1, 1), datetime.date(2024, 12, 31))}).filter(bool)
    return st.tuples(facets, st.fixed_dictionaries({}, optional=optional), st.sampled_from(QUERIES),
                     st.sampled_from([None, *USERS]))


def changes():
    """Random edits: (table, what, row number, value) applied by ``apply_changes``."""
    edit = st.one_of(
        st.tuples(st.just("leads"), st.sampled_from(["status", "industry", "source", "rating"]),
                  st.integers(1, 20), st.sampled_from(DOMAINS["industry"] + DOMAINS["status"])),
        st.tuples(st.just("deals"), st.just("amount"), st.integers(1, 20), st.sampled_from(AMOUNTS)),
        st.tuples(st.sampled_from(["leads", "deals", "accounts", "contacts"]), st.just("owner_id"),
                  st.integers(1, 20), st.sampled_from(DOMAINS["owner"])),
        st.tuples(st.just("accounts"), st.just("industry"), st.integers(1, 20), st.sampled_from(DOMAINS["industry"])),
        st.tuples(st.sampled_from(["leads", "deals", "contacts"]), st.just("delete"), st.integers(1, 20), st.none()),
        st.tuples(st.sampled_from(["leads", "deals"]), st.just("insert"), st.integers(1, 3),
                  st.sampled_from(DOMAINS["stage"])),
    )
    return st.lists(edit, max_size=8)


def apply_changes(database, edits):
    with database.connection().cursor() as cur:
        for table, what, number, value in edits:
            if what == "delete":
                cur.execute(f"DELETE FROM {table} WHERE id = %s", (number,))
            elif what == "insert" and table == "leads":
                cur.execute("INSERT INTO leads (name, status, owner_id, created_at) "
                            "SELECT 'New ' || i, %s, 1, now() - i * interval '400 days' FROM generate_series(1, %s) i",
                            (value, number))
            elif what == "insert":
                cur.execute("INSERT INTO deals (name, stage, amount, close_date) SELECT 'D' || i, %s, i * 3000, "
                            "DATE '2024-03-01' + i * 40 FROM generate_series(1, %s) i", (value, number))
            elif what == "status" and value is None:
                continue  # NOT NULL
            else:
                cur.execute(f"UPDATE {table} SET {what} = %s WHERE id = %s", (value, number))


def check_searches(database, shapes):
    with database.connection().cursor() as cur:
        for entity, (facet_filters, ranges, q, user) in zip(ENTITIES, shapes):
            filters = {**facet_filters, **ranges}
            result = faceted_search(entity, filters, q=q, user_id=user)
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            total, facets = oracle(cur, entity, filters, q, user)
            cur.execute("COMMIT")
            decoded = {field: {(None if value is None else str(value)): n for value, n in buckets.items()}
                       for field, buckets in result.facets.items()}
            expected = {field: {(None if value is None else str(value)): n for value, n in buckets.items()}
                        for field, buckets in facets.items()}
            assert (result.source, result.total, decoded) == ("precomputed", total, expected), (entity, filters, q, user)


@hypothesis_settings(max_examples=30, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=dataset(), first=changes(), second=changes(),
       shapes=st.lists(st.tuples(*(search_shape(entity) for entity in ENTITIES)), min_size=3, max_size=3))
def test_counts_equal_an_independent_sql_group_by_after_builds_and_between(crm_db, data, first, second, shapes):
    load(crm_db, data)
    full = precompute_facets.run()
    assert full["kind"] == "full"
    check_searches(crm_db, shapes[0])  # right after a full build
    apply_changes(crm_db, first)
    check_searches(crm_db, shapes[1])  # between builds: the change log merged at read time
    delta = precompute_facets.run()
    assert delta["kind"] == "delta"
    apply_changes(crm_db, second)
    check_searches(crm_db, shapes[2])  # a delta generation plus the changes since it


def _materialized(entity, loaded):
    """The generation's rows as one index: base rows not removed, plus the delta."""
    base = loaded.base
    kept = np.array(sorted(set(range(len(base))) - set(loaded.removed)), dtype=np.int64)
    parts = [(base, kept)]
    if loaded.delta is not None:
        parts.append((loaded.delta, np.arange(len(loaded.delta))))
    return combine(entity, parts)


def _content(index):
    """Every stored value per row, decoded: what must agree between an incremental and a full build."""
    rows = {"ids": index.ids.tolist()}
    for name, column in index.facets.items():
        rows[name] = [column.keys[code] for code in column.codes]
    for name, number in index.numbers.items():
        present = number.present if number.present is not None else np.ones(len(index), dtype=bool)
        rows[name] = [int(v) if p else None for v, p in zip(number.values, present)]
    for name, text in index.texts.items():
        rows[name] = [text.value(p) for p in range(len(index))]
    return rows


def _generation_content(database):
    """Each entity's rows as the current generation holds them (loaded by a search in this process)."""
    contents = {}
    for entity in ENTITIES:
        faceted_search(entity)
        loaded = CACHE._loaded[entity]
        contents[entity] = _content(_materialized(entity, loaded))
    return contents


@hypothesis_settings(max_examples=20, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=dataset(), rounds=st.lists(changes(), min_size=1, max_size=3))
def test_incremental_builds_hold_what_a_full_build_holds(crm_db, data, rounds):
    load(crm_db, data)
    precompute_facets.run()
    for edits in rounds:
        apply_changes(crm_db, edits)
        assert precompute_facets.run()["kind"] == "delta"
    incremental = _generation_content(crm_db)
    conn = crm_db.connection()
    from crmtasks.search.precompute import precompute  # noqa: PLC0415 - the job's function, for full=True
    assert precompute(conn, full=True)["kind"] == "full"
    assert _generation_content(crm_db) == incremental


def test_a_delta_run_reads_only_the_changed_rows(crm_db):
    lead = dict(name="A", company=None, email=None, status="new", industry=None, source=None, rating=None, owner=1)
    load(crm_db, {"accounts": [], "contacts": [], "deals": [], "leads": [lead] * 50})
    assert precompute_facets.run()["rows_scanned"] == 50
    crm_db.execute_sql("UPDATE leads SET status = 'won' WHERE id IN (3, 4)")
    crm_db.execute_sql("DELETE FROM leads WHERE id = 5")
    stats = precompute_facets.run()
    assert (stats["kind"], stats["rows_scanned"], stats["entities"]["leads"]["changed"]) == ("delta", 3, 3)
    assert faceted_search("leads").facets["status"] == {"new": 47, "won": 2}


def test_a_search_process_sees_a_generation_another_process_built(crm_db):
    lead = dict(name="A", company=None, email=None, status="new", industry=None, source=None, rating=None, owner=1)
    load(crm_db, {"accounts": [], "contacts": [], "deals": [], "leads": [lead, lead]})
    first = precompute_facets.run()
    assert faceted_search("leads", {"status": "new"}).total == 2
    assert CACHE.held()["leads"] == first["generation"]
    crm_db.execute_sql("UPDATE leads SET status = 'won' WHERE id = 1")
    script = ("import json; from crmtasks.pg import db; db.bind(); from crmtasks.jobs.precompute_facets import run; "
              "print(json.dumps(run()['generation']))")
    built = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), capture_output=True, text=True,
                           timeout=120, check=True)
    generation = int(built.stdout.strip().splitlines()[-1])
    assert generation > first["generation"]
    result = faceted_search("leads", {"status": "won", "owner": 1})
    assert (result.source, result.total) == ("precomputed", 1)
    assert CACHE.held()["leads"] == generation  # loaded from PostgreSQL, the other process's work


def test_readers_switch_generations_and_stay_exact(crm_db):
    load(crm_db, {"accounts": [], "contacts": [], "deals": [], "leads": []})
    conn = crm_db.connection()
    states, generations, reads, failures = [], set(), [], []

    def step(number, full):
        with conn.cursor() as cur:
            cur.execute("BEGIN")  # one transaction: readers see the state before it or after it
            cur.execute("INSERT INTO leads (name, status, owner_id) SELECT 'L' || i, 'x', 1 FROM generate_series(1, 3) i")
            cur.execute("UPDATE leads SET status = %s, owner_id = 1 + (id + %s) %% 3", (f"s{number}", number))
            cur.execute("SELECT status, count(*) FROM leads WHERE owner_id = 1 GROUP BY 1")
            states.append(dict(cur.fetchall()))
            cur.execute("COMMIT")
        from crmtasks.search.precompute import precompute  # noqa: PLC0415 - the job's function, for full=True
        generations.add(precompute(conn, full=full)["generation"])

    step(0, True)
    stop = threading.Event()

    def read():
        try:
            while not stop.is_set():
                result = faceted_search("leads", {"owner": 1})
                reads.append((result.source, result.facets["status"], CACHE.held()["leads"]))
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)
        finally:
            db.release_connection()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for number in range(1, 12):
        step(number, full=number % 3 == 0)  # deltas and new bases, while readers search
    stop.set()
    for reader in readers:
        reader.join(timeout=30)
    assert not failures, failures
    assert len({held for *_, held in reads}) >= 3, "readers did not see several generations"
    for source, status, _ in reads:
        assert source == "precomputed" and status in states  # one whole state, never a mix


def test_the_run_command_builds_from_scratch_when_asked(crm_db):
    lead = dict(name="A", company=None, email=None, status="new", industry=None, source=None, rating=None, owner=1)
    load(crm_db, {"accounts": [], "contacts": [], "deals": [], "leads": [lead]})
    assert precompute_facets.run()["kind"] == "full"
    command = [sys.executable, "-m", "crmtasks.run", "--task", "precompute_facets", "--json"]
    kinds = []
    for extra in ([], ["--full"]):
        done = subprocess.run(command + extra, capture_output=True, text=True, timeout=120, env=dict(os.environ))
        assert done.returncode == 0, done.stderr
        (printed,) = json.loads(done.stdout)
        kinds.append(printed["stats"]["kind"])
    assert kinds == ["delta", "full"]
    done = subprocess.run([sys.executable, "-m", "crmtasks.run", "--full"], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))
    assert (done.returncode, done.stderr.strip()) == (2, "crmtasks: --full applies to one job: give --task "
                                                          "precompute_facets")


def test_a_truncated_table_is_counted_live_until_the_next_build(crm_db):
    lead = dict(name="A", company=None, email=None, status="new", industry=None, source=None, rating=None, owner=1)
    load(crm_db, {"accounts": [], "contacts": [], "deals": [], "leads": [lead]})
    precompute_facets.run()
    crm_db.execute_sql("TRUNCATE leads")
    crm_db.execute_sql("INSERT INTO leads (name, status) VALUES ('B', 'won')")
    result = faceted_search("leads")
    assert (result.source, result.facets["status"]) == ("live", {"won": 1})
    assert precompute_facets.run()["kind"] == "full"
    result = faceted_search("leads")
    assert (result.source, result.facets["status"]) == ("precomputed", {"won": 1})


__all__ = ["USERS", "decimal"]
