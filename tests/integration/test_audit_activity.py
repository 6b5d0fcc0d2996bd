"""``crmtasks.audit.activity`` and ``crmtasks audit activity``: a time window's rows, equal to a plain SQL read."""

from __future__ import annotations

import csv
import datetime
import io
import json

import psycopg2.extensions
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from crmtasks.audit import activity, record
from crmtasks.audit.activity import KINDS, activity_statement
from crmtasks.audit.log import COLUMNS
from crmtasks.audit.months import current_month
from crmtasks.cli import main
from crmtasks.pg.lazy_rows import copy_rows
from tests.integration.audit_support import audit_conn, fill_month  # noqa: F401

UTC = datetime.timezone.utc
MICRO = datetime.timedelta(microseconds=1)
# What COPY's text format escapes, and what JSON itself escapes, in one value.
AWKWARD = {"note": "tab\there\nnew line \\ back \"quoted\" \\N é ✓ \u0001", "list": [1, None, True], "n": 1.5}


def _plain(conn, since, until=None, entity=None, actor=None) -> list[tuple]:
    """The independent answer: the most direct SELECT, fetched with fetchall."""
    conditions = [sql.SQL("occurred_at >= %(since)s")]
    if until is not None:
        conditions.append(sql.SQL("occurred_at < %(until)s"))
    if entity is not None:
        conditions.append(sql.SQL("entity = %(entity)s"))
    if actor is not None:
        conditions.append(sql.SQL("actor_id = %(actor)s"))
    statement = sql.SQL("SELECT {} FROM audit_log WHERE {} ORDER BY occurred_at, id").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.SQL(" AND ").join(conditions))
    with conn.cursor() as cur:
        cur.execute(statement, {"since": since, "until": until, "entity": entity, "actor": actor})
        return cur.fetchall()


@pytest.fixture()
def three_months(audit_conn):
    """Three months of rows (the current one and the two before), with rows on and next to every month boundary."""
    months = [current_month().plus(-back) for back in (2, 1, 0)]
    for month in months:
        fill_month(audit_conn, month, 300, entity_id_mod=7)
    for month in months:
        for moment in (month.start, month.start + MICRO, month.end - MICRO):
            if moment < datetime.datetime.now(UTC):
                for entity, actor, ip_address in (("deal", 5, "2001:db8::1"), ("lead", None, None)):
                    record("update", entity, 9, actor_id=actor, changes=AWKWARD, occurred_at=moment,
                           ip_address=ip_address, connection=audit_conn)
    audit_conn.commit()
    audit_conn.autocommit = True
    return audit_conn, months


def _cases(months):
    first, middle, current = months
    return [
        (first.start, None, None, None),
        (first.start, middle.start, None, None),  # exactly one month, both bounds on a partition boundary
        (middle.start - MICRO, middle.start + MICRO, None, None),  # straddles a boundary by a microsecond each way
        (middle.start, middle.start + MICRO, None, None),
        (first.start + datetime.timedelta(days=3), current.start + datetime.timedelta(days=1), "deal", None),
        (first.start - datetime.timedelta(days=400), None, "lead", 5),
        (first.start, None, None, 5),
        (current.end, None, None, None),  # nothing yet
        (first.start - datetime.timedelta(days=60), first.start, None, None),  # months that have no partition
    ]


def test_activity_equals_a_plain_read_row_for_row(three_months):
    conn, months = three_months
    for since, until, entity, actor in _cases(months):
        expected = _plain(conn, since, until, entity, actor)
        rows = activity(since, until, entity=entity, actor=actor, connection=conn)
        assert len(rows) == len(expected)
        assert rows.tuples() == expected, (since, until, entity, actor)
        assert list(rows) == [dict(zip(COLUMNS, row)) for row in expected]
    everything = activity(months[0].start, connection=conn)
    assert len(everything) > 900 and {row["ip_address"] for row in everything} >= {"2001:db8::1", None}
    assert sum(row["changes"] == AWKWARD for row in everything) >= 10
    assert all(row["occurred_at"].utcoffset() == datetime.timedelta(0) for row in everything)


def test_activity_in_a_callers_transaction_and_time_zone_equals_a_plain_read(three_months):
    conn, months = three_months
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("SET LOCAL timezone = 'Asia/Kolkata'")  # +05:30: an offset with minutes
    rows = activity(months[0].start, connection=conn)
    assert rows.tuples() == _plain(conn, months[0].start)
    assert {row["occurred_at"].utcoffset() for row in rows} == {datetime.timedelta(hours=5, minutes=30)}
    conn.rollback()


def test_activity_equals_a_plain_read_with_an_archived_and_dropped_month(three_months):
    conn, months = three_months
    gone = sql.Identifier(f"audit_log_p{months[1].start:%Y%m}")
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER TABLE audit_log DETACH PARTITION {}").format(gone))
        cur.execute(sql.SQL("DROP TABLE {}").format(gone))
    for since, until, entity, actor in _cases(months):
        assert activity(since, until, entity=entity, actor=actor, connection=conn).tuples() == \
            _plain(conn, since, until, entity, actor)
    assert not [row for row in activity(months[0].start, connection=conn)
                if months[1].start <= row["occurred_at"] < months[1].end]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start_hours=st.integers(-24 * 70, 24 * 35), length_hours=st.one_of(st.none(), st.integers(1, 24 * 70)),
       jitter=st.sampled_from([datetime.timedelta(0), MICRO, -MICRO]),
       entity=st.sampled_from([None, "lead", "deal", "contact"]), actor=st.sampled_from([None, 5, 3, 0]))
def test_any_window_equals_a_plain_read(three_months, start_hours, length_hours, jitter, entity, actor):
    conn, months = three_months
    since = months[1].start + datetime.timedelta(hours=start_hours) + jitter  # around the middle month's boundaries
    until = None if length_hours is None else since + datetime.timedelta(hours=length_hours)
    assert activity(since, until, entity=entity, actor=actor, connection=conn).tuples() == \
        _plain(conn, since, until, entity, actor)


def test_activity_in_a_callers_transaction_sees_its_rows_and_keeps_it_open(audit_conn):
    since = current_month().start
    row_id = record("view", "lead", 1, changes={"a": "b"}, connection=audit_conn)  # the caller's, uncommitted
    assert [row["id"] for row in activity(since, connection=audit_conn)] == [row_id]
    assert audit_conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    with audit_conn.cursor() as cur, pytest.raises(RuntimeError):  # its settings would outlive the read
        copy_rows(cur, activity_statement(since), COLUMNS, KINDS, local={"work_mem": "64MB"})
    audit_conn.rollback()
    assert len(activity(since, connection=audit_conn)) == 0
    audit_conn.rollback()
    audit_conn.autocommit = True  # its own read-only transaction, with more sort memory for that transaction only
    with audit_conn.cursor() as cur:
        cur.execute("SHOW work_mem")
        before = cur.fetchone()[0]
        assert len(activity(since, connection=audit_conn)) == 0
        assert audit_conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        cur.execute("SHOW work_mem")
        assert cur.fetchone()[0] == before


def test_activity_refuses_bad_input_before_any_sql():
    moment = datetime.datetime(2026, 5, 1, tzinfo=UTC)
    for args, keywords in [((None,), {}), ((datetime.datetime(2026, 5, 1),), {}), (("2026-05-01",), {}),
                           ((moment, moment), {}), ((moment, moment - MICRO), {}),
                           ((moment, datetime.datetime(2026, 6, 1)), {}), ((moment,), {"entity": ""}),
                           ((moment,), {"entity": "le\x00ad"}), ((moment,), {"entity": 3}),
                           ((moment,), {"actor": "7"}), ((moment,), {"actor": True}), ((moment,), {"actor": 2**63})]:
        with pytest.raises(ValueError):
            activity(*args, connection=object(), **keywords)


def _invoke(*args):
    return CliRunner().invoke(main, ["audit", "activity", *args], catch_exceptions=False, prog_name="crmtasks")


def test_activity_from_the_shell_as_csv_json_and_table(three_months):
    conn, months = three_months
    since, until = months[0].end - MICRO, months[1].start + datetime.timedelta(days=2)
    expected = _plain(conn, since, until)
    window = ("--since", since.isoformat(), "--until", until.isoformat())

    as_csv = _invoke(*window, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    found = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert found[0] == list(COLUMNS)
    assert [(int(row[0]), datetime.datetime.fromisoformat(row[1] + ":00"), json.loads(row[6]))
            for row in found[1:]] == [(row[0], row[1], row[6]) for row in expected]
    assert all(row[1].endswith("+00") for row in found[1:])

    as_json = _invoke(*window, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    objects = json.loads(as_json.stdout)
    assert [(*(item[name] for name in COLUMNS[:1]), datetime.datetime.fromisoformat(item["occurred_at"]),
             *(item[name] for name in COLUMNS[2:])) for item in objects] == expected

    assert json.loads(_invoke("--since", months[2].end.isoformat(), "--format", "json").stdout) == []
    table = _invoke(*window, "--entity", "deal")
    assert table.exit_code == 0, table.output
    words = " ".join(table.stdout.split())  # the table wraps to the terminal's width
    assert f": {len(_plain(conn, since, until, 'deal'))} row(s)" in words and "deal" in words


@pytest.mark.parametrize("args, message", [
    (("--since", "2026-13-01"), "--since '2026-13-01' is not a date"),
    (("--since", "2026-05-01", "--until", "2026-04-01"), "must be later than since"),
    (("--since", "2026-05-01", "--until", "2026-05-01T00:00:00+00:00"), "must be later than since"),
    (("--since", "24h", "--format", "xml"), "--format 'xml' is not one of table, json, csv"),
    (("--since", "24h", "--entity", ""), "entity must be a non-empty name"),
    (("--since", "24h", "--actor", "x"), "is not a whole number"),
    ((), "Missing option '--since'"),
])
def test_activity_refuses_bad_input_in_one_line(migrated_database_url, args, message):
    result = _invoke(*args)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crmtasks: ") and message in lines[0], result.stderr
