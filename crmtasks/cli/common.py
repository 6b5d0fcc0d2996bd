"""Shared pieces of crmtasks' command-line tools: errors, settings loading, progress, tables.

Every user-facing failure becomes ``CommandError``: one line on stderr,
exit code 2 (usage, settings, unreachable services, missing schema). The
``crmtasks`` group and ``python -m crmtasks.run`` are ``OneLineGroup`` and
``OneLineCommand``: a usage mistake, or a Redis or PostgreSQL failure that
no command caught, also ends as one such line rather than a usage block or
a traceback.
"""

from __future__ import annotations

import contextlib
import json
import sys

import click
import peewee
import psycopg2
import redis
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crmtasks.errors import CrmtasksError
from crmtasks.services import urls as services
from crmtasks.services.readiness import (
    NotReady,
    connect_migrated,
    database_location,
    first_line,
    redis_failure,
)
from crmtasks.settings import Settings, SettingsError, configure_logging, get_settings
from crmtasks.user_text import WHOLE_NUMBER

stderr = Console(stderr=True)
stdout = Console()


class CommandError(click.ClickException, CrmtasksError):
    """A one-line error for the user; exit code 2."""
    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"crmtasks: {_scrubbed(self.format_message())}", err=True)


def _scrubbed(text: str) -> str:
    """``text`` with the configured passwords masked (messages are built masked; this is the last guard)."""
    try:
        return get_settings().scrub(text)
    except SettingsError:
        return text


@contextlib.contextmanager
def one_line_errors():
    """Turn what would print a usage block or a traceback into a CommandError (one line, exit 2).

    Usage mistakes (click's UsageError, BadParameter), crmtasks' own errors
    (CrmtasksError, one line by contract: CRMTASKS_HOME that cannot be
    created when an embedded server is first needed), and Redis or
    PostgreSQL failures a command did not handle itself (the server went
    away, refused the connection or the password), each name what was at
    fault with the URL masked.
    """
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as error:
        where = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        raise CommandError(error.format_message() + where) from None
    except CommandError:
        raise
    except CrmtasksError as error:  # refused or failed on purpose, the message in one line: a SettingsError on use
        raise CommandError(str(error)) from None
    except redis.RedisError as error:
        raise CommandError(redis_failure(get_settings(), error)) from None
    except (psycopg2.OperationalError, peewee.OperationalError) as error:
        settings = get_settings()
        cause = first_line(error, services.database_url(settings))
        raise CommandError(f"{database_location(settings)} failed: {cause}") from None


class _OneLineErrors:
    """Parsing the arguments and running the command under ``one_line_errors``."""

    def make_context(self, *args, **kwargs):
        with one_line_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with one_line_errors():
            return super().invoke(ctx)


class OneLineGroup(_OneLineErrors, click.Group):
    """A click group whose own and its subcommands' failures are one line (``one_line_errors``)."""


class OneLineCommand(_OneLineErrors, click.Command):
    """A click command run on its own (``python -m crmtasks.run``) whose failures are one line."""


class WholeNumber(click.ParamType):
    """A whole number written in ASCII digits, from ``least`` to ``most``.

    click's int also takes "１２", "٥", "1_000" and "+5" (Python's int()
    does); a number typed on a command line is only ever 0-9.

    Parameters:
      least(int): Smallest value accepted.
      most(int): Largest value accepted (by default the largest PostgreSQL bigint).
    """

    name = "integer"

    def __init__(self, least: int = 0, most: int = 2**63 - 1) -> None:
        self.least = least
        self.most = most

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and WHOLE_NUMBER.fullmatch(value.strip()):
            number = int(value.strip())
        else:
            self.fail(f"{str(value)[:40]!r} is not a whole number (digits 0-9)", param, ctx)
        if number < self.least:
            self.fail(f"{number} is less than {self.least}", param, ctx)
        if number > self.most:
            self.fail(f"{number} is more than {self.most:,}", param, ctx)
        return number


def load_settings_or_exit() -> Settings:
    """The settings, with logging configured; CommandError naming the bad variable otherwise."""
    try:
        settings = get_settings()
        configure_logging(settings)
    except SettingsError as error:
        raise CommandError(str(error)) from None
    return settings


def migrated_connection(settings: Settings):
    """A psycopg2 connection to a database whose schema is current; CommandError (one line, exit 2) otherwise.

    The one way every command that needs crmtasks' tables connects; the caller closes it.
    """
    try:
        return connect_migrated(settings)
    except NotReady as error:
        raise CommandError(str(error)) from None


def require_migrated(settings: Settings) -> None:
    """CommandError unless the database is reachable and its schema current (for commands that use the pool)."""
    migrated_connection(settings).close()


@contextlib.contextmanager
def demo_data_progress(enabled: bool = True):
    """A progress bar for the demo seeder; yields its ``progress(step, done, total)`` callback.

    The bar is drawn on the first call only, so nothing shows when no seeding happens.
    """
    if not enabled:
        yield None
        return
    state: dict = {}

    def progress(step: str, done: int, total: int) -> None:
        if not state:
            state["bar"] = Progress(TextColumn("{task.description}"), BarColumn(),
                                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=stderr)
            state["bar"].start()
            state["task"] = state["bar"].add_task("seeding demo CRM", total=total)
        state["bar"].update(state["task"], description=f"seeding demo CRM: {step}", completed=done, total=total)

    try:
        yield progress
    finally:
        if state:
            state["bar"].stop()


def print_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    stdout.print(table)


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def summarize_stats(stats: dict, limit: int = 80) -> str:
    """A short ``key=value`` line of a job's scalar stats, for tables."""
    parts = [f"{key}={value}" for key, value in stats.items() if isinstance(value, (int, float, str, bool))]
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_search_result(result, values_per_facet: int = 10) -> None:
    """A faceted search result as tables: one per facet field (largest counts first), then the page."""
    source = "precomputed" if result.source == "precomputed" else "counted live"
    stdout.print(f"{result.entity}: {result.total:,} records; facets {source}, exact as of {result.as_of.isoformat()}")
    for field, buckets in result.facets.items():
        rows = [["(none)" if value is None else value, f"{count:,}"]
                for value, count in list(buckets.items())[:values_per_facet]]
        if len(buckets) > values_per_facet:
            rows.append([f"... {len(buckets) - values_per_facet} more", ""])
        print_table(field, ["value", "count"], rows)
    if result.records:
        columns = list(result.records[0])
        first = (result.page - 1) * result.per_page + 1
        print_table(f"records {first:,}-{first + len(result.records) - 1:,} of {result.total:,}", columns,
                    [[record[column] for column in columns] for record in result.records])
    else:
        stdout.print("no records on this page")
