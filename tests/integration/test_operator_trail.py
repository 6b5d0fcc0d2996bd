"""The operator trail's writer and reader against the real partitioned audit_log."""

from __future__ import annotations

import datetime

import psycopg2
import pytest

from crmtasks.runs.trail import (
    TRAIL_ENTITY,
    Operator,
    OperatorAction,
    Via,
    read_trail,
    record_operator_action,
)
from crmtasks.settings import get_settings

UTC = datetime.timezone.utc


@pytest.fixture()
def trail_db(crm_db):
    """An empty operator trail (the CRM's own audit rows are left alone)."""
    crm_db.execute_sql("DELETE FROM audit_log WHERE entity = %s", (TRAIL_ENTITY,))
    return crm_db


def _rows(database) -> list[tuple]:
    return database.execute_sql(
        "SELECT action, entity, entity_id, actor_id, changes, host(ip_address) FROM audit_log "
        "WHERE entity = %s ORDER BY id", (TRAIL_ENTITY,)).fetchall()


def test_one_action_is_one_audit_log_row_with_who_what_and_where(trail_db):
    operator = Operator(who="ops", via=Via.DASHBOARD, address="192.0.2.7")
    row_id = record_operator_action(OperatorAction.PAUSE, operator, target="precompute_facets",
                                    details={"note": "reindexing"})
    [(action, entity, entity_id, actor_id, changes, address)] = _rows(trail_db)
    assert (action, entity, entity_id, actor_id, address) == ("pause", TRAIL_ENTITY, 0, None, "192.0.2.7")
    assert changes == {"who": "ops", "via": "dashboard", "target": "precompute_facets",
                       "details": {"note": "reindexing"}}
    [entry] = read_trail()
    assert (entry.id, entry.action, entry.who, entry.via, entry.address, entry.target, entry.details) == (
        row_id, "pause", "ops", "dashboard", "192.0.2.7", "precompute_facets", {"note": "reindexing"})
    assert abs((entry.occurred_at - datetime.datetime.now(UTC)).total_seconds()) < 300


def test_the_shell_operator_is_the_os_user_at_this_host(trail_db, monkeypatch):
    monkeypatch.setenv("SSH_CONNECTION", "198.51.100.4 50022 10.0.0.2 22")
    operator = Operator.from_shell()
    import getpass
    import socket

    assert operator == Operator(f"{getpass.getuser()}@{socket.gethostname()}", Via.CLI, "198.51.100.4")
    monkeypatch.delenv("SSH_CONNECTION")
    monkeypatch.delenv("SSH_CLIENT", raising=False)
    assert Operator.from_shell().address is None


def test_reading_filters_by_time_action_who_and_target_newest_first(trail_db):
    ops = Operator("ops", Via.DASHBOARD, "127.0.0.1")
    alice = Operator("alice@web-1", Via.CLI)
    record_operator_action(OperatorAction.RUN_NOW, ops, target="tally_users")
    record_operator_action(OperatorAction.PAUSE, alice, target="warm_caches")
    record_operator_action(OperatorAction.RESUME, alice, target="warm_caches")
    assert [e.action for e in read_trail()] == ["resume", "pause", "run_now"]
    assert [e.action for e in read_trail(action="pause")] == ["pause"]
    assert [e.action for e in read_trail(who="ALICE")] == ["resume", "pause"]
    assert [e.action for e in read_trail(target="tally")] == ["run_now"]
    assert [e.action for e in read_trail(limit=1, offset=1)] == ["pause"]
    assert read_trail(since=datetime.datetime.now(UTC) + datetime.timedelta(minutes=5)) == []
    assert read_trail(until=datetime.datetime.now(UTC) - datetime.timedelta(minutes=5)) == []


@pytest.fixture()
def dashboard_password(monkeypatch):
    """A dashboard password in this process's settings (masked wherever it would be written)."""
    monkeypatch.setenv("CRMTASKS_DASHBOARD_USER", "ops")
    monkeypatch.setenv("CRMTASKS_DASHBOARD_PASSWORD", "hunter2-Trail")
    get_settings.cache_clear()
    yield "hunter2-Trail"
    monkeypatch.undo()
    get_settings.cache_clear()


def test_no_password_is_ever_written(trail_db, dashboard_password):
    record_operator_action(OperatorAction.RUN_NOW, Operator(f"ops {dashboard_password}", Via.CLI),
                           target=f"x{dashboard_password}",
                           details={"error": f"login as ops:{dashboard_password} failed", dashboard_password: 1})
    [(_, _, _, _, changes, _)] = _rows(trail_db)
    assert dashboard_password not in str(changes)
    assert changes["who"] == "ops ***" and changes["details"]["error"] == "login as ops:*** failed"


def test_an_unknown_action_is_refused_and_an_odd_address_kept_aside(trail_db):
    with pytest.raises(ValueError, match="not an operator action"):
        record_operator_action("format_disk", Operator("ops", Via.CLI))
    record_operator_action(OperatorAction.LOGIN_FAILED, Operator("ops", Via.DASHBOARD, "unix-socket"))
    [(_, _, _, _, changes, address)] = _rows(trail_db)
    assert address is None and changes["details"] == {"address_given": "unix-socket"}
    assert _rows(trail_db)


def test_written_in_the_callers_transaction_when_one_is_open(trail_db, migrated_database_url):
    conn = psycopg2.connect(migrated_database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")  # a transaction is open now
        record_operator_action(OperatorAction.SCHEDULE_SET, Operator("ops", Via.CLI), target="warm_caches",
                               details={"cron": "*/5 * * * *"}, connection=conn)
        conn.rollback()
    finally:
        conn.close()
    assert _rows(trail_db) == []
