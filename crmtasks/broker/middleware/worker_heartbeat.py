"""Publish each worker process's heartbeat and the queues it consumes (see crmtasks.broker.heartbeats).

A worker told to consume a queue that no registered job uses consumes
nothing from it (Dramatiq only consumes declared queues): it says so at
boot, and its heartbeat does not list the queue, so ``crmtasks check``
does not count it as serving that queue.

The heartbeat lasts until the worker has shut down, not until it is told
to: a job's lock names its worker's heartbeat, and a graceful stop lets the
running jobs finish (up to ten minutes) while holding their locks. A
heartbeat removed at the stop request would let another worker take over a
lock whose job is still running.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.common import dq_name, xq_name

from crmtasks.broker.heartbeats import Heartbeat
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)


class WorkerHeartbeat(dramatiq.Middleware):
    """Parameters:
      settings(Settings): Where Redis is, and the key prefix.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._heartbeat: Heartbeat | None = None

    def after_worker_boot(self, broker, worker):
        queues = sorted(name for name in worker.consumers if name not in
                        {dq_name(q) for q in worker.consumers} | {xq_name(q) for q in worker.consumers})
        idle = sorted(set(worker.consumer_whitelist or ()) - broker.get_declared_queues())
        if idle:
            logger.warning("no registered job uses queue(s) %s: this worker takes nothing from them", ", ".join(idle))
        self._heartbeat = Heartbeat(self.settings, "worker",
                                    {"queues": queues, "threads": worker.worker_threads,
                                     "db_pool_size": self.settings.db_pool_size}).start()

    def after_worker_shutdown(self, broker, worker):
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
