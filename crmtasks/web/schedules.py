"""The schedule form on a job's page: preview the next fire times, then save; or go back to the default.

Three POSTs, each behind the login wall and Flask-WTF's session-bound CSRF
check like every form of the dashboard:

- ``/jobs/<job>/schedule/preview``: validates the cron expression and zone
  and shows the job's page with the next five fire times and a Save button
  (nothing stored); a mistake is one line on the page, answered 400;
- ``/jobs/<job>/schedule``: validates again and stores it
  (crmtasks.scheduler.runtime.set_schedule, with its operator trail row),
  then back to the job's page;
- ``/jobs/<job>/schedule/reset``: removes the stored schedule.

Where ``CRMTASKS_SCHEDULE_<TASK>`` wins (the dashboard's environment or a
running scheduler's), the page says so next to the form.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import flask

from crmtasks.jobs import registry
from crmtasks.scheduler import runtime
from crmtasks.scheduler.overrides import overriding_schedulers
from crmtasks.settings import Settings
from crmtasks.web.operators import current_operator
from crmtasks.web.rendering import render_page

logger = logging.getLogger(__name__)
# What a saved or reset form comes back with (``?schedule=...``), and the notice shown for it.
NOTICES = {"saved": "Schedule saved: every running scheduler follows it from its next minute.",
           "reset": "Stored schedule removed: the default applies again.",
           "unchanged": "There was no stored schedule: the default applies."}


class ScheduleForms:
    """The schedule form's views; the job's page is drawn by ``show_job(name, status, **extra)``.

    Parameters:
      settings(Settings): The dashboard's settings (its own environment overrides).
      show_job(callable): Renders a job's page with extra context (crmtasks.web.pages.Pages.job_page).
    """

    def __init__(self, settings: Settings, show_job) -> None:
        self.settings = settings
        self.show_job = show_job

    def register(self, app: flask.Flask) -> None:
        app.add_url_rule("/jobs/<name>/schedule/preview", "schedule_preview", self.preview, methods=["POST"])
        app.add_url_rule("/jobs/<name>/schedule", "schedule_save", self.save, methods=["POST"])
        app.add_url_rule("/jobs/<name>/schedule/reset", "schedule_reset", self.reset, methods=["POST"])

    def context(self, task: str) -> dict:
        """What the job's page shows about its schedule: in force, stored, overrides, and a notice."""
        schedule = runtime.schedules_in_force(self.settings)[task]
        return {"schedule": schedule, "overriding_schedulers": (overriding_schedulers(self.settings) or {}).get(task, []),
                "schedule_notice": NOTICES.get(flask.request.args.get("schedule", "")),
                "form_cron": schedule.cron, "form_zone": schedule.zone, "preview": None, "schedule_error": None}

    def preview(self, name: str) -> flask.Response:
        task = registry.find(name)
        if task is None:
            return _no_such_job(name)
        cron, zone = _form_values()
        try:
            parsed = runtime.parse_schedule(cron, zone)
        except runtime.ScheduleError as error:
            return self.show_job(task.name, 400, form_cron=cron, form_zone=zone, schedule_error=str(error))
        return self.show_job(task.name, 200, form_cron=parsed.expression, form_zone=parsed.zone_name,
                             preview=[(moment, moment.astimezone(parsed.zone)) for moment in runtime.preview(parsed)])

    def save(self, name: str) -> flask.Response:
        task = registry.find(name)
        if task is None:
            return _no_such_job(name)
        cron, zone = _form_values()
        try:
            runtime.set_schedule(task.name, cron, zone, operator=current_operator())
        except runtime.ScheduleError as error:
            return self.show_job(task.name, 400, form_cron=cron, form_zone=zone, schedule_error=str(error))
        return _back_to(task.name, "saved")

    def reset(self, name: str) -> flask.Response:
        task = registry.find(name)
        if task is None:
            return _no_such_job(name)
        removed = runtime.reset_schedule(task.name, operator=current_operator())
        return _back_to(task.name, "reset" if removed else "unchanged")


def _form_values() -> tuple[str, str]:
    form = flask.request.form
    return form.get("cron", "").strip(), form.get("zone", "").strip() or "UTC"


def _back_to(task: str, outcome: str) -> flask.Response:
    return flask.redirect(f"/jobs/{task}?" + urlencode({"schedule": outcome}), 303)


def _no_such_job(name: str) -> flask.Response:
    shown = name if len(name) <= 60 else name[:60] + "…"
    return render_page("message.html", 404, title="No such job", message=f"There is no job called {shown!r}.")
