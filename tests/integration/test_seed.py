"""The demo seeder against a real PostgreSQL: sizes, determinism, integrity, realism, atomicity.

Most tests read one CRM seeded once into this run's migrated database (the
``seeded`` fixture empties the CRM tables before and after). Tests that need
a second CRM, or kill a seeder, use a database of their own.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import psycopg2
import pytest
from psycopg2 import sql

from crmtasks.demo import (
    CRM_TABLES,
    DEAL_STAGES,
    INDUSTRIES,
    LEAD_SOURCES,
    LEAD_STATUSES,
    MAX_ROWS,
    RATINGS,
    REGIONS,
    STEPS,
    CrmNotEmpty,
    DemoSize,
    crm_is_empty,
    seed_demo,
)
from crmtasks.pg import migrate

REPO = Path(__file__).resolve().parents[2]
SIZE = DemoSize(users=200, accounts=400, contacts=1_500, leads=5_000, deals=1_200)
SEED = 42
TODAY = datetime.date(2025, 6, 30)
ANCHOR = datetime.datetime(2025, 6, 30, tzinfo=datetime.timezone.utc)


def connect(url: str):
    """Sessions in UTC, so rows print the same in every session (fingerprints)."""
    return psycopg2.connect(url, options="-c TimeZone=UTC")


def rows(conn, query: str, params=None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        result = cur.fetchall()
    conn.rollback()
    return result


def scalar(conn, query: str, params=None):
    return rows(conn, query, params)[0][0]


def empty_crm(conn) -> None:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
            sql.SQL(", ").join(map(sql.Identifier, CRM_TABLES))))
    conn.commit()


def fingerprint(conn) -> dict[str, str]:
    """An md5 per CRM table of all its rows, in id order."""
    return {
        table: scalar(conn, sql.SQL("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.id), '')) FROM {} t")
                      .format(sql.Identifier(table)))
        for table in CRM_TABLES
    }


def schema_snapshot(conn) -> dict[str, list]:
    """Indexes, constraints and session functions: what seeding must leave as it found them."""
    return {
        "indexes": rows(conn, "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
                              " WHERE indrelid = ANY (%s::regclass[]) ORDER BY 1", (list(CRM_TABLES),)),
        "constraints": rows(conn, "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated"
                                  " FROM pg_constraint WHERE conrelid = ANY (%s::regclass[]) ORDER BY 1, 2",
                            (list(CRM_TABLES),)),
        "temporary functions": rows(conn, "SELECT proname FROM pg_proc WHERE pronamespace = pg_my_temp_schema()"),
    }


@pytest.fixture(scope="module")
def conn(migrated_database_url):
    connection = connect(migrated_database_url)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def seeded(conn):
    """SIZE seeded with SEED on TODAY into the run's database; the CRM is emptied again afterwards."""
    empty_crm(conn)
    schema_before = schema_snapshot(conn)
    # Other tests of the run may have left task_runs rows: what matters is that seeding adds none.
    task_runs_before = scalar(conn, "SELECT count(*) FROM task_runs")
    counts = seed_demo(conn, SIZE, SEED, today=TODAY)
    yield SimpleNamespace(counts=counts, schema_before=schema_before, fingerprint=fingerprint(conn),
                          task_runs_before=task_runs_before)
    empty_crm(conn)


# --------------------------------------------------------------------------
# sizes and ids
# --------------------------------------------------------------------------


def test_every_table_gets_the_requested_number_of_rows(seeded, conn):
    actual = {table: scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
              for table in CRM_TABLES}
    assert seeded.counts == actual
    assert {table: actual[table] for table in ("users", "accounts", "contacts", "leads", "deals")} == \
        dataclasses.asdict(SIZE)
    assert 20 <= actual["roles"] <= 100  # the role tree grows with the users


def test_ids_are_dense_and_the_next_insert_continues_after_them(seeded, conn):
    for table, count in seeded.counts.items():
        assert scalar(conn, sql.SQL("SELECT min(id) || '..' || max(id) FROM {}").format(sql.Identifier(table))) \
            == f"1..{count}"
        sequence = scalar(conn, "SELECT pg_get_serial_sequence(%s, 'id')", (table,))
        assert rows(conn, sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(sequence))) \
            == [(count, True)], table


def test_the_schema_is_left_as_it_was(seeded, conn):
    assert schema_snapshot(conn) == seeded.schema_before


def test_task_runs_are_not_seeded(seeded, conn):
    assert scalar(conn, "SELECT count(*) FROM task_runs") == seeded.task_runs_before


# --------------------------------------------------------------------------
# integrity
# --------------------------------------------------------------------------

REFERENCES = [
    ("roles", "parent_id", "roles"), ("users", "role_id", "roles"), ("accounts", "owner_id", "users"),
    ("contacts", "account_id", "accounts"), ("contacts", "owner_id", "users"), ("leads", "owner_id", "users"),
    ("deals", "account_id", "accounts"), ("deals", "owner_id", "users"),
]


@pytest.mark.parametrize(("table", "column", "target"), REFERENCES, ids=[f"{t}.{c}" for t, c, _ in REFERENCES])
def test_every_reference_points_at_an_existing_row(seeded, conn, table, column, target):
    orphans = scalar(conn, sql.SQL(
        "SELECT count(*) FROM {table} t WHERE t.{column} IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.id = t.{column})"
    ).format(table=sql.Identifier(table), column=sql.Identifier(column), target=sql.Identifier(target)))
    assert orphans == 0


def test_the_role_tree_has_one_root_and_five_or_six_levels(seeded, conn):
    depths = dict(rows(conn, """
        WITH RECURSIVE tree (id, depth) AS (
            SELECT id, 1 FROM roles WHERE parent_id IS NULL
            UNION ALL SELECT r.id, tree.depth + 1 FROM roles r JOIN tree ON r.parent_id = tree.id
        )
        SELECT depth, count(*) FROM tree GROUP BY depth
    """))
    assert depths[1] == 1
    assert 5 <= max(depths) <= 6
    assert sum(depths.values()) == seeded.counts["roles"]  # every role is reachable from the root
    assert scalar(conn, "SELECT count(*) FROM users WHERE role_id IS NULL") == 0


def test_a_few_users_are_inactive_and_usernames_are_unique(seeded, conn):
    inactive = scalar(conn, "SELECT count(*) FROM users WHERE NOT is_active")
    assert 0.01 * SIZE.users <= inactive <= 0.12 * SIZE.users
    assert scalar(conn, "SELECT count(DISTINCT username) FROM users") == SIZE.users


def test_probability_always_matches_the_stage(seeded, conn):
    found = set(rows(conn, "SELECT DISTINCT stage, probability FROM deals"))
    assert found == {(stage, probability) for stage, (probability, _) in DEAL_STAGES.items()}


def test_closed_deals_closed_on_their_last_update_and_open_ones_vary(seeded, conn):
    assert scalar(conn, """
        SELECT count(*) FROM deals WHERE stage IN ('Closed Won', 'Closed Lost')
        AND close_date IS DISTINCT FROM (updated_at AT TIME ZONE 'UTC')::date
    """) == 0
    open_dates = dict(rows(conn, """
        SELECT CASE WHEN close_date IS NULL THEN 'none' WHEN close_date > %s THEN 'future' ELSE 'overdue' END,
               count(*)
        FROM deals WHERE stage NOT IN ('Closed Won', 'Closed Lost') GROUP BY 1
    """, (TODAY,)))
    assert set(open_dates) == {"none", "future", "overdue"}
    assert open_dates["future"] > open_dates["none"] > 0


@pytest.mark.parametrize("table", ["accounts", "contacts", "leads", "deals"])
def test_times_lie_in_the_24_months_before_the_anchor_and_updates_follow_creation(seeded, conn, table):
    bad = scalar(conn, sql.SQL("""
        SELECT count(*) FROM {} WHERE NOT (
            created_at >= %(anchor)s - interval '24 months' AND created_at <= updated_at
            AND updated_at <= %(anchor)s AND updated_at <= now())
    """).format(sql.Identifier(table)), {"anchor": ANCHOR})
    assert bad == 0
    # Both ends of the period are used, and some rows were edited after creation.
    first, last, edited = rows(conn, sql.SQL(
        "SELECT min(created_at), max(created_at), count(*) FILTER (WHERE updated_at > created_at) FROM {}"
    ).format(sql.Identifier(table)))[0]
    assert first < ANCHOR - datetime.timedelta(days=600) and last > ANCHOR - datetime.timedelta(days=30)
    assert edited > 0


def test_ids_grow_with_creation_time_like_a_serial_column(seeded, conn):
    assert scalar(conn, """
        SELECT count(*) FROM (SELECT created_at < lag(created_at) OVER (ORDER BY id) AS earlier FROM leads) t
        WHERE earlier
    """) == 0


def test_contacts_e_mails_use_their_accounts_domain(seeded, conn):
    # Same domain for every contact of an account: it derives from the account's name.
    assert scalar(conn, """
        SELECT count(*) FROM (
            SELECT account_id FROM contacts WHERE account_id IS NOT NULL AND email IS NOT NULL
            GROUP BY account_id HAVING count(DISTINCT split_part(email, '@', 2)) > 1
        ) t
    """) == 0


# --------------------------------------------------------------------------
# realism: vocabularies, skew, blanks
# --------------------------------------------------------------------------

VOCABULARIES = [
    ("leads", "status", LEAD_STATUSES), ("leads", "source", LEAD_SOURCES), ("leads", "rating", RATINGS),
    ("leads", "industry", INDUSTRIES), ("accounts", "industry", INDUSTRIES), ("accounts", "region", REGIONS),
    ("contacts", "lead_source", LEAD_SOURCES), ("deals", "stage", DEAL_STAGES),
]


@pytest.mark.parametrize(("table", "column", "vocabulary"), VOCABULARIES,
                         ids=[f"{t}.{c}" for t, c, _ in VOCABULARIES])
def test_values_come_from_the_vocabulary_and_a_few_dominate(seeded, conn, table, column, vocabulary):
    counts = dict(rows(conn, sql.SQL("SELECT {c}, count(*) FROM {t} WHERE {c} IS NOT NULL GROUP BY 1").format(
        c=sql.Identifier(column), t=sql.Identifier(table))))
    assert set(counts) <= set(vocabulary)
    assert len(counts) >= len(vocabulary) - 1  # (nearly) every value occurs
    share_of_most_common = max(counts.values()) / sum(counts.values())
    assert share_of_most_common > 1.5 / len(vocabulary)


@pytest.mark.parametrize("table", ["accounts", "contacts", "leads", "deals"])
def test_a_few_owners_own_much_more_than_the_typical_owner(seeded, conn, table):
    top, median = rows(conn, sql.SQL("""
        SELECT max(c), percentile_cont(0.5) WITHIN GROUP (ORDER BY c)
        FROM (SELECT owner_id, count(*) AS c FROM {} WHERE owner_id IS NOT NULL GROUP BY owner_id) t
    """).format(sql.Identifier(table)))[0]
    assert top > 4 * median


def test_some_accounts_have_many_more_contacts_than_most(seeded, conn):
    top, median = rows(conn, """
        SELECT max(c), percentile_cont(0.5) WITHIN GROUP (ORDER BY c)
        FROM (SELECT account_id, count(*) AS c FROM contacts WHERE account_id IS NOT NULL GROUP BY 1) t
    """)[0]
    assert top > 5 * median


BLANKS = [  # (table, column, least share of NULLs, most share)
    ("leads", "company", 0.05, 0.25), ("leads", "email", 0.02, 0.15), ("leads", "industry", 0.15, 0.35),
    ("leads", "source", 0.02, 0.12), ("leads", "rating", 0.30, 0.50), ("leads", "owner_id", 0.01, 0.08),
    ("contacts", "account_id", 0.05, 0.15), ("contacts", "email", 0.06, 0.20), ("contacts", "lead_source", 0.1, 0.3),
    ("accounts", "industry", 0.01, 0.10), ("deals", "amount", 0.05, 0.25), ("deals", "close_date", 0.03, 0.25),
    ("accounts", "owner_id", 0, 0), ("deals", "owner_id", 0, 0), ("users", "email", 0, 0),
]


@pytest.mark.parametrize(("table", "column", "least", "most"), BLANKS, ids=[f"{t}.{c}" for t, c, _, _ in BLANKS])
def test_fields_are_blank_where_a_real_crm_has_blanks(seeded, conn, table, column, least, most):
    share = scalar(conn, sql.SQL("SELECT avg(({c} IS NULL)::int) FROM {t}").format(
        c=sql.Identifier(column), t=sql.Identifier(table)))
    assert least <= share <= most


def test_open_early_stage_deals_lack_amounts_more_often(seeded, conn):
    early, late = rows(conn, """
        SELECT avg((amount IS NULL)::int) FILTER (WHERE stage IN ('Prospecting', 'Qualification')),
               avg((amount IS NULL)::int) FILTER (WHERE stage NOT IN ('Prospecting', 'Qualification'))
        FROM deals
    """)[0]
    assert early > 3 * late


# --------------------------------------------------------------------------
# determinism, replace, refusal, progress, atomicity
# --------------------------------------------------------------------------


def test_a_non_empty_crm_is_refused_and_left_untouched(seeded, conn):
    assert not crm_is_empty(conn)
    with pytest.raises(CrmNotEmpty, match="replace") as refused:
        seed_demo(conn, SIZE, SEED + 1, today=TODAY)
    assert isinstance(refused.value, ValueError)
    assert fingerprint(conn) == seeded.fingerprint
    assert schema_snapshot(conn) == seeded.schema_before


def test_same_seed_same_crm_anywhere_other_seed_other_crm(seeded, conn, fresh_database):
    other = connect(fresh_database)
    try:
        migrate.migrate(other)
        assert crm_is_empty(other)
        calls = []
        seed_demo(other, SIZE, SEED, today=TODAY, progress=lambda *call: calls.append(call))
        assert fingerprint(other) == seeded.fingerprint  # ids and every column, in another database
        assert calls == [(step, done, len(STEPS)) for done, step in enumerate(STEPS)] + \
            [("done", len(STEPS), len(STEPS))]

        seed_demo(other, SIZE, SEED + 1, today=TODAY, replace=True)
        changed = fingerprint(other)
        assert all(changed[table] != seeded.fingerprint[table] for table in CRM_TABLES if table != "roles")
        seed_demo(other, SIZE, SEED, today=TODAY + datetime.timedelta(days=1), replace=True)
        assert fingerprint(other)["leads"] != seeded.fingerprint["leads"]  # times follow the anchor

        seed_demo(other, SIZE, SEED, today=TODAY, replace=True)  # replace starts from scratch: same CRM again
        assert fingerprint(other) == seeded.fingerprint
        assert schema_snapshot(other) == seeded.schema_before
    finally:
        other.close()


def test_replace_keeps_task_runs(fresh_database):
    conn = connect(fresh_database)
    try:
        migrate.migrate(conn)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO task_runs (task, trigger, status) VALUES ('x', 'manual', 'succeeded')")
        conn.commit()
        small = DemoSize(users=10, accounts=1, contacts=0, leads=0, deals=0)
        seed_demo(conn, small, today=TODAY)
        assert seed_demo(conn, small, today=TODAY, replace=True)["accounts"] == 1
        assert scalar(conn, "SELECT count(*) FROM task_runs") == 1
        assert scalar(conn, "SELECT count(*) FROM users") == 10
    finally:
        conn.close()


def test_an_error_halfway_rolls_everything_back(fresh_database):
    conn = connect(fresh_database)
    try:
        migrate.migrate(conn)
        before = schema_snapshot(conn)

        def fail_at_leads(step, done, total):
            if step == "leads":
                raise RuntimeError("interrupted")

        with pytest.raises(RuntimeError, match="interrupted"):
            seed_demo(conn, SIZE, today=TODAY, progress=fail_at_leads)
        assert crm_is_empty(conn)
        assert schema_snapshot(conn) == before  # indexes and foreign keys are back, helper functions gone
    finally:
        conn.close()


# Seeds, reporting each step; sleeps inside the transaction at "deals" until killed.
KILLED_CHILD = textwrap.dedent(
    """
    import sys, time, datetime
    import psycopg2
    from crmtasks.demo import DemoSize, seed_demo

    def progress(step, done, total):
        print(step, flush=True)
        if step == "deals":
            time.sleep(60)

    size = DemoSize(users=50, accounts=300, contacts=1000, leads=2000, deals=500)
    seed_demo(psycopg2.connect(sys.argv[1]), size, 7, progress=progress)
    """
)


def test_a_kill_9_halfway_leaves_nothing_and_seeding_again_works(fresh_database):
    conn = connect(fresh_database)
    try:
        migrate.migrate(conn)
        before = schema_snapshot(conn)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, fresh_database],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            steps = []
            for line in child.stdout:
                steps.append(line.strip())
                if steps[-1] == "deals":
                    break
            assert steps[-1] == "deals", child.stderr.read()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        assert crm_is_empty(conn)  # waits for the server to notice and roll back
        assert schema_snapshot(conn) == before
        counts = seed_demo(conn, DemoSize(users=10, accounts=5, contacts=5, leads=5, deals=5))  # today by default
        assert counts["leads"] == 5
        assert rows(conn, "SELECT max(updated_at) <= now(), min(created_at) >= now() - interval '25 months'"
                          " FROM leads") == [(True, True)]
    finally:
        conn.close()


# --------------------------------------------------------------------------
# validation (before anything reaches the database)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [
    {"users": 9}, {"accounts": 0}, {"leads": -1}, {"deals": 1.5}, {"contacts": True}, {"leads": "100"},
    {"leads": MAX_ROWS + 1},
])
def test_bad_sizes_raise_a_one_line_value_error(changes):
    with pytest.raises(ValueError) as error:
        DemoSize(**changes)
    assert next(iter(changes)) in str(error.value) and "\n" not in str(error.value)


def test_sizes_for_a_first_run_and_for_scale():
    assert DemoSize.first_run() == DemoSize()
    assert sum(dataclasses.asdict(DemoSize.first_run()).values()) < 300_000
    assert DemoSize.large().leads == 1_000_000


@pytest.mark.parametrize("arguments", [
    {"seed": -1}, {"seed": 2**31}, {"seed": "42"},
    {"today": datetime.date.today() + datetime.timedelta(days=2)},
    {"today": datetime.datetime(2025, 1, 1)},
])
def test_bad_seeds_and_dates_raise_value_error_and_touch_nothing(seeded, conn, arguments):
    with pytest.raises(ValueError) as error:
        seed_demo(conn, SIZE, **{"seed": SEED, "replace": True, **arguments})
    assert not isinstance(error.value, CrmNotEmpty)
    assert fingerprint(conn) == seeded.fingerprint
