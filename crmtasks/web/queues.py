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
"""

from __future__ import annotations

import io
import logging
import re

import dramatiq
import flask
from dramatiq_dashboard import DashboardApp
from flask_wtf.csrf import generate_csrf

from crmtasks.web.auth import CSRF_FIELD
from crmtasks.web.rendering import render_page

logger = logging.getLogger(__name__)

# Where dramatiq-dashboard is mounted.
QUEUES_PREFIX = "/dramatiq"
# Its actions, and the form fields each needs (it answers 500 to a POST without them).
_ACTIONS = {"delete-message": ("queue", "id"), "requeue-message": ("queue", "id")}
_POST_FORM = re.compile(rb"<form\b[^>]*\bmethod=[\"']?post[\"']?[^>]*>", re.IGNORECASE)
_HOP_BY_HOP = {"content-length", "connection", "transfer-encoding"}


class QueueConsole:
    """dramatiq-dashboard for one broker, served through our views.

    Parameters:
      broker(RedisBroker): The broker it inspects; the dashboard process must have declared the
        actors on it, or its queue list is empty.
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker
        self.app = DashboardApp(broker=broker, prefix=QUEUES_PREFIX)

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
        if any(name.lower() == "content-type" and value.startswith("text/html") for name, value in headers):
            content = self._decorate(content)
        return flask.Response(content, status=status, headers=headers)

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
