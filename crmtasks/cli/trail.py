"""``crmtasks trail``: the operator trail from the shell (who ran, paused, resumed, rescheduled, requeued, logged in)."""

from __future__ import annotations

import dataclasses

import click

from crmtasks.cli.common import (
    CommandError,
    WholeNumber,
    load_settings_or_exit,
    print_json,
    print_table,
    require_migrated,
    stderr,
)
from crmtasks.runs.trail import ACTIONS, UTC, parse_since, read_trail
from crmtasks.user_text import check_text

MOST_SHOWN = 10_000


@click.command(name="trail")
@click.option("--since", default="7d", show_default=True, metavar="WHEN",
              help="From when: a time ago (90m, 12h, 7d) or an ISO date or time (UTC unless it says).")
@click.option("--action", type=click.Choice(ACTIONS), help="Only this kind of action.")
@click.option("--who", metavar="TEXT", help="Only operators whose name holds TEXT.")
@click.option("--job", metavar="TEXT", help="Only actions on a job (or queue/message) whose name holds TEXT.")
@click.option("--limit", type=WholeNumber(1, MOST_SHOWN), default=50, show_default=True, help="At most this many.")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def trail_command(since: str, action: str | None, who: str | None, job: str | None, limit: int, output: str) -> None:
    """The operator trail, newest first: who did what, when, through what and from which address."""
    settings = load_settings_or_exit()
    try:
        start = parse_since(since)
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        for name, value in (("--who", who), ("--job", job)):
            if value is not None:
                check_text(value, name)
    except ValueError as error:
        raise CommandError(str(error)) from None
    require_migrated(settings)
    entries = read_trail(since=start, action=action, who=who, target=job, limit=limit)
    if output == "json":
        print_json([dataclasses.asdict(entry) for entry in entries])
        return
    if not entries:
        stderr.print(f"no operator actions since {start.isoformat(timespec='seconds')}")
        return
    print_table(f"operator trail since {start.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
                ["when (UTC)", "who", "via", "from", "action", "on", "details"],
                [[f"{entry.occurred_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}", entry.who, entry.via,
                  entry.address or "", entry.action, entry.target or "",
                  ", ".join(f"{key}={value}" for key, value in entry.details.items())] for entry in entries])
