"""The module Dramatiq workers and the periodiq scheduler load.

    dramatiq crmtasks.tasks      # workers
    periodiq crmtasks.tasks      # scheduler

Importing it builds the broker from settings, makes it the global broker,
and declares one actor per registered job (``crmtasks.broker.actors``). In the
periodiq process it also starts the scheduler's heartbeat and catch-up
(``crmtasks.scheduler.boot``). A bad setting stops the process with one
line and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dramatiq

from crmtasks.broker.actors import declare_actor
from crmtasks.broker.build import build_broker
from crmtasks.jobs import registry
from crmtasks.settings import SettingsError, configure_logging, get_settings


def _load_settings():
    try:
        return get_settings()
    except SettingsError as error:
        print(f"crmtasks: {error}", file=sys.stderr)
        raise SystemExit(2) from None


settings = _load_settings()
# INFO for Dramatiq's and periodiq's records too, even under `dramatiq --skip-logging`.
configure_logging(settings, libraries_level="INFO")
broker = build_broker(settings)
dramatiq.set_broker(broker)
actors = {spec.name: declare_actor(broker, spec, settings.schedule(spec.name)) for spec in registry.TASKS}


if Path(sys.argv[0]).name == "periodiq":
    from crmtasks.scheduler.boot import start_scheduler

    scheduler_heartbeat = start_scheduler(settings, actors)
