"""``crmtasks dashboard``: serve the web dashboard."""

from __future__ import annotations

import click

from crmtasks.cli.common import CommandError, WholeNumber, load_settings_or_exit
from crmtasks.services.readiness import NotReady, require_redis
from crmtasks.web.app import UnsafeBinding, serve


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=WholeNumber(1, 65535), help="Port to bind.")
def dashboard(host: str, port: int) -> None:
    """Serve the web dashboard (jobs, run history, run now, queues and dead letters) with waitress."""
    settings = load_settings_or_exit()
    try:
        require_redis(settings)  # its pages and dramatiq-dashboard read Redis: a wrong REDIS_URL is one line now
        serve(settings, host, port)
    except (UnsafeBinding, NotReady) as error:
        raise CommandError(str(error)) from None
