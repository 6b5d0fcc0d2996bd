"""The login wall in front of every dashboard page, dramatiq-dashboard's included.

With credentials set (``CRMTASKS_DASHBOARD_USER``/``_PASSWORD``), a visitor
without a valid session cookie is sent to the login form; the form checks
the credentials in constant time and sets a signed session cookie
(``crmtasks.web.session``). Without credentials the dashboard only serves
loopback (``crmtasks.web.app.serve`` enforces it) and gives every visitor an
anonymous session, which its CSRF tokens are tied to; every page then says
that login is off.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
from urllib.parse import quote, urlsplit

from crmtasks.settings import Settings
from crmtasks.web.http import Request, Response, redirect
from crmtasks.web.session import SESSION_COOKIE, SessionSigner

logger = logging.getLogger(__name__)

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
# Name of the CSRF field in every form that posts to the dashboard.
CSRF_FIELD = "csrf_token"


@dataclasses.dataclass(frozen=True)
class Visitor:
    """Someone allowed past the wall.

    Parameters:
      user(str|None): Their login; None when login is off.
      session_cookie(str): Their session cookie value.
      csrf_token(str): The token their forms must post back.
      new_cookie(bool): The session was issued with this response and must be set on it.
    """

    user: str | None
    session_cookie: str
    csrf_token: str
    new_cookie: bool = False


def credentials_match(settings: Settings, user: str, password: str) -> bool:
    """True when ``user``/``password`` are the dashboard's; both compared in constant time, always both."""
    if not settings.dashboard_user or not settings.dashboard_password:
        return False
    user_ok = hmac.compare_digest(user.encode("utf-8", "replace"), settings.dashboard_user.encode("utf-8"))
    password_ok = hmac.compare_digest(password.encode("utf-8", "replace"), settings.dashboard_password.encode("utf-8"))
    return user_ok & password_ok


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this site only (never ``//host`` or ``https://host``), else ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith((LOGIN_PATH, LOGOUT_PATH)):
        return "/"
    return target


class LoginWall:
    """Decides who gets past, and serves the login and logout endpoints.

    Parameters:
      settings(Settings): The dashboard credentials (none: login is off).
      signer(SessionSigner): Made for those credentials.
      render(callable): ``render(template, status, **context) -> Response``.
    """

    def __init__(self, settings: Settings, signer: SessionSigner, render) -> None:
        self.settings = settings
        self.signer = signer
        self.render = render
        self.login_required = settings.dashboard_user is not None

    def visitor(self, request: Request) -> Visitor | None:
        """The visitor of ``request``; None when login is required and there is no valid session."""
        cookie = request.cookies.get(SESSION_COOKIE)
        session = self.signer.verify(cookie)
        if session is not None:
            return Visitor(user=session.user or None, session_cookie=cookie, csrf_token=self.signer.csrf_token(cookie))
        if self.login_required:
            return None
        cookie = self.signer.issue()
        return Visitor(user=None, session_cookie=cookie, csrf_token=self.signer.csrf_token(cookie), new_cookie=True)

    def turn_away(self, request: Request) -> Response:
        """The answer to a request without a session: the login page for a page view, 403 for anything else."""
        if request.method in ("GET", "HEAD"):
            target = request.path + (f"?{request.environ['QUERY_STRING']}" if request.environ.get("QUERY_STRING") else "")
            return redirect(f"{LOGIN_PATH}?next={quote(target, safe='/')}")
        return self.render("message.html", 403, title="Login required", visitor=None,
                           message="Your session has ended. Log in again, then retry.")

    def login(self, request: Request) -> Response:
        """GET: the login form. POST: check the credentials; on success set the session and go to ``next``."""
        if not self.login_required:
            return redirect("/")
        target = safe_next(request.form.get("next") if request.method == "POST" else request.query.get("next"))
        if request.method != "POST":
            if self.visitor(request) is not None:
                return redirect(target)
            return self.render("login.html", 200, visitor=None, next=target, user="", error=None)
        user = request.form.get("user", "")
        if not credentials_match(self.settings, user, request.form.get("password", "")):
            logger.warning("dashboard: failed login for user %r from %s", user[:64],
                           request.environ.get("REMOTE_ADDR", "?"))
            return self.render("login.html", 403, visitor=None, next=target, user=user,
                               error="Wrong user name or password.")
        response = redirect(target)
        response.set_cookie(SESSION_COOKIE, self.signer.issue(), max_age=self.signer.lifetime_s, secure=request.secure)
        return response

    def logout(self, request: Request, visitor: Visitor) -> Response:
        """End the session (POST with a valid CSRF token, checked by the caller)."""
        response = redirect(LOGIN_PATH if self.login_required else "/")
        response.set_cookie(SESSION_COOKIE, "", max_age=0, secure=request.secure)
        return response
