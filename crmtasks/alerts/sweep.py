"""What the heartbeats check for alerts: overdue jobs, no live scheduler, no live worker on a queue.

Every worker process and every scheduler runs an ``AlertSweep`` next to its
heartbeat, so alerts need no process of their own and keep working while
any one of them lives. A sweep runs at most once per ``every_s`` in the
whole deployment (a Redis key with that expiry decides whose turn it is),
so adding processes adds no load. Each check opens or resolves its
incident (crmtasks.alerts.incidents), which keeps alerts to one per
incident and one when it ends, however often and wherever the check runs.

- **overdue:<job>**: an active job whose last success is more than twice
  its interval ago (what ``crmtasks check`` calls overdue). A job that never
  succeeded is not judged here: it has nothing to be late from, and its
  failures alert on their own. Resolved by a success, or by a pause.
- **no_scheduler**, **no_worker:<queue>**: no live heartbeat of a scheduler,
  or of a worker consuming a queue that a job uses, for ``grace_s`` (a
  restart is not an incident). Resolved when one is back.
- **job_failed:<job>** (opened by the worker that saw the final failure) is
  also resolved here, when the job has succeeded since, however it ran.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

from crmtasks.alerts import failures
from crmtasks.alerts.incidents import Incidents
from crmtasks.jobs import registry
from crmtasks.redis_client import get_redis, key
from crmtasks.runs.overview import JobOverview, job_overviews
from crmtasks.runs.status import JobState
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)
UTC = datetime.timezone.utc
SWEEP_EVERY_S = 15.0
GRACE_S = 60.0


def is_overdue(job: JobOverview, now: datetime.datetime) -> bool:
    """True when an active job last succeeded more than twice its interval before ``now``."""
    if job.state == JobState.PAUSED or job.last_success_at is None:
        return False
    return now - job.last_success_at > datetime.timedelta(seconds=2 * job.interval_s)


class AlertSweep:
    """One process's share of the alert checks.

    Parameters:
      settings(Settings): The deployment (Redis, PostgreSQL, schedules, alert destinations).
      live_processes(callable): ``live_processes(settings, role)`` returns the live heartbeats of
        ``worker`` or ``scheduler`` processes (crmtasks.broker.heartbeats.alive; passed in because
        the broker, which reports final failures, imports this package).
      every_s(float): Seconds between two sweeps in the whole deployment (0: every tick sweeps).
      grace_s(float): Seconds a missing scheduler or worker is tolerated before its alert.
      incidents(Incidents|None): Default: the settings' Redis and destinations.
    """

    def __init__(self, settings: Settings, live_processes: Callable[[Settings, str], list[dict]], *,
                 every_s: float = SWEEP_EVERY_S, grace_s: float = GRACE_S,
                 incidents: Incidents | None = None) -> None:
        self.settings = settings
        self.live_processes = live_processes
        self.every_s = every_s
        self.grace_s = grace_s
        self.incidents = incidents or Incidents(settings)
        self.sweeps = 0

    def tick(self, now: datetime.datetime | None = None) -> bool:
        """Sweep if it is this process's turn; True when it swept. Never raises (failures are logged)."""
        try:
            if not self._my_turn():
                return False
        except Exception as error:  # Redis down: the heartbeat says so already
            logger.warning("alert sweep skipped: %s", error)
            return False
        now = now or datetime.datetime.now(UTC)
        for check in (self._check_processes, self._check_jobs):
            try:
                check(now)
            except Exception:  # one check's fault (PostgreSQL down) must not stop the other
                logger.exception("alert check %s failed", check.__name__)
        self.sweeps += 1
        return True

    def _my_turn(self) -> bool:
        if self.every_s <= 0:
            return True
        turn = key(self.settings, "alert", "sweep-turn")
        return bool(get_redis(self.settings).set(turn, "1", nx=True, px=int(self.every_s * 1000)))

    def _check_processes(self, now: datetime.datetime) -> None:
        schedulers = self.live_processes(self.settings, "scheduler")
        self._held("no_scheduler", not schedulers, now, "no live scheduler",
                   "No periodiq scheduler has sent a heartbeat: no job is being scheduled. "
                   "Start `periodiq crmtasks.tasks` (see `crmtasks check`).",
                   "a scheduler is live again", "A periodiq scheduler sends heartbeats again.")
        consumed = {queue for worker in self.live_processes(self.settings, "worker")
                    for queue in worker.get("queues", [])}
        for queue in sorted({spec.queue for spec in registry.JOBS}):
            jobs = ", ".join(spec.name for spec in registry.JOBS if spec.queue == queue)
            self._held(f"no_worker:{queue}", queue not in consumed, now, f"no live worker on queue {queue}",
                       f"No worker consumes queue {queue}, so its jobs ({jobs}) do not run. "
                       f"Start `dramatiq crmtasks.tasks --queues {queue}`.",
                       f"a worker consumes queue {queue} again", f"Jobs of queue {queue} ({jobs}) can run again.")

    def _held(self, incident_id: str, condition: bool, now: datetime.datetime, title: str, body: str,
              resolved_title: str, resolved_body: str) -> None:
        """Open the incident once ``condition`` has held for the grace period; resolve it when it clears."""
        if not condition:
            self.incidents.resolve(incident_id, resolved_title, resolved_body)
        elif self.incidents.noticed_for(incident_id, now.timestamp()) >= self.grace_s:
            self.incidents.open(incident_id, title, body)

    def _check_jobs(self, now: datetime.datetime) -> None:
        open_ids = set(self.incidents.open_ids())
        for job in job_overviews(self.settings, now):
            if is_overdue(job, now):
                self.incidents.open(
                    f"overdue:{job.task}", f"job {job.task} is overdue",
                    f"Job {job.task} last succeeded at {job.last_success_at:%Y-%m-%d %H:%M} UTC, more than twice "
                    f"its interval ({job.interval_s / 60:.0f} min) ago. Last status: {job.last_status or 'none'}"
                    f"{'; ' + job.last_error if job.last_error else ''}. See `crmtasks check`.")
            elif f"overdue:{job.task}" in open_ids:
                why = "it is paused" if job.state == JobState.PAUSED else "it succeeded"
                self.incidents.resolve(f"overdue:{job.task}", f"job {job.task} is no longer overdue",
                                       f"Job {job.task} is no longer overdue: {why}.")
            failed_id = failures.incident_id(job.task)
            if failed_id in open_ids and job.last_success_at is not None:
                opened_at = self.incidents.opened_at(failed_id)
                if opened_at is not None and job.last_success_at.timestamp() > opened_at:
                    failures.succeeded(self.incidents, job.task)


def run_forever(sweep: AlertSweep, stop, interval_s: float) -> None:
    """Tick ``sweep`` every ``interval_s`` seconds until the ``stop`` event is set (a heartbeat's thread)."""
    while not stop.wait(interval_s):
        sweep.tick()
