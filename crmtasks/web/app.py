"""Building and serving the dashboard: a Flask app, served by waitress.

Routes: ``/login`` and ``POST /logout`` (``crmtasks.web.auth``), our pages
(``/`` jobs, ``/jobs/<job>`` one job, ``/runs`` history, ``POST
/jobs/<job>/run|pause|resume``; ``crmtasks.web.pages``), the operator trail
(``/trail``; ``crmtasks.web.trail_page``), and dramatiq-dashboard under ``/dramatiq/``
(queues, messages, dead letters; ``crmtasks.web.queues``).

Every request passes, in this order: the Host and Origin checks
(``crmtasks.web.guard``), the login wall (every path but ``/login``), and,
for a POST, Flask-WTF's CSRF check against the token kept in the signed
session (``crmtasks.web.session``). Every answer carries headers that forbid
framing, sniffing, caching and scripts.

It binds 127.0.0.1 by default. Bound to any other address it refuses to
start without credentials (CRMTASKS_DASHBOARD_USER / _PASSWORD): a queue
console with delete, requeue and run-now buttons must not be open to the
network. waitress serves it: a pure-Python production WSGI server.
"""

from __future__ import annotations

import datetime
import logging
import signal
from collections.abc import Mapping

import dramatiq
import flask
import redis
import waitress
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from crmtasks.broker.factory import build_runtime
from crmtasks.broker.heartbeats import Heartbeat
from crmtasks.errors import CrmtasksError
from crmtasks.redis_client import get_redis
from crmtasks.settings import Settings, configure_logging
from crmtasks.web import guard, trail_page
from crmtasks.web.auth import CSRF_FIELD, LOGIN_PATH, LoginWall, safe_next
from crmtasks.web.pages import Pages
from crmtasks.web.queues import QUEUES_PREFIX, QueueConsole
from crmtasks.web.rendering import configure_templates, render_page
from crmtasks.web.session import (
    SESSION_COOKIE,
    SESSION_LIFETIME_S,
    SignedSessions,
    install_key,
    session_secret,
)
from crmtasks.web.throttle import LoginThrottle

logger = logging.getLogger(__name__)

# The largest request body read (bytes); our forms are a few hundred bytes.
MAX_FORM_BYTES = 64 * 1024
# waitress threads serving requests; each may hold one pooled database connection during a request.
SERVER_THREADS = 4

# Sent with every response: no framing (clickjacking of the run-now buttons),
# no sniffing, no caching of pages that show operational data, no scripts at all.
SECURITY_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
)


class UnsafeBinding(CrmtasksError, ValueError):
    """Serving on a non-loopback address without credentials."""


class Dashboard(flask.Flask):
    """The dashboard's Flask app, with its parts at hand (tests and ``build_app`` callers look at them).

    Parameters:
      import_name(str): Flask's; the templates are found next to this module.
    """

    wall: LoginWall
    pages: Pages
    queues: QueueConsole
    # Host names served with login off (lower case); None: any (login on).
    allowed_hosts: frozenset[str] | None


def create_app(settings: Settings, broker: dramatiq.Broker, actors: Mapping[str, dramatiq.Actor], key: bytes,
               redis_client: redis.Redis, bound_host: str = "127.0.0.1") -> Dashboard:
    """The dashboard for ``settings``.

    Parameters:
      settings(Settings): Credentials and schedules.
      broker(RedisBroker): The broker dramatiq-dashboard inspects.
      actors(Mapping[str, Actor]): The actors "run now" sends to, by job name.
      key(bytes): The per-install key (``crmtasks.web.session.install_key``).
      redis_client(redis.Redis): Where failed logins are counted.
      bound_host(str): The address served; with login off only its loopback names are accepted as ``Host``.
    """
    app = Dashboard(__name__, static_folder=None)  # no /static route: every page is rendered
    app.config.update(
        SECRET_KEY=session_secret(key, settings.dashboard_user or "", settings.dashboard_password or ""),
        SESSION_COOKIE_NAME=SESSION_COOKIE, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(seconds=SESSION_LIFETIME_S),
        SESSION_REFRESH_EACH_REQUEST=False,  # a login lasts SESSION_LIFETIME_S from the login, used or not
        WTF_CSRF_FIELD_NAME=CSRF_FIELD, WTF_CSRF_TIME_LIMIT=SESSION_LIFETIME_S,
        MAX_CONTENT_LENGTH=MAX_FORM_BYTES,
    )
    app.session_interface = SignedSessions()
    configure_templates(app)
    app.allowed_hosts = None if settings.dashboard_user else guard.loopback_names(bound_host)
    app.wall = LoginWall(settings, LoginThrottle(redis_client, settings))
    app.pages = Pages(settings, actors)
    app.queues = QueueConsole(broker, settings)
    # Order matters: Host and Origin first, then the wall, then Flask-WTF's CSRF check (it hooks in on creation).
    app.before_request(lambda: _check_host_and_origin(app))
    app.wall.register(app)
    CSRFProtect(app)
    app.pages.register(app)
    trail_page.register(app)
    app.queues.register(app)
    app.context_processor(lambda: {"visitor": flask.g.get("visitor"), "login_required": app.wall.login_required,
                                   "queues_url": QUEUES_PREFIX + "/", "csrf_field": CSRF_FIELD, "page": None})
    app.after_request(_add_security_headers)
    app.register_error_handler(HTTPException, lambda error: _error_page(app, error))
    return app


def _check_host_and_origin(app: Dashboard) -> flask.Response | None:
    """400 for a Host this dashboard does not answer to; 403 for a POST from another site (``crmtasks.web.guard``)."""
    request = flask.request
    if app.allowed_hosts is not None and guard.host_name(request.headers.get("Host")) not in app.allowed_hosts:
        logger.warning("dashboard: refused %s %s for Host %r (login is off: loopback names only)", request.method,
                       request.path, (request.headers.get("Host") or "")[:100])
        return flask.Response("This dashboard runs without login and answers only to "
                              f"{', '.join(sorted(app.allowed_hosts))}.\n", 400, mimetype="text/plain")
    if request.method != "POST":
        return None
    if guard.post_from_elsewhere(request.headers.get("Origin"), request.headers.get("Referer"),
                                 request.headers.get("Host", ""), request.scheme):
        logger.warning("dashboard: refused a cross-site POST to %s (Origin %r, Referer %r)", request.path,
                       request.headers.get("Origin"), request.headers.get("Referer"))
        return render_page("message.html", 403, title="Cross-site request refused",
                           message="This form was sent from a page of another site. Use the dashboard's own pages.")
    request.get_data()  # keep the raw body: the queue console reads it after Flask-WTF parsed the form
    return None


def _add_security_headers(response: flask.Response) -> flask.Response:
    for name, value in SECURITY_HEADERS:
        response.headers.setdefault(name, value)
    return response


def _error_page(app: Dashboard, error: HTTPException) -> flask.Response:
    """Our page for every HTTP error: the login form again for an expired login form, a short message otherwise."""
    request = flask.request
    if isinstance(error, CSRFError):
        logger.warning("dashboard: refused %s %s: %s", request.method, request.path, error.description)
        if request.path == LOGIN_PATH:
            return app.wall.login_form(403, safe_next(request.form.get("next")), user=request.form.get("user", ""),
                                       error="This login form expired. Log in again.")
        return render_page("message.html", 403, title="Form expired",
                           message="This form was not sent from a page of your current session. "
                                   "Reload the page and try again.")
    if error.code == 500:
        return render_page("message.html", 500, title="Something went wrong",
                           message="This page failed; the dashboard's log has the details "
                                   "(is PostgreSQL reachable and the schema migrated?).")
    message = f"Nothing lives at {request.path}." if error.code == 404 else error.description
    response = render_page("message.html", error.code or 500, title=error.name, message=message)
    if error.code == 405 and getattr(error, "valid_methods", None):
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def build_app(settings: Settings, bound_host: str = "127.0.0.1") -> Dashboard:
    """The dashboard for ``settings``, with its broker and actors (so every queue is listed) and the install key."""
    runtime = build_runtime(settings)
    return create_app(settings, runtime.broker, runtime.actors, install_key(settings.home), get_redis(settings),
                      bound_host)


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve the dashboard until interrupted; UnsafeBinding when exposed without a login."""
    if not settings.dashboard_user and not guard.is_loopback(host):
        raise UnsafeBinding(
            f"refusing to serve the dashboard on {host} without a login; set CRMTASKS_DASHBOARD_USER and "
            "CRMTASKS_DASHBOARD_PASSWORD, or bind 127.0.0.1")
    # A service like the workers: its libraries' INFO records (waitress, Dramatiq) are logged too.
    configure_logging(settings, libraries_level="INFO")
    app = build_app(settings, host)
    if settings.dashboard_user:
        logger.info("dashboard: serving http://%s:%d/ (login required)", host, port)
    else:
        logger.warning("dashboard: serving http://%s:%d/ with login off (no CRMTASKS_DASHBOARD_USER/PASSWORD); "
                       "answering only to %s", host, port, ", ".join(sorted(app.allowed_hosts or ())))
    server = waitress.create_server(app, host=host, port=port, threads=SERVER_THREADS, ident="crmtasks")
    # A process manager stops us with SIGTERM: close the listening socket and
    # exit 0 instead of dying of the signal.
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    # `crmtasks check` counts the dashboard's database connections from this.
    heartbeat = Heartbeat(settings, "dashboard", {"threads": SERVER_THREADS, "db_pool_size": settings.db_pool_size})
    try:
        heartbeat.start()
    except redis.RedisError as error:
        logger.warning("dashboard: heartbeat not written: %s", error)
    try:
        server.run()
    except (KeyboardInterrupt, OSError):
        pass  # run() ends with an error once its socket is closed under it
    finally:
        heartbeat.stop()
        logger.info("dashboard: stopped")
