"""The operator trail: who ran, paused, resumed, rescheduled or requeued what, and who logged in, from where.

Every operator action, from the dashboard or the shell, is one row of the
project's own partitioned ``audit_log`` (``crmtasks.audit.record``): it is
kept, archived and restored with the CRM's audit trail under the same
retention (CRMTASKS_AUDIT_RETENTION_MONTHS), and ``crmtasks audit`` tools
apply to it. The rows are told apart by ``entity = 'crmtasks.operations'``
and ``entity_id = 0``, so the audit log's ``(entity, entity_id,
occurred_at)`` index reads the trail newest first, one pruned partition
after another, however large the CRM's own share of the log grows.

A row's ``action`` is an OperatorAction; ``changes`` holds who did it
(``who``), through what (``via``: ``dashboard`` or ``cli``), the job or
message acted on (``target``) and the action's own ``details``;
``ip_address`` is the client's address (the dashboard request's; from the
shell, the SSH client's when there is one). ``actor_id`` stays NULL: an
operator is not a CRM user. No password is ever passed in, and every text
written is scrubbed of the configured ones besides.

``record_operator_action`` is the one way to write a row; ``read_trail``
the one way to read them.
"""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import ipaddress
import json
import os
import re
import socket
from collections.abc import Mapping

from psycopg2 import sql

from crmtasks.audit import record
from crmtasks.audit.log import record_conditions
from crmtasks.audit.months import PARENT_TABLE
from crmtasks.pg import db
from crmtasks.runs.status import _StoredValue
from crmtasks.settings import SettingsError, get_settings

UTC = datetime.timezone.utc
# ``90m``, ``12h``, ``7d``: that long ago (``parse_since``).
_AGO = re.compile(r"([0-9]{1,6})([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
# The audit_log entity and id under which every operator action is filed.
TRAIL_ENTITY = "crmtasks.operations"
TRAIL_ENTITY_ID = 0
# Who did it when the dashboard runs without login (bound to loopback: whoever can reach this machine).
LOOPBACK_OPERATOR = "loopback"
# Longest text kept of a who, a target or a detail value (a typed user name may be long).
_MOST_CHARS = 200


class OperatorAction(_StoredValue):
    """What an operator did (``audit_log.action`` of a trail row).

    Members:
      RUN_NOW: Started a run now (dashboard button, ``crmtasks run``, ``crmtasks run --enqueue``).
      PAUSE, RESUME: Paused or resumed a job.
      SCHEDULE_SET, SCHEDULE_RESET: Changed a job's schedule at runtime, or went back to the default.
      DEAD_LETTER_REQUEUE, DEAD_LETTER_DELETE: Requeued or deleted a dead-lettered message.
      LOGIN, LOGIN_FAILED, LOGOUT: Dashboard logins (a failed one never records the password).
    """

    RUN_NOW = "run_now"
    PAUSE = "pause"
    RESUME = "resume"
    SCHEDULE_SET = "schedule_set"
    SCHEDULE_RESET = "schedule_reset"
    DEAD_LETTER_REQUEUE = "dead_letter_requeue"
    DEAD_LETTER_DELETE = "dead_letter_delete"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"


ACTIONS = tuple(action.value for action in OperatorAction)


class Via(_StoredValue):
    """Where an operator acted from."""

    DASHBOARD = "dashboard"
    CLI = "cli"


@dataclasses.dataclass(frozen=True)
class Operator:
    """Who acts, through what, from which address.

    Parameters:
      who(str): The dashboard login, ``loopback`` when login is off, or ``user@host`` from the shell.
      via(Via): ``dashboard`` or ``cli``.
      address(str|None): The client's IP address, when known.
    """

    who: str
    via: Via
    address: str | None = None

    @classmethod
    def from_shell(cls) -> Operator:
        """The person at this shell: the OS user at this host; the SSH client's address when logged in over SSH."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry for this uid (a container) and no USER variable
            user = f"uid {os.getuid()}"
        ssh = (os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_CLIENT") or "").split()
        return cls(who=f"{user}@{socket.gethostname()}", via=Via.CLI, address=ssh[0] if ssh else None)


@dataclasses.dataclass(frozen=True)
class TrailEntry:
    """One operator action as read back.

    Parameters:
      id(int): The audit_log row's id.
      occurred_at(datetime): When.
      action(str): An OperatorAction value.
      who(str), via(str), address(str|None): The Operator.
      target(str|None): The job, or ``queue/message id``, acted on.
      details(dict): What else the action recorded (the message id of a run, the new schedule, ...).
    """

    id: int
    occurred_at: datetime.datetime
    action: str
    who: str
    via: str
    address: str | None
    target: str | None
    details: dict


def started_by(operator: Operator) -> str:
    """How a run's ``task_runs.started_by`` names the operator who started it: ``who (via)``."""
    return _clip(f"{operator.who} ({operator.via})")


def record_operator_action(action: OperatorAction | str, operator: Operator, *, target: str | None = None,
                           details: Mapping[str, object] | None = None, connection=None) -> int:
    """Write one operator action to the trail and return its audit_log id.

    Runs in the caller's transaction when one is open on ``connection`` (so a
    schedule change and its trail row commit together), else in autocommit.

    Parameters:
      action(OperatorAction|str): What was done; a value of OperatorAction, else ValueError.
      operator(Operator): Who did it, through what, from where (``Operator.from_shell()`` in a command;
        ``crmtasks.web.operators.current_operator()`` in a dashboard view).
      target(str|None): The job acted on, or ``queue/message id`` for a dead letter.
      details(Mapping|None): Anything else worth keeping, JSON-serialisable (never a password).
      connection: A psycopg2 connection of the caller's; default a pooled one for this call.
    """
    if action not in ACTIONS:
        raise ValueError(f"{action!r} is not an operator action ({', '.join(ACTIONS)})")
    changes = _scrubbed({"who": _clip(operator.who), "via": str(operator.via),
                         "target": _clip(target) if target else None,
                         "details": json.loads(json.dumps(dict(details or {}), default=str))})
    address = _ip_or_none(operator.address)
    if address is None and operator.address:
        changes["details"]["address_given"] = _clip(_scrub(operator.address))
    return record(str(action), TRAIL_ENTITY, TRAIL_ENTITY_ID, changes=changes, ip_address=address,
                  connection=connection)


def read_trail(*, since: datetime.datetime | None = None, until: datetime.datetime | None = None,
               action: str | None = None, who: str | None = None, target: str | None = None,
               limit: int = 50, offset: int = 0, connection=None) -> list[TrailEntry]:
    """The trail, newest first, filtered by time (``since <= at < until``), action, who and target.

    ``who`` and ``target`` match anywhere in the text, case-insensitively.
    Times are literals in the statement so that PostgreSQL prunes the
    months outside them at plan time (as ``crmtasks.audit.history`` does).
    """
    conditions = record_conditions(TRAIL_ENTITY, TRAIL_ENTITY_ID, since, until)
    if action:
        conditions.append(sql.SQL("action = {}").format(sql.Literal(action)))
    for field, text in (("who", who), ("target", target)):
        if text:
            conditions.append(sql.SQL("strpos(lower(changes ->> {}), lower({})) > 0").format(
                sql.Literal(field), sql.Literal(text)))
    query = sql.SQL("SELECT id, occurred_at, action, changes, host(ip_address) FROM {table} WHERE {where} "
                    "ORDER BY occurred_at DESC, id DESC LIMIT {limit} OFFSET {offset}").format(
        table=sql.Identifier(PARENT_TABLE), where=sql.SQL(" AND ").join(conditions),
        limit=sql.Literal(int(limit)), offset=sql.Literal(int(offset)))
    with db.using_connection(connection) as conn, conn.cursor() as cur:
        cur.execute(query)
        rows = cur.fetchall()
    return [TrailEntry(id=row[0], occurred_at=row[1], action=row[2], who=row[3].get("who") or "",
                       via=row[3].get("via") or "", address=row[4], target=row[3].get("target"),
                       details=row[3].get("details") or {}) for row in rows]


def parse_since(text: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """``7d``, ``12h``, ``90m`` (that long before ``now``) or an ISO 8601 date or time (UTC unless it says).

    ValueError, in one line naming what is accepted, for anything else.

    Parameters:
      text(str): As typed (``crmtasks trail --since``, the trail page's "since" field).
      now(datetime|None): The present; default the clock's.
    """
    text = text.strip()
    match = _AGO.fullmatch(text)
    if match:
        try:
            return (now or datetime.datetime.now(UTC)) - datetime.timedelta(**{_UNITS[match[2]]: int(match[1])})
        except OverflowError:
            raise ValueError(f"since {text!r} reaches back before the year 1") from None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"since {text[:40]!r} is neither a time ago (90m, 12h, 7d) nor an ISO date or time "
                         "(2026-11-30, 2026-11-30T08:00, 2026-11-30T08:00+01:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ip_or_none(address: str | None) -> str | None:
    """``address`` when it is an IP address PostgreSQL's inet takes, else None (kept in the details instead)."""
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def _clip(text: str) -> str:
    return text if len(text) <= _MOST_CHARS else text[:_MOST_CHARS - 1] + "…"


def _scrubbed(value):
    """``value`` (JSON-like) with the configured passwords masked in every string of it, keys included."""
    if isinstance(value, str):
        return _scrub(value)
    if isinstance(value, dict):
        return {_scrub(str(key)): _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item) for item in value]
    return value


def _scrub(text: str) -> str:
    """``text`` with the configured passwords masked (nothing to mask when the settings cannot load)."""
    try:
        return get_settings().scrub(text)
    except SettingsError:
        return text
