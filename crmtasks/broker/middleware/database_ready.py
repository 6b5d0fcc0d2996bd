"""Check Redis and the database when a worker process boots, so a worker never runs jobs against a wrong schema.

On the embedded default the database is ours: the first process to boot
migrates it and seeds the demo CRM (``crmtasks.services.readiness``), which is what
makes ``honcho start`` work on a fresh machine. A configured database must
already be migrated; a worker that finds it is not (or cannot reach it),
or that cannot reach Redis, stops with one line naming the problem (and the
masked URL) and exit code 2, and the ``dramatiq`` master stops with it.
"""

from __future__ import annotations

import logging
import sys

import dramatiq

from crmtasks.services.readiness import NotReady, prepare_database, require_redis
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)


def prepare_or_exit(settings: Settings) -> None:
    """Check Redis and prepare the database (see crmtasks.services.readiness); one line and exit 2 when not usable."""
    try:
        require_redis(settings)
        prepared = prepare_database(settings)
    except NotReady as error:
        print(f"crmtasks: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if prepared.migrations_applied:
        logger.info("embedded database: applied migrations %s", ", ".join(prepared.migrations_applied))
    if prepared.demo_seeded:
        logger.info("embedded database was empty: seeded a demo CRM (%s)",
                    ", ".join(f"{count:,} {table}" for table, count in prepared.demo_seeded.items()))


class DatabaseReady(dramatiq.Middleware):
    """Parameters:
      settings(Settings): Where the database is, and whether it is the embedded one.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def after_process_boot(self, broker):
        prepare_or_exit(self.settings)
