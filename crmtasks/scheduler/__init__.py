"""The scheduler: UTC cron schedules, one claim per slot across schedulers, pauses, and start-up catch-up.

periodiq runs the loop; ``cron`` gives it UTC schedules, ``slots`` makes
each (job, minute) enqueued once however many schedulers run, ``pauses``
lets operators stop a job without a redeploy, and ``boot`` is what a
scheduler process does when it starts (heartbeat, catch-up).
"""

from crmtasks.scheduler.cron import UtcCron
from crmtasks.scheduler.pauses import is_paused, pause, resume

__all__ = ["UtcCron", "is_paused", "pause", "resume"]
