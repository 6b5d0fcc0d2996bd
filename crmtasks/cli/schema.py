"""``crmtasks migrate``: apply pending schema migrations."""

from __future__ import annotations

import click

from crmtasks.cli.common import CommandError, load_settings_or_exit
from crmtasks.pg import migrate as migrations
from crmtasks.services import database_url
from crmtasks.services.readiness import NotReady, connect_checked


@click.command()
def migrate() -> None:
    """Apply pending schema migrations (safe to run from several processes at once)."""
    settings = load_settings_or_exit()
    try:
        conn = connect_checked(database_url(settings))
    except NotReady as error:
        raise CommandError(str(error)) from None
    try:
        applied = migrations.migrate(conn)
    finally:
        conn.close()
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.version:04d}_{migration.name}")
    else:
        click.echo("schema is up to date")
