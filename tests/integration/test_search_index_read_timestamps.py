"""Timestamps read for the index equal what PostgreSQL's own ``extract(epoch ...)`` gives, on the real server.

The index's integer ``COPY`` sends a timestamptz as it is (binary: int64 microseconds since
2000-01-01, the infinities as the int64 extremes) and numpy shifts it to Unix microseconds
(``index_read._unix_microseconds``), instead of the numeric ``extract(epoch FROM c) * 1000000`` the
server computed before. Random instants from 4713 BC to the year 294246, at any microsecond, and both
infinities, are written and read back through ``read_index`` (in batches of a few ids): each must
equal that SQL expression, as the old read computed it. A number column's NULL flag tests the
column itself (not its whole-unit expression a second time): deals' amounts, close dates and
probabilities, NULL or not, must equal the SQL too.
"""

from __future__ import annotations

import psycopg2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crmtasks.search import index_read
from crmtasks.search.facets import get_entity
from crmtasks.search.index import INT64_MAX, INT64_MIN
from crmtasks.search.index_read import read_index

LEADS = get_entity("leads")
# Microseconds since 1970 of 4713-11-24 BC (PostgreSQL's first timestamp) and of the year 294246.
FIRST, LATE = -210_866_803_200_000_000, 9_223_000_000_000_000_000
instants = st.one_of(st.integers(FIRST, LATE), st.integers(-10**15, 10**15), st.sampled_from(["infinity", "-infinity"]))
OLD_SQL = ("CASE WHEN isfinite({c}) THEN (extract(epoch FROM {c}) * 1000000)::bigint "
           "WHEN {c} > 'epoch'::timestamptz THEN (%(max)s)::bigint ELSE (%(min)s)::bigint END")


def _write(cur, pairs) -> None:
    cur.execute("TRUNCATE leads RESTART IDENTITY CASCADE")
    for created, updated in pairs:
        cur.execute("INSERT INTO leads (name, status, created_at, updated_at) VALUES ('x', 'New', "
                    + ", ".join(_instant_sql(v) for v in (created, updated)) + ")")


def _instant_sql(value) -> str:
    if isinstance(value, str):
        return f"'{value}'::timestamptz"
    return f"'epoch'::timestamptz + '{int(value)} microseconds'::interval"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(instants, instants), max_size=20), batch=st.integers(1, 8))
@example(pairs=[(0, -1), (946_684_800_000_000, 946_684_800_000_001), ("infinity", "-infinity"), (FIRST, LATE)], batch=2)
def test_timestamps_read_equal_extract_epoch(crm_conn, monkeypatch, pairs, batch):
    monkeypatch.setattr(index_read, "BATCH_IDS", batch)
    with crm_conn.cursor() as cur:
        _write(cur, pairs)
        cur.execute("SELECT " + ", ".join(OLD_SQL.format(c=c) for c in ("created_at", "updated_at"))
                    + " FROM leads ORDER BY id", {"max": INT64_MAX, "min": INT64_MIN})
        expected = cur.fetchall()
        index = read_index(cur, LEADS)
    assert len(expected) == len(pairs)
    assert index.numbers["created_at"].values.tolist() == [row[0] for row in expected]
    assert index.numbers["updated_at"].values.tolist() == [row[1] for row in expected]


def test_a_timestamp_past_bigint_microseconds_is_refused_as_the_server_refuses_it(crm_conn):
    with crm_conn.cursor() as cur:
        _write(cur, [(0, 0)])
        cur.execute("UPDATE leads SET created_at = '294270-06-01 00:00:00+00'")
        with pytest.raises(psycopg2.errors.NumericValueOutOfRange):
            cur.execute("SELECT " + OLD_SQL.format(c="created_at") + " FROM leads", {"max": INT64_MAX, "min": INT64_MIN})
        with pytest.raises(ValueError, match="294247"):
            read_index(cur, LEADS)


DEALS = get_entity("deals")
deal_rows = st.lists(st.tuples(st.none() | st.integers(0, 10**9), st.none() | st.integers(-40_000, 40_000)
                               | st.sampled_from(["infinity", "-infinity"]), st.none() | st.integers(0, 100)), max_size=20)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=deal_rows)
@example(rows=[(None, None, None), (123456, "infinity", 0), (0, "-infinity", None), (None, 0, 100)])
def test_number_columns_are_null_exactly_where_the_column_is(crm_conn, rows):
    """A number column's NULL flag tests the column itself (its whole-unit expression is computed once per row):
    values and NULLs of a deal's amount (cents), close date (days, infinities) and probability equal the SQL."""
    with crm_conn.cursor() as cur:
        cur.execute("TRUNCATE deals RESTART IDENTITY CASCADE")
        for cents, day, probability in rows:
            close = ("NULL" if day is None else f"'{day}'::date" if isinstance(day, str)
                     else f"DATE '1970-01-01' + {day}")
            cur.execute("INSERT INTO deals (name, stage, amount, close_date, probability) "
                        f"VALUES ('d', 'New', %s / 100.0, {close}, %s)", (cents, probability))
        cur.execute("SELECT (amount * 100)::bigint, CASE WHEN close_date IS NULL THEN NULL "
                    "WHEN isfinite(close_date) THEN close_date - DATE '1970-01-01' "
                    "WHEN close_date > DATE '1970-01-01' THEN (%(max)s)::bigint ELSE (%(min)s)::bigint END, probability "
                    "FROM deals ORDER BY id", {"max": INT64_MAX, "min": INT64_MIN})
        expected = cur.fetchall()
        index = read_index(cur, DEALS)
    for i, column in enumerate(("amount", "close_date", "probability")):
        number = index.numbers[column]
        present = [True] * len(rows) if number.present is None else number.present.tolist()
        assert present == [row[i] is not None for row in expected], column
        assert [int(v) if p else None for v, p in zip(number.values, present)] == [row[i] for row in expected], column
