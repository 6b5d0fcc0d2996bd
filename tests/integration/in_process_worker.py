"""A real Dramatiq worker in the test process, on crmtasks' own broker and middleware, for pipeline tests."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping

import dramatiq

from crmtasks.broker.actors import declare_actor
from crmtasks.broker.build import build_broker
from crmtasks.jobs.registry import JobSpec
from crmtasks.settings import get_settings


@dataclasses.dataclass
class InProcessWorker:
    """The broker, the declared test actors, and ``drain()``: wait until the queue is empty and every run ended.

    Parameters:
      broker(RedisBroker): crmtasks' broker with all its middleware.
      actors(dict): One actor per test job, by job name.
      worker(Worker): The running worker.
      join_timeout_ms(int): How long ``drain()`` waits for the queue, in milliseconds.
    """

    broker: dramatiq.Broker
    actors: Mapping[str, dramatiq.Actor]
    worker: dramatiq.Worker
    join_timeout_ms: int

    def drain(self) -> None:
        self.broker.join("default", timeout=self.join_timeout_ms)
        self.worker.join()


@contextlib.contextmanager
def in_process_worker(specs: Mapping[str, JobSpec], *, threads: int = 1,
                      join_timeout_ms: int = 20_000) -> Iterator[InProcessWorker]:
    """Start a worker with ``threads`` threads consuming the actors of ``specs``; stop it and empty the broker after.

    ``process_boot`` is emitted by hand: the ``dramatiq`` command does it, an in-process worker does not, and
    without it time limits never fire (see the stack notes).
    """
    broker = build_broker(get_settings())
    broker.emit_after("process_boot")
    actors = {name: declare_actor(broker, spec, spec.cron) for name, spec in specs.items()}
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=threads)
    worker.start()
    try:
        yield InProcessWorker(broker, actors, worker, join_timeout_ms)
    finally:
        worker.stop()
        broker.flush_all()
        broker.close()
