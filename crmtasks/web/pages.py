"""Our dashboard pages: the jobs, one job, the recent runs, and "run now".

Read-only except ``run_now``, which enqueues one message for a job exactly
as the scheduler would, minus the schedule slot (the worker records it in
task_runs with trigger ``manual`` and who started it), and ``pause`` and
``resume``. Each of those three is written to the operator trail
(``crmtasks.runs.trail``) before it is done. Every query parameter is checked before
it reaches PostgreSQL: a job name that cannot be one (a NUL, which
PostgreSQL refuses in text, a space, 200 characters) is a 400 that says so.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Mapping
from urllib.parse import urlencode

import dramatiq
import flask

from crmtasks.broker.actors import manual_message
from crmtasks.jobs import registry
from crmtasks.runs.overview import job_overviews, recent_runs
from crmtasks.runs.status import RunStatus
from crmtasks.runs.trail import OperatorAction, record_operator_action, started_by
from crmtasks.scheduler import pauses
from crmtasks.scheduler.cron import ZonedCron
from crmtasks.settings import Settings
from crmtasks.user_text import check_text
from crmtasks.web.charts import duration_chart
from crmtasks.web.operators import current_operator
from crmtasks.web.rendering import render_page
from crmtasks.web.schedules import ScheduleForms

logger = logging.getLogger(__name__)

UTC = datetime.timezone.utc
DEFAULT_RUNS_SHOWN = 50
MOST_RUNS_SHOWN = 500
# Runs a job's page charts and lists; its next fire times shown.
JOB_PAGE_RUNS = 100
JOB_PAGE_NEXT_RUNS = 10
# What a job name can look like (the registry's names are snake_case); anything else is refused before SQL.
JOB_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_MESSAGE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Pages:
    """The views of our pages.

    Parameters:
      settings(Settings): The schedules in force.
      actors(Mapping[str, Actor]): The declared actors by job name (``crmtasks.broker.factory.Runtime.actors``).
    """

    def __init__(self, settings: Settings, actors: Mapping[str, dramatiq.Actor]) -> None:
        self.settings = settings
        self.actors = actors
        self.schedule_forms = ScheduleForms(settings, self.job_page)

    def register(self, app: flask.Flask) -> None:
        self.schedule_forms.register(app)
        app.add_url_rule("/", "jobs", self.jobs)
        app.add_url_rule("/runs", "runs", self.runs)
        app.add_url_rule("/jobs/<name>", "job", self.job)
        app.add_url_rule("/jobs/<name>/run", "run_now", self.run_now, methods=["POST"])
        app.add_url_rule("/jobs/<name>/pause", "pause", self.pause, methods=["POST"])
        app.add_url_rule("/jobs/<name>/resume", "resume", self.resume, methods=["POST"])

    def jobs(self) -> flask.Response:
        """Every job: schedule, queue, last and next run, last outcome, state, and a run-now button."""
        query = flask.request.args
        sent = None
        name, message_id = query.get("sent"), query.get("message", "")
        if name in registry.names() and _MESSAGE_ID.match(message_id):
            redis_id = query.get("redis_id", "")
            sent = {"task": name, "message_id": message_id, "queue": registry.get(name).queue,
                    "redis_id": redis_id if _MESSAGE_ID.match(redis_id) else None}
        return render_page("jobs.html", 200, page="jobs", jobs=job_overviews(self.settings), sent=sent)

    def runs(self) -> flask.Response:
        """The latest runs, newest first, optionally of one job (``?task=NAME&limit=N``)."""
        query = flask.request.args
        name = query.get("task") or None
        if name is not None and not JOB_NAME.fullmatch(name):
            return _not_a_job_name(name)
        try:
            limit = max(1, min(int(query.get("limit") or DEFAULT_RUNS_SHOWN), MOST_RUNS_SHOWN))
        except ValueError:
            limit = DEFAULT_RUNS_SHOWN
        return render_page("runs.html", 200, page="runs", runs=recent_runs(limit, name), task=name, limit=limit,
                           task_names=registry.names())

    def job(self, name: str) -> flask.Response:
        """One job: its schedule and state, next fire times, a chart of its last runs' durations, its failures."""
        if not JOB_NAME.fullmatch(name):
            return _not_a_job_name(name)
        return self.job_page(name, 200)

    def job_page(self, name: str, status: int, **extra) -> flask.Response:
        """A job's page answered with ``status``; ``extra`` fills the schedule form (crmtasks.web.schedules)."""
        overview = next((job for job in job_overviews(self.settings) if job.task == name), None)
        if overview is None:
            return render_page("message.html", 404, title="No such job", message=f"There is no job called {name!r}.")
        runs = recent_runs(JOB_PAGE_RUNS, name)
        now = datetime.datetime.now(UTC)
        last_success = next((run for run in runs if run.status == RunStatus.SUCCEEDED), None)
        cron = ZonedCron(overview.schedule, overview.zone)
        context = dict(self.schedule_forms.context(name), **extra)
        return render_page(
            "job.html", status, page="jobs", job=overview, runs=runs, chart=duration_chart(runs),
            failures=[run for run in runs if run.status == RunStatus.FAILED], last_success=last_success,
            next_runs=[(moment, moment.astimezone(cron.zone)) for moment in cron.next_slots(now, JOB_PAGE_NEXT_RUNS)],
            shown=JOB_PAGE_RUNS, **context)

    def run_now(self, name: str) -> flask.Response:
        """Enqueue one run of ``name`` now (404 for an unknown job, 409 for a paused one); CSRF checked already."""
        spec = registry.find(name)
        if spec is None or spec.name not in self.actors:
            return render_page("message.html", 404, title="No such job", message=f"There is no job called {name!r}.")
        if pauses.is_paused(spec.name):
            # Workers skip a paused job's messages, whoever sent them.
            return render_page("message.html", 409, title=f"{spec.name} is paused",
                               message=f"Resume it first (crmtasks resume {spec.name}); "
                                       "a paused job's messages are skipped by the workers.")
        operator = current_operator()
        actor = self.actors[spec.name]
        message = manual_message(actor, started_by(operator))
        # The trail first: a run is never started unrecorded (a send that then fails leaves a row whose
        # message id no task_runs row has).
        record_operator_action(OperatorAction.RUN_NOW, operator, target=spec.name,
                               details={"message_id": message.message_id, "queue": spec.queue})
        message = actor.broker.enqueue(message)
        logger.info("dashboard: %s enqueued %s on queue %s, message %s", operator.who, spec.name,
                    spec.queue, message.message_id)
        # The Redis broker files the message under an id of its own; dramatiq-dashboard shows that one.
        redis_id = message.options.get("redis_message_id", "")
        return flask.redirect("/?" + urlencode({"sent": spec.name, "message": message.message_id,
                                                "redis_id": redis_id}), 303)


    def pause(self, name: str) -> flask.Response:
        """Pause a job (``note`` from the form), as ``crmtasks pause`` does; CSRF checked already."""
        spec = registry.find(name)
        if spec is None:
            return render_page("message.html", 404, title="No such job", message=f"There is no job called {name!r}.")
        note = flask.request.form.get("note", "").strip()
        try:
            check_text(note, "note")
        except ValueError as error:
            return render_page("message.html", 400, title="Not a note", message=str(error))
        operator = current_operator()
        record_operator_action(OperatorAction.PAUSE, operator, target=spec.name, details={"note": note})
        pauses.pause(spec.name, note)
        logger.info("dashboard: %s paused %s", operator.who, spec.name)
        return flask.redirect(f"/jobs/{spec.name}", 303)

    def resume(self, name: str) -> flask.Response:
        """Resume a paused job, as ``crmtasks resume`` does; CSRF checked already."""
        spec = registry.find(name)
        if spec is None:
            return render_page("message.html", 404, title="No such job", message=f"There is no job called {name!r}.")
        operator = current_operator()
        record_operator_action(OperatorAction.RESUME, operator, target=spec.name)
        was_paused = pauses.resume(spec.name)
        logger.info("dashboard: %s resumed %s (%s)", operator.who, spec.name,
                    "was paused" if was_paused else "was not paused")
        return flask.redirect(f"/jobs/{spec.name}", 303)


def _not_a_job_name(name: str) -> flask.Response:
    shown = name if len(name) <= 60 else name[:60] + "…"
    return render_page("message.html", 400, title="Not a job name",
                       message=f"{shown!r} is not a job name: job names are 1 to 100 letters, digits, "
                               "'_', '.', ':' or '-'.")
