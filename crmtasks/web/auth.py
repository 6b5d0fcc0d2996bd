"""The login wall in front of every dashboard page, dramatiq-dashboard's included.

With credentials set (``CRMTASKS_DASHBOARD_USER``/``_PASSWORD``), a visitor
without a valid session is sent to the login form. The form carries a CSRF
token like every other form (Flask-WTF checks it before the view runs), the
credentials are compared in constant time, failed logins are limited per
user and per address (``crmtasks.web.throttle``), and a successful login
starts a new session (``crmtasks.web.session``): whatever the visitor's
session held before, its CSRF token included, is dropped. Every login,
failed or not, and every logout goes into the operator trail
(``crmtasks.runs.trail``) with the client's address, never the password; a
failed login names the user only when it is the dashboard's (a name typed
wrong may be a password typed in the wrong box).

Without credentials the dashboard only serves loopback names
(``crmtasks.web.guard``) and gives every visitor an anonymous session, which
its CSRF tokens are tied to; every page then says that login is off.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import time
from urllib.parse import quote, urlsplit

import flask
import redis
from flask_wtf.csrf import generate_csrf

from crmtasks.runs.trail import OperatorAction, record_operator_action
from crmtasks.settings import Settings
from crmtasks.web.operators import current_operator
from crmtasks.web.rendering import render_page
from crmtasks.web.session import SESSION_LIFETIME_S
from crmtasks.web.throttle import LoginThrottle

logger = logging.getLogger(__name__)

# Who a failed login is recorded as when the name typed is not the dashboard's user: what was typed may be
# somebody's password, so it is not kept.
UNKNOWN_USER = "(unknown user)"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
# Name of the CSRF field in every form that posts to the dashboard (Flask-WTF's default).
CSRF_FIELD = "csrf_token"


@dataclasses.dataclass(frozen=True)
class Visitor:
    """Someone allowed past the wall.

    Parameters:
      user(str|None): Their login; None when login is off.
    """

    user: str | None


def credentials_match(settings: Settings, user: str, password: str) -> bool:
    """True when ``user``/``password`` are the dashboard's; both compared in constant time, always both."""
    if not settings.dashboard_user or not settings.dashboard_password:
        return False
    user_ok = hmac.compare_digest(user.encode("utf-8", "replace"), settings.dashboard_user.encode("utf-8"))
    password_ok = hmac.compare_digest(password.encode("utf-8", "replace"), settings.dashboard_password.encode("utf-8"))
    return user_ok & password_ok


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this site only, else ``/``.

    Never ``//host``, ``https://host`` or ``/\\host``, and never a target with
    control characters (CR/LF would split the ``Location`` header; browsers
    drop tabs and newlines from URLs, turning ``/\\t/host`` into ``//host``).
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith((LOGIN_PATH, LOGOUT_PATH)):
        return "/"
    return target


class LoginWall:
    """Decides who gets past, and serves the login and logout endpoints.

    Parameters:
      settings(Settings): The dashboard credentials (none: login is off).
      throttle(LoginThrottle): Counts failed logins.
      lifetime_s(int): Seconds a session lasts from its login.
    """

    def __init__(self, settings: Settings, throttle: LoginThrottle, lifetime_s: int = SESSION_LIFETIME_S) -> None:
        self.settings = settings
        self.throttle = throttle
        self.lifetime_s = lifetime_s
        self.login_required = settings.dashboard_user is not None

    def register(self, app: flask.Flask) -> None:
        """Add the login and logout endpoints, and the wall before every other request."""
        app.add_url_rule(LOGIN_PATH, "login", self.login, methods=["GET", "POST"])
        app.add_url_rule(LOGOUT_PATH, "logout", self.logout, methods=["POST"])
        app.before_request(self.admit)

    def admit(self) -> flask.Response | None:
        """Before every request but the login page's: who the visitor is, or the way to the login form."""
        flask.g.visitor = None
        if flask.request.path == LOGIN_PATH:
            return None
        flask.g.visitor = self.visitor()
        return self.turn_away() if flask.g.visitor is None else None

    def visitor(self) -> Visitor | None:
        """The visitor of this request; None when login is required and there is no valid session."""
        session = flask.session
        expires_at = session.get("expires_at")
        live = isinstance(expires_at, int) and expires_at > time.time()
        user = session.get("user")
        if self.login_required:
            if live and isinstance(user, str) and hmac.compare_digest(user.encode(), self.settings.dashboard_user.encode()):
                return Visitor(user=user)
            return None
        if not (live and user == ""):
            self._start_session("")
        return Visitor(user=None)

    def _start_session(self, user: str) -> None:
        """A new session for ``user``: nothing of the previous one is kept, so neither is its CSRF token.

        The new session's CSRF token is made now, so that the cookie set here
        stays the session's cookie until it ends (made lazily, it would change
        the cookie again on the first page with a form).
        """
        flask.session.clear()
        flask.session["user"] = user
        flask.session["expires_at"] = int(time.time()) + self.lifetime_s
        flask.session.permanent = True
        flask.g.pop(CSRF_FIELD, None)  # Flask-WTF caches the request's token there
        generate_csrf()

    def turn_away(self) -> flask.Response:
        """The answer to a request without a session: the login page for a page view, 403 for anything else."""
        request = flask.request
        if request.method in ("GET", "HEAD"):
            query = request.environ.get("QUERY_STRING", "")
            target = request.path + (f"?{query}" if query else "")
            return flask.redirect(f"{LOGIN_PATH}?next={quote(target, safe='/')}", 303)
        return render_page("message.html", 403, title="Login required",
                           message="Your session has ended. Log in again, then retry.")

    def login(self) -> flask.Response:
        """GET: the login form. POST (its CSRF token checked already): check the credentials, then go to ``next``."""
        request = flask.request
        if not self.login_required:
            return flask.redirect("/", 303)
        target = safe_next((request.form if request.method == "POST" else request.args).get("next"))
        if request.method != "POST":
            if self.visitor() is not None:
                return flask.redirect(target, 303)
            return self.login_form(200, target)
        user, address = request.form.get("user", ""), request.remote_addr or ""
        try:
            wait_s = self.throttle.wait_s(user, address)
            if wait_s:
                logger.warning("dashboard: login of user %r from %s refused: too many failed logins", user[:64],
                               address)
                self._record_login(False, user, "too many failed logins")
                response = self.login_form(429, target, user=user,
                                           error=f"Too many failed logins. Try again in {_minutes(wait_s)}.")
                response.headers["Retry-After"] = str(wait_s)
                return response
            if credentials_match(self.settings, user, request.form.get("password", "")):
                # Written when PostgreSQL can take it; when it cannot, the error is logged and the login goes
                # ahead: the queue console, which needs Redis only, is what an operator needs most then.
                self._record_login(True, user, None)
                self._start_session(user)
                return flask.redirect(target, 303)
            self.throttle.failed(user, address)
        except redis.RedisError as error:
            logger.error("dashboard: cannot check the failed-login count in Redis: %s", error)
            return self.login_form(503, target, user=user,
                                   error="Login is unavailable: the dashboard cannot reach Redis. Try again later.")
        logger.warning("dashboard: failed login for user %r from %s", user[:64], address)
        self._record_login(False, user, "wrong user name or password")
        return self.login_form(403, target, user=user, error="Wrong user name or password.")

    def _record_login(self, succeeded: bool, user: str, reason: str | None) -> bool:
        """Write a login to the operator trail; False (logged) when it could not be written."""
        known = hmac.compare_digest(user.encode("utf-8", "replace"), (self.settings.dashboard_user or "").encode())
        action = OperatorAction.LOGIN if succeeded else OperatorAction.LOGIN_FAILED
        try:
            record_operator_action(action, current_operator(user if known else UNKNOWN_USER),
                                   details={"reason": reason} if reason else None)
        except Exception as error:  # noqa: BLE001 - PostgreSQL down: the login is decided all the same
            logger.error("dashboard: %s of %s not written to the operator trail: %s", action,
                         user[:64] if known else UNKNOWN_USER, error)
            return False
        return True

    def login_form(self, status: int, target: str, *, user: str = "", error: str | None = None) -> flask.Response:
        return render_page("login.html", status, next=target, user=user, error=error)

    def logout(self) -> flask.Response:
        """End the session (a POST whose CSRF token Flask-WTF checked)."""
        if self.login_required:
            self._record_login_out()
        flask.session.clear()
        return flask.redirect(LOGIN_PATH if self.login_required else "/", 303)

    def _record_login_out(self) -> None:
        try:
            record_operator_action(OperatorAction.LOGOUT, current_operator())
        except Exception as error:  # noqa: BLE001 - the session ends anyway
            logger.error("dashboard: a logout not written to the operator trail: %s", error)


def _minutes(seconds: int) -> str:
    minutes = -(-seconds // 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
