"""Our dashboard pages: the jobs, the recent runs, and "run now".

Read-only except ``run_now``, which enqueues one message for a job exactly
as the scheduler would, minus the schedule slot: the worker records it in
task_runs with trigger ``manual``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from urllib.parse import urlencode

import dramatiq

from crmtasks.jobs import registry
from crmtasks.runs.overview import job_overviews, recent_runs
from crmtasks.scheduler import pauses
from crmtasks.settings import Settings
from crmtasks.web.auth import Visitor
from crmtasks.web.http import Request, Response, redirect

logger = logging.getLogger(__name__)

DEFAULT_RUNS_SHOWN = 50
MOST_RUNS_SHOWN = 500
_MESSAGE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Pages:
    """Parameters:
      settings(Settings): The schedules in force.
      actors(Mapping[str, Actor]): The declared actors by task name (``crmtasks.broker.factory.Runtime.actors``).
      render(callable): ``render(template, status, **context) -> Response``.
    """

    def __init__(self, settings: Settings, actors: Mapping[str, dramatiq.Actor], render) -> None:
        self.settings = settings
        self.actors = actors
        self.render = render

    def jobs(self, request: Request, visitor: Visitor) -> Response:
        """Every job: schedule, queue, last and next run, last outcome, state, and a run-now button."""
        sent = None
        task, message_id = request.query.get("sent"), request.query.get("message", "")
        if task in registry.names() and _MESSAGE_ID.match(message_id):
            redis_id = request.query.get("redis_id", "")
            sent = {"task": task, "message_id": message_id, "queue": registry.get(task).queue,
                    "redis_id": redis_id if _MESSAGE_ID.match(redis_id) else None}
        return self.render("jobs.html", 200, visitor=visitor, page="jobs", jobs=job_overviews(self.settings),
                           sent=sent)

    def runs(self, request: Request, visitor: Visitor) -> Response:
        """The latest runs, newest first, optionally of one task (``?task=NAME&limit=N``)."""
        task = request.query.get("task") or None
        try:
            limit = max(1, min(int(request.query.get("limit") or DEFAULT_RUNS_SHOWN), MOST_RUNS_SHOWN))
        except ValueError:
            limit = DEFAULT_RUNS_SHOWN
        return self.render("runs.html", 200, visitor=visitor, page="runs", runs=recent_runs(limit, task),
                           task=task, limit=limit, task_names=registry.names())

    def run_now(self, request: Request, visitor: Visitor, task: str) -> Response:
        """Enqueue one run of ``task`` now (404 for an unknown job, 409 for a paused one); the caller checked CSRF."""
        spec = next((spec for spec in registry.JOBS if spec.name == task), None)
        if spec is None or spec.name not in self.actors:
            return self.render("message.html", 404, visitor=visitor, title="No such job",
                               message=f"There is no job called {task!r}.")
        if pauses.is_paused(spec.name):
            # Workers skip a paused job's messages, whoever sent them.
            return self.render("message.html", 409, visitor=visitor, title=f"{spec.name} is paused",
                               message=f"Resume it first (crmtasks resume {spec.name}); "
                                       "a paused job's messages are skipped by the workers.")
        message = self.actors[spec.name].send()
        logger.info("dashboard: %s enqueued %s on queue %s, message %s", visitor.user or "anonymous", spec.name,
                    spec.queue, message.message_id)
        # The Redis broker files the message under an id of its own; dramatiq-dashboard shows that one.
        redis_id = message.options.get("redis_message_id", "")
        return redirect("/?" + urlencode({"sent": spec.name, "message": message.message_id, "redis_id": redis_id}))
