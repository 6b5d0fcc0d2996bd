"""``crmtasks audit history ENTITY ID``, ``activity --since`` and ``counts``: the audit log's everyday questions."""

from __future__ import annotations

import datetime
import json
import re
import sys

import click

from crmtasks.audit import activity, history, month_counts
from crmtasks.audit.activity import activity_statement
from crmtasks.audit.activity_export import export_activity
from crmtasks.cli.common import CommandError, WholeNumber, load_settings_or_exit, migrated_connection, print_json, print_table
from crmtasks.user_text import shown

FORMATS = ("table", "json")


def parse_moment(text: str | None, option: str) -> datetime.datetime | None:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 date and time (UTC when it has no offset); CommandError otherwise."""
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"{option} '{shown(text[:40])}' is not a date (YYYY-MM-DD) or an ISO 8601 date and time") \
            from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.timezone.utc)


_AGO = re.compile(r"(\d{1,6})([mhd])")
_AGO_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, option: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """``parse_moment``, or a time back from now: ``90m``, ``24h``, ``7d``."""
    found = _AGO.fullmatch(text.strip())
    if found is None:
        return parse_moment(text, option)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(**{_AGO_UNITS[found.group(2)]: int(found.group(1))})


def _check_format(output_format: str, formats: tuple[str, ...] = FORMATS) -> None:
    if output_format not in formats:
        raise CommandError(f"--format {output_format!r} is not one of {', '.join(formats)}")


@click.command(name="history")
@click.argument("entity")
@click.argument("entity_id", type=WholeNumber(least=-2**63), metavar="ID")
@click.option("--since", "since_text", metavar="DATE", help="From this moment on: YYYY-MM-DD or ISO 8601 (UTC default).")
@click.option("--until", "until_text", metavar="DATE", help="Before this moment: YYYY-MM-DD or ISO 8601 (UTC default).")
@click.option("--format", "output_format", default="table", metavar="table|json", show_default=True)
def history_command(entity, entity_id, since_text, until_text, output_format) -> None:
    """The audit rows of one record (e.g. `lead 42`), oldest first; archived months are not searched."""
    _check_format(output_format)
    since, until = parse_moment(since_text, "--since"), parse_moment(until_text, "--until")
    settings = load_settings_or_exit()
    conn = migrated_connection(settings)
    try:
        conn.autocommit = True
        try:
            rows = history(entity, entity_id, since, until, connection=conn)
        except ValueError as error:
            raise CommandError(str(error)) from None
    finally:
        conn.close()
    if output_format == "json":
        print_json([vars(row) for row in rows])
        return
    print_table(f"audit history of {shown(entity)} {entity_id}: {len(rows):,} row(s)",
                ["when (UTC)", "action", "actor", "changes", "address", "id"],
                [[row.occurred_at.astimezone(datetime.timezone.utc).isoformat(sep=" ", timespec="seconds"),
                  row.action, row.actor_id, json.dumps(row.changes) if row.changes else "", row.ip_address, row.id] for row in rows])


@click.command(name="counts")
@click.option("--months", type=WholeNumber(least=1, most=1200), default=12, show_default=True,
              help="How many months, the current one included.")
@click.option("--format", "output_format", default="table", metavar="table|json", show_default=True)
def counts_command(months, output_format) -> None:
    """Audit rows per month and entity (past months counted once by the daily maintenance, exact)."""
    _check_format(output_format)
    settings = load_settings_or_exit()
    conn = migrated_connection(settings)
    try:
        conn.autocommit = True
        found = month_counts(months, connection=conn)
    finally:
        conn.close()
    if output_format == "json":
        print_json([{"month": str(c.month), "entity": c.entity, "rows": c.rows} for c in found])
        return
    print_table(f"audit rows per month and entity, last {months} month(s)", ["month", "entity", "rows"],
                [[c.month.strftime("%Y-%m"), c.entity, f"{c.rows:,}"] for c in found])


ACTIVITY_FORMATS = ("table", "json", "csv")


@click.command(name="activity")
@click.option("--since", "since_text", required=True, metavar="DATE|AGO",
              help="From this moment on: YYYY-MM-DD, ISO 8601 (UTC default), or back from now: 90m, 24h, 7d.")
@click.option("--until", "until_text", metavar="DATE|AGO", help="Before this moment (same forms); default: now on.")
@click.option("--entity", default=None, help="Only rows about this kind of record: lead, deal, ...")
@click.option("--actor", type=WholeNumber(least=-2**63), default=None, help="Only rows done by this user id.")
@click.option("--format", "output_format", default="table", metavar="table|json|csv", show_default=True,
              help="csv and json are streamed from the server as they are read.")
def activity_command(since_text, until_text, entity, actor, output_format) -> None:
    """All audit rows in a time window, oldest first; archived months are not searched."""
    _check_format(output_format, ACTIVITY_FORMATS)
    now = datetime.datetime.now(datetime.timezone.utc)
    since = parse_since(since_text, "--since", now)
    until = None if until_text is None else parse_since(until_text, "--until", now)
    try:
        statement = activity_statement(since, until, entity=entity, actor=actor)
    except ValueError as error:
        raise CommandError(str(error)) from None
    settings = load_settings_or_exit()
    conn = migrated_connection(settings)
    try:
        conn.autocommit = True
        if output_format != "table":
            export_activity(conn, statement, sys.stdout.buffer, output_format)
            sys.stdout.buffer.flush()
            return
        rows = activity(since, until, entity=entity, actor=actor, connection=conn)
    finally:
        conn.close()
    window = f"since {since.isoformat(sep=' ', timespec='seconds')}" + (
        f" until {until.isoformat(sep=' ', timespec='seconds')}" if until else "")
    print_table(f"audit activity {window}: {len(rows):,} row(s)",
                ["when (UTC)", "entity", "id", "action", "actor", "changes", "address", "row id"],
                [[when.isoformat(sep=" ", timespec="seconds"), kind, record, action, actor_id,
                  json.dumps(changes) if changes else "", address, row_id]
                 for row_id, when, actor_id, action, kind, record, changes, address in rows.tuples()])
