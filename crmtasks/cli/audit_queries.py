"""``crmtasks audit history ENTITY ID`` and ``crmtasks audit counts``: the audit log's everyday questions from the shell."""

from __future__ import annotations

import datetime
import json

import click

from crmtasks.audit import history, month_counts
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


def _check_format(output_format: str) -> None:
    if output_format not in FORMATS:
        raise CommandError(f"--format {output_format!r} is not one of {', '.join(FORMATS)}")


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
