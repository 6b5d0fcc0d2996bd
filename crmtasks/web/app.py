"""Building and serving the dashboard WSGI application.

One small router: ``/login``, our pages (``/`` jobs, ``/runs`` history,
``POST /jobs/<task>/run``, ``POST /logout``), and dramatiq-dashboard mounted
under ``/dramatiq/`` (queues, messages, dead letters). Every path but
``/login`` is behind the login wall (``crmtasks.web.auth``), and every POST
to our pages must carry the session's CSRF token.

It binds 127.0.0.1 by default. Bound to any other address it refuses to
start without credentials (CRMTASKS_DASHBOARD_USER / _PASSWORD): a queue
console with delete, requeue and run-now buttons must not be open to the
network. waitress serves it: a pure-Python production WSGI server.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
import signal
from collections.abc import Callable, Mapping

import dramatiq
import redis

from crmtasks.broker.factory import build_runtime
from crmtasks.broker.heartbeats import Heartbeat
from crmtasks.errors import CrmtasksError
from crmtasks.settings import Settings, configure_logging
from crmtasks.web.auth import CSRF_FIELD, LOGIN_PATH, LoginWall, Visitor
from crmtasks.web.http import SECURITY_HEADERS, Request, Response, cookie_header, text
from crmtasks.web.pages import Pages
from crmtasks.web.rendering import make_environment
from crmtasks.web.session import SESSION_COOKIE, SessionSigner, install_key

logger = logging.getLogger(__name__)

# Where dramatiq-dashboard is mounted.
QUEUES_PREFIX = "/dramatiq"
# waitress threads serving requests; each may hold one pooled database connection during a request.
SERVER_THREADS = 4


class UnsafeBinding(CrmtasksError, ValueError):
    """Serving on a non-loopback address without credentials."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    handler: Callable[..., Response]


class DashboardApplication:
    """The dashboard as one WSGI callable.

    Parameters:
      settings(Settings): Credentials and schedules.
      broker(RedisBroker): The broker dramatiq-dashboard inspects.
      actors(Mapping[str, Actor]): The actors "run now" sends to, by task name.
      signer(SessionSigner): Signs sessions and CSRF tokens for these credentials.
    """

    def __init__(self, settings: Settings, broker: dramatiq.Broker, actors: Mapping[str, dramatiq.Actor],
                 signer: SessionSigner) -> None:
        from dramatiq_dashboard import DashboardApp

        self.templates = make_environment()
        self.signer = signer
        self.wall = LoginWall(settings, signer, self.render)
        self.pages = Pages(settings, actors, self.render)
        self.queues = DashboardApp(broker=broker, prefix=QUEUES_PREFIX)
        self.routes = [
            Route("GET", re.compile(r"/"), self.pages.jobs),
            Route("GET", re.compile(r"/runs/?"), self.pages.runs),
            Route("POST", re.compile(r"/jobs/(?P<task>[^/]+)/run"), self.pages.run_now),
            Route("POST", re.compile(r"/logout"), self.wall.logout),
        ]

    def __call__(self, environ, start_response):
        request = Request(environ)
        head = request.method == "HEAD"
        if request.path == LOGIN_PATH:
            return self.wall.login(request).respond(start_response, head=head)
        visitor = self.wall.visitor(request)
        if visitor is None:
            return self.wall.turn_away(request).respond(start_response, head=head)
        if request.path == QUEUES_PREFIX or request.path.startswith(QUEUES_PREFIX + "/"):
            return self._queues(environ, start_response, visitor)
        try:
            response = self._route(request, visitor)
        except Exception:  # one broken page must not take the dashboard down
            logger.exception("dashboard: %s %s failed", request.method, request.path)
            response = self.render("message.html", 500, visitor=visitor, title="Something went wrong",
                                   message="This page failed; the dashboard's log has the details "
                                           "(is PostgreSQL reachable and the schema migrated?).")
        if visitor.new_cookie:
            response.set_cookie(SESSION_COOKIE, visitor.session_cookie, max_age=self.signer.lifetime_s,
                                secure=request.secure)
        return response.respond(start_response, head=head)

    def render(self, template: str, status: int, **context) -> Response:
        """Render one of our templates with what every page needs (login state, nav, CSRF field name)."""
        context.setdefault("page", None)
        body = self.templates.get_template(template).render(
            login_required=self.wall.login_required, queues_url=QUEUES_PREFIX + "/", csrf_field=CSRF_FIELD,
            **context)
        return Response(status=status, body=body)

    def _route(self, request: Request, visitor: Visitor) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        allowed = []
        for route in self.routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            if method == "POST" and not self.signer.csrf_valid(visitor.session_cookie, request.form.get(CSRF_FIELD)):
                logger.warning("dashboard: refused %s %s without a valid CSRF token", method, request.path)
                return self.render("message.html", 403, visitor=visitor, title="Form expired",
                                   message="This form was not sent from a page of your current session. "
                                           "Reload the page and try again.")
            return route.handler(request, visitor, **match.groupdict())
        if allowed:
            response = text(405, "method not allowed")
            response.headers.append(("Allow", ", ".join(allowed)))
            return response
        return self.render("message.html", 404, visitor=visitor, title="Not found",
                           message=f"Nothing lives at {request.path}.")

    def _queues(self, environ, start_response, visitor: Visitor):
        """Serve a dramatiq-dashboard page, with our top bar (navigation, login state) added to its HTML."""
        inner = dict(environ, SCRIPT_NAME=environ.get("SCRIPT_NAME", "") + QUEUES_PREFIX,
                     PATH_INFO=environ.get("PATH_INFO", "")[len(QUEUES_PREFIX):])
        captured: dict = {}

        def capture(status, headers, exc_info=None):
            captured.update(status=status, headers=headers)
            return lambda data: None  # dramatiq-dashboard returns its body; it never calls write()

        chunks = self.queues(inner, capture)
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        headers = [(name, value) for name, value in captured["headers"] if name.lower() != "content-length"]
        if any(name.lower() == "content-type" and value.startswith("text/html") for name, value in headers):
            topbar = self.templates.get_template("_topbar.html").render(
                visitor=visitor, login_required=self.wall.login_required, queues_url=QUEUES_PREFIX + "/",
                csrf_field=CSRF_FIELD, page="queues")
            body = body.replace(b"<body>", b"<body>" + topbar.encode("utf-8"), 1)
        headers += [("Content-Length", str(len(body))), *SECURITY_HEADERS]
        if visitor.new_cookie:
            headers.append(("Set-Cookie", cookie_header(SESSION_COOKIE, visitor.session_cookie,
                                                        max_age=self.signer.lifetime_s,
                                                        secure=environ.get("wsgi.url_scheme") == "https")))
        start_response(captured["status"], headers)
        return [body]


def build_app(settings: Settings) -> DashboardApplication:
    """The dashboard for ``settings``, with its broker and actors (so every queue is listed) and the install key."""
    runtime = build_runtime(settings)
    signer = SessionSigner(install_key(settings.home), settings.dashboard_user or "",
                           settings.dashboard_password or "")
    return DashboardApplication(settings, runtime.broker, runtime.actors, signer)


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve the dashboard until interrupted; UnsafeBinding when exposed without a login."""
    if not settings.dashboard_user and not is_loopback(host):
        raise UnsafeBinding(
            f"refusing to serve the dashboard on {host} without a login; set CRMTASKS_DASHBOARD_USER and "
            "CRMTASKS_DASHBOARD_PASSWORD, or bind 127.0.0.1")
    import waitress

    # A service like the workers: its libraries' INFO records (waitress, Dramatiq) are logged too.
    configure_logging(settings, libraries_level="INFO")
    app = build_app(settings)
    if settings.dashboard_user:
        logger.info("dashboard: serving http://%s:%d/ (login required)", host, port)
    else:
        logger.warning("dashboard: serving http://%s:%d/ with login off (no CRMTASKS_DASHBOARD_USER/PASSWORD)",
                       host, port)
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
