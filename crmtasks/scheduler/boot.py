"""What a periodiq scheduler process does when it starts, besides periodiq's own loop.

It announces itself (a heartbeat that ``crmtasks check`` reads), sends again
or closes the slots a killed scheduler claimed and never sent
(``crmtasks.scheduler.stranded``), and settles
the slots that passed while no scheduler ran: only the latest slot runs,
once. That is this minute's slot when the schedule fires now (no older one
is caught up then), else the latest missed one if it is within the
catch-up window; older ones are recorded as missed. With two schedulers
starting together, slot claims keep each slot single.
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
from crmtasks.scheduler.stranded import settle_stranded
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)


def catch_up(settings: Settings, actors: dict[str, dramatiq.Actor],
             now: datetime.datetime | None = None) -> dict[str, dict]:
    """Settle the slots missed while no scheduler ran; returns what was done per job.

    Per job (see ``slots.plan_catch_up``): the latest slot runs once. When
    the schedule fires this minute, that is this minute's slot, sent here
    (periodiq sends it too as it starts; the slot's claim keeps one), and
    nothing older is caught up. Otherwise the latest missed slot is sent as
    a catch-up. Older missed slots are recorded as skipped (missed).
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    done = {}
    for spec in registry.JOBS:
        actor = actors[spec.name]
        cron = actor.options["periodic"]
        plan = slots.plan_catch_up(cron, slots.latest_slot(spec.name), now, settings.catch_up_s)
        recorded = slots.record_missed(spec.name, plan.missed)
        # This minute's slot is sent here rather than left to periodiq alone: periodiq skips
        # the minute when it reaches its loop after second 55, and the plan counted on it.
        sent_now = send_for_slot(actor, plan.current) if plan.current else None
        message = send_for_slot(actor, plan.catch_up, catch_up=True) if plan.catch_up else None
        done[spec.name] = {"caught_up": plan.catch_up.isoformat() if message else None, "missed": recorded,
                           "sent": plan.current.isoformat() if sent_now else None}
        if message or recorded:
            logger.info("%s: caught up slot %s, recorded %d missed slots", spec.name,
                        plan.catch_up.isoformat() if message else "none", recorded)
    return done


# periodiq does not send the current minute's slots when it starts after
# this second of the minute: it waits for the next minute instead.
PERIODIQ_LATE_SECOND = 55


def wait_for_next_minute_if_late(now: datetime.datetime | None = None) -> float:
    """Sleep into the next minute when periodiq would skip this one; returns the seconds slept.

    Started later, periodiq would wait for the next minute and the catch-up
    would count this minute's slot as the one sent now.
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
    # The overrides are published so the CLI and the dashboard can say this scheduler ignores a stored schedule.
    heartbeat = Heartbeat(settings, "scheduler", {"jobs": sorted(actors),
                                                  "schedule_overrides": list(settings.schedule_overrides)}).start()
    stop_on_signals(heartbeat)
    try:
        settle_stranded(settings, actors)  # before the catch-up, which counts a claimed slot as done
    except Exception as error:  # noqa: BLE001 - scheduling goes on; the next start looks again
        logger.error("scheduler: the slots claimed and never sent could not be settled: %s", error)
    catch_up(settings, actors)
    return heartbeat
