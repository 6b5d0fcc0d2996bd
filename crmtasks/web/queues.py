"""dramatiq-dashboard (queues, messages, dead letters) mounted at ``/dramatiq`` inside our Flask app.

It is mounted by a Flask view that hands the request on to its WSGI app,
rather than beside Flask (werkzeug's DispatcherMiddleware): that way the
checks every one of our requests goes through cover it too, in one place.
The login wall admits or turns away, the Origin check refuses POSTs from
other sites, and Flask-WTF refuses a POST without our session-bound CSRF
token. dramatiq-dashboard's own CSRF is a double-submit cookie
(``__dd_csrf``) that is not tied to any session: whoever can plant that
cookie (a sibling subdomain, a man in the middle of plain HTTP) can forge
its requeue and delete. It still runs, but no longer decides alone.

Its pages get our top bar, and each of its POST forms gets our CSRF field.
A requeue or delete it carried out (it answered with its redirect) is
written to the operator trail (``crmtasks.runs.trail``) with the message's
queue, id and actor. Its pages show a failed message's options, the
traceback Dramatiq stored among them included: every password of our
settings is masked in them, as in everything else we show.
"""

from __future__ import annotations

import html
import io
import logging
import re

import dramatiq
import flask
import markupsafe
from dramatiq import Message
from dramatiq_dashboard import DashboardApp
from flask_wtf.csrf import generate_csrf

from crmtasks.runs.trail import OperatorAction, record_operator_action
from crmtasks.settings import Settings
from crmtasks.settings.secrets import scrub
from crmtasks.web.auth import CSRF_FIELD
from crmtasks.web.operators import current_operator
from crmtasks.web.rendering import render_page

logger = logging.getLogger(__name__)

# Where dramatiq-dashboard is mounted.
QUEUES_PREFIX = "/dramatiq"
# Its actions, and the form fields each needs (it answers 500 to a POST without them).
_ACTIONS = {"delete-message": ("queue", "id"), "requeue-message": ("queue", "id")}
# The trail's name of each.
_TRAIL_ACTIONS = {"delete-message": OperatorAction.DEAD_LETTER_DELETE,
                  "requeue-message": OperatorAction.DEAD_LETTER_REQUEUE}
_POST_FORM = re.compile(rb"<form\b[^>]*\bmethod=[\"']?post[\"']?[^>]*>", re.IGNORECASE)
_HOP_BY_HOP = {"content-length", "connection", "transfer-encoding"}


class QueueConsole:
    """dramatiq-dashboard for one broker, served through our views.

    Parameters:
      broker(RedisBroker): The broker it inspects; the dashboard process must have declared the
        actors on it, or its queue list is empty.
      settings(Settings): Whose passwords are masked in its pages.
    """

    def __init__(self, broker: dramatiq.Broker, settings: Settings) -> None:
        self.broker = broker
        self.app = DashboardApp(broker=broker, prefix=QUEUES_PREFIX)
        # Each password as written, and as it reads once HTML-escaped in a page (by Jinja's markupsafe or otherwise).
        self.secrets = sorted({variant for secret in settings.secrets if secret
                               for variant in (secret, str(markupsafe.escape(secret)), html.escape(secret),
                                               html.escape(secret, quote=False))})

    def register(self, app: flask.Flask) -> None:
        """Serve it at ``/dramatiq/`` (``/dramatiq`` redirects there) for GET, HEAD and POST."""
        app.add_url_rule(QUEUES_PREFIX + "/", "queues", self.forward, defaults={"rest": ""},
                         methods=["GET", "POST"])
        app.add_url_rule(QUEUES_PREFIX + "/<path:rest>", "queues_path", self.forward, methods=["GET", "POST"])

    def forward(self, rest: str) -> flask.Response:
        """Hand this request (already past the wall, the Origin and the CSRF checks) to dramatiq-dashboard."""
        request = flask.request
        if request.method == "POST":
            missing = [name for name in _ACTIONS.get(rest.rstrip("/"), ()) if not request.form.get(name)]
            if missing:
                return render_page("message.html", 400, title="Incomplete request",
                                   message=f"This queue action needs the form fields {', '.join(missing)}.")
        action = _TRAIL_ACTIONS.get(rest.rstrip("/")) if request.method == "POST" else None
        message = self._message(request.form["queue"], request.form["id"]) if action else None
        body = request.get_data()  # kept by the guard before our CSRF check parsed the form
        environ = dict(request.environ, SCRIPT_NAME=request.script_root + QUEUES_PREFIX, PATH_INFO="/" + rest,
                       CONTENT_LENGTH=str(len(body)))
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            status, headers, content = _call(self.app, environ)
        except (KeyError, ValueError, TypeError) as error:
            logger.warning("dashboard: the queue console refused %s %s: %r", request.method, request.path, error)
            return render_page("message.html", 400, title="Bad request",
                               message="The queue console cannot answer this request (a parameter is missing or "
                                       "malformed).")
        headers = [(name, value) for name, value in headers if name.lower() not in _HOP_BY_HOP]
        if action and message is not None and status.startswith("30"):  # done: it redirects to the queue
            record_operator_action(action, current_operator(), target=f"{request.form['queue']}/{request.form['id']}",
                                   details={"actor": message.actor_name, "message_id": message.message_id})
        if any(name.lower() == "content-type" and value.startswith("text/html") for name, value in headers):
            content = scrub(self._decorate(content).decode("utf-8", "replace"), self.secrets).encode("utf-8")
        return flask.Response(content, status=status, headers=headers)

    def _message(self, queue: str, redis_id: str) -> Message | None:
        """The message filed under ``redis_id`` in ``queue`` (``default.XQ``), as the console will act on it."""
        data = self.broker.client.hget(f"{self.broker.namespace}:{queue}.msgs", redis_id)
        try:
            return Message.decode(data) if data else None
        except Exception:  # noqa: BLE001 - not a message we can read: the console answers for it
            return None

    def _decorate(self, page: bytes) -> bytes:
        """Our top bar after ``<body>``, our CSRF field in every POST form."""
        topbar = flask.render_template("_topbar.html", page="queues").encode("utf-8")
        field = f'<input type="hidden" name="{CSRF_FIELD}" value="{generate_csrf()}">'.encode("utf-8")
        page = page.replace(b"<body>", b"<body>" + topbar, 1)
        return _POST_FORM.sub(lambda match: match.group(0) + field, page)


def _call(app, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app on ``environ``: its status line, headers and whole body."""
    captured: dict = {}

    def start_response(status, headers, exc_info=None):
        captured.update(status=status, headers=headers)
        return lambda data: None  # dramatiq-dashboard returns its body; it never calls write()

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return captured["status"], list(captured["headers"]), body
