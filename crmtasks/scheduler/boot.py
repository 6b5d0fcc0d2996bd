"""What a periodiq scheduler process does when it starts, besides periodiq's own loop.

It announces itself (a heartbeat that ``crmtasks check`` reads) and settles
the slots that passed while no scheduler ran: the latest one runs once if
it is within the catch-up window, older ones are recorded as missed. With
two schedulers starting together, slot claims keep the catch-up single.
On the embedded default it also migrates (and seeds) the database first,
like a worker does. SIGTERM and SIGINT stop it at once with exit code 0,
its heartbeat removed (periodiq itself dies of SIGTERM and exits 1 on
Ctrl-C): nothing is lost, the slots it claimed are in PostgreSQL.
"""

from __future__ import annotations

import datetime
import logging
import signal
import threading
import time

import dramatiq

from crmtasks.broker import stopping
from crmtasks.broker.actors import send_for_slot
from crmtasks.broker.heartbeats import Heartbeat
from crmtasks.broker.middleware.database_ready import prepare_or_exit
from crmtasks.jobs import registry
from crmtasks.scheduler import slots
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)


def catch_up(settings: Settings, actors: dict[str, dramatiq.Actor],
             now: datetime.datetime | None = None) -> dict[str, dict]:
    """Settle the slots missed while no scheduler ran; returns what was done per job."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    done = {}
    for spec in registry.JOBS:
        actor = actors[spec.name]
        cron = actor.options["periodic"]
        run_slot, missed = slots.plan_catch_up(cron, slots.latest_slot(spec.name), now,
                                                    settings.catch_up_s)
        recorded = slots.record_missed(spec.name, missed)
        message = send_for_slot(actor, run_slot, catch_up=True) if run_slot else None
        done[spec.name] = {"caught_up": run_slot.isoformat() if message else None, "missed": recorded}
        if message or recorded:
            logger.info("%s: caught up slot %s, recorded %d missed slots", spec.name,
                        run_slot.isoformat() if message else "none", recorded)
    return done


# periodiq does not send the current minute's slots when it starts after
# this second of the minute: it waits for the next minute instead.
PERIODIQ_LATE_SECOND = 55


def wait_for_next_minute_if_late(now: datetime.datetime | None = None) -> float:
    """Sleep into the next minute when periodiq would skip this one; returns the seconds slept.

    Otherwise that minute's slot would be neither sent by periodiq nor owed
    by the catch-up (which leaves the current minute to periodiq).
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now.second <= PERIODIQ_LATE_SECOND:
        return 0.0
    seconds = 60 - now.second - now.microsecond / 1e6 + 0.05
    time.sleep(seconds)
    return seconds


def stop_on_signals(heartbeat: Heartbeat, signums=(signal.SIGTERM, signal.SIGINT)) -> None:
    """Exit 0 on ``signums`` after removing the heartbeat (main thread only, where handlers run)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum, frame):
        logger.info("scheduler stopping on %s", signal.Signals(signum).name)
        heartbeat.stop()
        stopping.exit_when_safe(0)  # not between a slot's claim and its send

    for signum in signums:
        signal.signal(signum, stop)


def start_scheduler(settings: Settings, actors: dict[str, dramatiq.Actor]) -> Heartbeat:
    """Everything a periodiq process does before periodiq's loop; returns the running heartbeat."""
    prepare_or_exit(settings)
    wait_for_next_minute_if_late()
    heartbeat = Heartbeat(settings, "scheduler", {"jobs": sorted(actors)}).start()
    stop_on_signals(heartbeat)
    catch_up(settings, actors)
    return heartbeat
