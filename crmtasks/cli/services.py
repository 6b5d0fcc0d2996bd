"""``crmtasks services status|stop``: the embedded PostgreSQL and Redis."""

from __future__ import annotations

import click

from crmtasks.cli.common import load_settings_or_exit, print_json, print_table
from crmtasks.services import embedded
from crmtasks.settings import mask_url


@click.group(name="services")
def services_group() -> None:
    """Show or stop the embedded PostgreSQL and Redis."""



@services_group.command(name="status")
@click.option("--json", "as_json", is_flag=True)
def services_status(as_json: bool) -> None:
    """Show the embedded servers under CRMTASKS_HOME and the configured URLs."""
    settings = load_settings_or_exit()
    statuses = embedded.status(settings.home)
    configured = {"postgres": settings.database_url, "redis": settings.redis_url}
    rows = []
    for status in statuses:
        in_use = "configured: " + mask_url(configured[status.name]) if configured[status.name] else "embedded"
        rows.append({"service": status.name, "running": status.running, "pid": status.pid,
                     "url": mask_url(status.url) if status.url else None, "data_dir": str(status.data_dir),
                     "in_use": in_use})
    if as_json:
        print_json(rows)
    else:
        print_table(f"embedded services in {settings.home}", list(rows[0]) if rows else [],
                    [list(row.values()) for row in rows])


@services_group.command(name="stop")
def services_stop() -> None:
    """Stop the embedded servers under CRMTASKS_HOME (every crmtasks process on this machine shares them)."""
    settings = load_settings_or_exit()
    for status in embedded.stop(settings.home):
        click.echo(f"{status.name}: {'running' if status.running else 'stopped'}")
