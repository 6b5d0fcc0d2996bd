"""Property: any sequence of deal, lead and owner edits, folded by runs at any points, gives the live reports.

Tiny CRMs (three owners, a handful of rows) make the edge cases common:
groups that empty and refill, groups whose amounts are all NULL, deals
moving back and forth between open and closed, between months and owners.
"""

from __future__ import annotations

import datetime
import decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmtasks import reports
from crmtasks.reports import refresh as aggregates
from tests.integration import live_reports
from tests.integration.random_crm import LEAD_STATUSES, SOURCES, STAGES

UTC = datetime.timezone.utc

owners = st.one_of(st.none(), st.integers(0, 2))
deals = st.fixed_dictionaries({
    "owner": owners,
    "stage": st.sampled_from(STAGES),
    "amount": st.one_of(st.none(), st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False)),
    "probability": st.one_of(st.none(), st.integers(0, 100)),
    "close_date": st.one_of(st.none(), st.dates(datetime.date(2023, 1, 1), datetime.date(2024, 12, 31))),
    "created_at": st.datetimes(datetime.datetime(2022, 12, 31), datetime.datetime(2024, 12, 31), timezones=st.just(UTC)),
})
leads = st.fixed_dictionaries({
    "owner": owners,
    "status": st.sampled_from(LEAD_STATUSES),
    "source": st.sampled_from(SOURCES),
    "created_at": st.datetimes(datetime.datetime(2023, 1, 1), datetime.datetime(2024, 12, 31), timezones=st.just(UTC)),
})
operations = st.lists(st.one_of(
    st.tuples(st.just("insert deal"), deals),
    st.tuples(st.just("update deal"), st.integers(0, 30), deals),
    st.tuples(st.just("delete deal"), st.integers(0, 30)),
    st.tuples(st.just("insert lead"), leads),
    st.tuples(st.just("update lead"), st.integers(0, 30), leads),
    st.tuples(st.just("delete lead"), st.integers(0, 30)),
    st.tuples(st.just("edit owner"), st.integers(0, 2), st.text(alphabet="abcXYZ é", min_size=1, max_size=5), st.booleans()),
    st.tuples(st.just("run")),
), min_size=1, max_size=25)


def _reset(conn):
    with conn.cursor() as cur:
        # DELETE, not TRUNCATE: these tables are tiny, and TRUNCATE costs file operations per example.
        for table in ("deals", "leads", "report_deal_periods", "report_open_pipeline", "report_lead_periods",
                      "report_account_segments", "report_deal_changes", "report_lead_changes",
                      "report_account_changes"):
            cur.execute(f"DELETE FROM {table}")  # the names above are constants
        cur.execute("UPDATE report_aggregate_state SET as_of = NULL, rebuild_required = true, last_rebuild_at = NULL")
        cur.execute("UPDATE users SET full_name = 'Owner ' || id, is_active = true")
        cur.execute("DELETE FROM report_owner_changes")
        cur.execute("SELECT id FROM users ORDER BY id")
        return [row[0] for row in cur.fetchall()]


def _shapes():
    """Every report shape the tests compare: each report overall and per owner, at every grain it has."""
    for name, spec in reports.REPORTS.items():
        if name == "accounts":
            continue
        for by_owner in (False, True):
            for grain in (reports.GRAINS if spec.periodic else (None,)):
                yield name, spec, {"by_owner": by_owner, **({"grain": grain} if grain else {})}


def _reports(conn) -> dict:
    """Every shape's rows as the API returns them now (keeping their payloads for this generation)."""
    return {(name, tuple(filters.items())): [tuple(v for c, v in row.items() if c != "period")
                                             for row in spec.function(connection=conn, **filters).rows]
            for name, spec, filters in _shapes()}


def _live(conn) -> dict:
    return {(name, tuple(filters.items())): live_reports.LIVE[name](conn, **filters) for name, _, filters in _shapes()}


def _apply(conn, users, operation, published):
    kind = operation[0]
    with conn.cursor() as cur:
        if kind == "run":
            aggregates.refresh(conn)
            # Right after a run the reports are the live ones; they stay so, payloads kept, until the next run.
            published.clear()
            published.update(_live(conn))
            assert _reports(conn) == published
            return
        if kind == "edit owner":
            _, owner, name, active = operation
            cur.execute("UPDATE users SET full_name = %s, is_active = %s WHERE id = %s", (name, active, users[owner]))
            return
        table = "deals" if kind.endswith("deal") else "leads"
        if kind.startswith(("update", "delete")):
            cur.execute(f"SELECT id FROM {table} ORDER BY id")  # table is one of two constants
            ids = [row[0] for row in cur.fetchall()]
            if not ids:
                return
            target = ids[operation[1] % len(ids)]
        values = operation[-1] if not kind.startswith("delete") else None
        if values is not None:
            values = dict(values, owner=None if values["owner"] is None else users[values["owner"]])
        if kind == "insert deal":
            cur.execute("""INSERT INTO deals (name, owner_id, stage, amount, probability, close_date, created_at)
                           VALUES ('d', %(owner)s, %(stage)s, %(amount)s, %(probability)s, %(close_date)s,
                                   %(created_at)s)""", values)
        elif kind == "update deal":
            cur.execute("""UPDATE deals SET owner_id = %(owner)s, stage = %(stage)s, amount = %(amount)s,
                           probability = %(probability)s, close_date = %(close_date)s, created_at = %(created_at)s
                           WHERE id = %(id)s""", dict(values, id=target))
        elif kind == "insert lead":
            cur.execute("""INSERT INTO leads (name, owner_id, status, source, created_at)
                           VALUES ('l', %(owner)s, %(status)s, %(source)s, %(created_at)s)""", values)
        elif kind == "update lead":
            cur.execute("""UPDATE leads SET owner_id = %(owner)s, status = %(status)s, source = %(source)s,
                           created_at = %(created_at)s WHERE id = %(id)s""", dict(values, id=target))
        else:
            cur.execute(f"DELETE FROM {table} WHERE id = %s", (target,))


@pytest.fixture()
def tiny_crm(crm_db):
    conn = crm_db.connection()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO users (username, full_name, is_active) VALUES ('a', 'A', true), ('b', 'B', false),"
                    " ('c', 'C', true)")
    return conn


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=operations)
def test_any_edit_sequence_folds_to_the_live_reports(tiny_crm, operations):
    conn = tiny_crm
    users = _reset(conn)
    published: dict = {}
    for operation in operations:
        _apply(conn, users, operation, published)
    if published:
        # Edits since the last run: every report (its kept payload) still answers as of that run, not a mix.
        assert _reports(conn) == published
    aggregates.refresh(conn)
    live = _live(conn)
    for _ in range(2):  # read from the aggregates, then from the payloads kept for this generation
        got = _reports(conn)
        for shape, rows in live.items():
            assert got[shape] == rows, shape


def test_decimal_amounts_stay_exact(tiny_crm):
    """Sums of many cents never drift: numeric all the way, no float."""
    conn = tiny_crm
    users = _reset(conn)
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO deals (name, owner_id, stage, amount, close_date, created_at)
                       SELECT 'd', %s, 'Closed Won', 0.10, date '2024-01-15', timestamptz '2024-01-01'
                       FROM generate_series(1, 1000)""", (users[0],))
    aggregates.refresh(conn)
    row = reports.revenue(connection=conn, grain="year").rows[0]
    assert row["revenue"] == decimal.Decimal("100.00") and row["average_amount"] == decimal.Decimal("0.10")
