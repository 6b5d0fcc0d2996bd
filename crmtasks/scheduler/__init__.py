"""The scheduler: cron schedules in each job's zone, one claim per slot across schedulers, pauses, and start-up catch-up.

periodiq runs the loop; ``cron`` gives it schedules read in a job's IANA
zone (UTC by default) with defined DST nights, ``runtime`` and ``live`` let
operators change a schedule while schedulers run, ``slots`` makes
each (job, minute) enqueued once however many schedulers run, ``pauses``
lets operators stop a job without a redeploy, and ``boot`` is what a
scheduler process does when it starts (heartbeat, catch-up).
"""

from crmtasks.scheduler.cron import UtcCron, ZonedCron
from crmtasks.scheduler.pauses import is_paused, pause, resume

__all__ = ["UtcCron", "ZonedCron", "is_paused", "pause", "resume"]
