"""Serving the real dashboard with the test jobs registered, for the dashboard tests.

As a launcher: ``python -m tests.acceptance.dashboard_for_tests dashboard --port PORT``.
The registry may hold no jobs on a given branch; the dashboard tests need
some, so this sets ``registry.JOBS`` to the test jobs before the settings
and the actors are built, then runs the real ``crmtasks`` command.
As a helper: ``served_dashboard(home, credentials)`` starts that in a
subprocess and yields its base URL; ``call`` sends one request the way a
browser (or an attacker) would, with any cookies, Host, Origin or source
address; ``login`` goes through the login form as a browser does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from crmtasks.jobs import registry
from tests.acceptance.jobs_for_tests import TEST_SPECS

REPOSITORY = Path(__file__).resolve().parents[2]
USER = "ops"
PASSWORD = "correct horse battery"
SESSION_COOKIE = "crmtasks_session"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served_dashboard(home: Path, *, credentials: bool = True, environ: dict | None = None) -> Iterator[str]:
    """Serve the dashboard on a free loopback port with ``home`` as CRMTASKS_HOME; yields ``http://127.0.0.1:PORT``.

    The database, Redis and key prefix are the test session's (inherited
    from the environment conftest set up) unless ``environ`` overrides them.
    """
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("CRMTASKS_DASHBOARD_")}
    env["CRMTASKS_HOME"] = str(home)
    if credentials:
        env.update(CRMTASKS_DASHBOARD_USER=USER, CRMTASKS_DASHBOARD_PASSWORD=PASSWORD)
    env.update(environ or {})
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / f"dashboard-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.acceptance.dashboard_for_tests", "dashboard", "--port", str(port)],
            env=env, cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dashboard did not start: {log_path.read_text()}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclasses.dataclass
class Reply:
    """One HTTP answer: status, headers in order, body as text."""

    status: int
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def set_cookies(self) -> dict[str, str]:
        """name -> the whole Set-Cookie header."""
        return {value.split("=", 1)[0]: value for key, value in self.headers if key.lower() == "set-cookie"}

    def cookie_value(self, name: str) -> str | None:
        header = self.set_cookies().get(name)
        return header.split(";", 1)[0].split("=", 1)[1] if header else None

    def csrf_token(self) -> str | None:
        """The CSRF token of the first form on the page (None when the page has none)."""
        match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', self.body)
        return match.group(1) if match else None


def call(base: str, method: str, path: str, *, session: str | None = None, form: dict | None = None,
         cookies: dict | None = None, headers: dict | None = None, source: str | None = None) -> Reply:
    """One request to the dashboard at ``base``, redirects not followed.

    ``session`` is sent as the session cookie, ``cookies`` as more cookies,
    ``headers`` as they are (a ``Host`` there replaces the real one), and the
    connection comes from the loopback address ``source`` when given.
    """
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15,
                                            source_address=(source, 0) if source else None)
    sent = dict(headers or {})
    jar = dict(cookies or {})
    if session is not None:
        jar[SESSION_COOKIE] = session
    if jar:
        sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in jar.items())
    body = None
    if form is not None:
        body = urlencode(form)
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read().decode("utf-8"))
    finally:
        connection.close()


def login_reply(base: str, user: str = USER, password: str = PASSWORD, next_path: str = "/", *,
                source: str | None = None, headers: dict | None = None) -> Reply:
    """Log in as a browser does: fetch the form (its session cookie and token), then post it."""
    page = call(base, "GET", "/login", source=source, headers=headers)
    form = {"user": user, "password": password, "next": next_path}
    if page.csrf_token():
        form["csrf_token"] = page.csrf_token()
    return call(base, "POST", "/login", session=page.cookie_value(SESSION_COOKIE), form=form, source=source,
                headers=headers)


def login(base: str) -> str:
    """A fresh session cookie of the dashboard user."""
    reply = login_reply(base)
    assert reply.status == 303, reply.body
    return reply.cookie_value(SESSION_COOKIE)


if __name__ == "__main__":
    registry.JOBS = TEST_SPECS
    from crmtasks.cli import main

    main()
