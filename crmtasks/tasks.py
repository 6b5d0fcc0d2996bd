"""The module Dramatiq workers and the periodiq scheduler load.

    dramatiq crmtasks.tasks      # workers
    periodiq crmtasks.tasks      # scheduler

Importing it builds the broker and one actor per registered job
(``crmtasks.broker.factory``), makes that broker Dramatiq's global one and
sets up logging. In the periodiq process it also starts the scheduler's
heartbeat and catch-up (``crmtasks.scheduler.boot``). A bad setting, or
(in the scheduler) a Redis that does not answer, stops the process with one
line and exit code 2; a worker checks Redis and the database when its
process boots (``broker.middleware.database_ready``).

It is the only crmtasks module whose import has effects: other code that
needs the broker or the actors (``crmtasks run --enqueue``, the dashboard)
calls ``build_runtime`` itself instead of importing this module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dramatiq

from crmtasks.broker.factory import build_runtime
from crmtasks.services.readiness import NotReady, require_redis
from crmtasks.settings import SettingsError, configure_logging, get_settings


def _start():
    """The settings and the runtime, logging configured; one line and exit 2 on a bad setting."""
    try:
        settings = get_settings()
        # INFO for Dramatiq's and periodiq's records too, even under `dramatiq --skip-logging`.
        configure_logging(settings, libraries_level="INFO")
        return settings, build_runtime(settings)  # a SettingsError too when CRMTASKS_HOME cannot be created
    except SettingsError as error:
        print(f"crmtasks: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _require_redis_or_exit(settings) -> None:
    """One line naming the masked REDIS_URL and exit 2 when Redis does not answer (workers: DatabaseReady)."""
    try:
        require_redis(settings)
    except NotReady as error:
        print(f"crmtasks: {error}", file=sys.stderr)
        raise SystemExit(2) from None


settings, runtime = _start()
# By these names tests and tools take them from here; `dramatiq` and `periodiq` use the global broker.
broker, actors = runtime.broker, runtime.actors
dramatiq.set_broker(broker)


if Path(sys.argv[0]).name == "periodiq":
    from crmtasks.scheduler.boot import start_scheduler

    _require_redis_or_exit(settings)
    scheduler_heartbeat = start_scheduler(settings, actors)
