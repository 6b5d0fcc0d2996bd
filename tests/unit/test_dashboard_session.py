"""Session cookies, CSRF tokens, the per-install key and the login helpers (no services needed).

The Flask app is built for real; nothing listens at its Redis URL, which only a login would use.
"""

from __future__ import annotations

import multiprocessing
import re
import stat
import time

import flask
import pytest
import redis
from flask_wtf.csrf import generate_csrf

from crmtasks.broker.factory import build_runtime
from crmtasks.settings import load_settings
from crmtasks.web.app import create_app
from crmtasks.web.auth import credentials_match, safe_next
from crmtasks.web.rendering import (
    compact_json,
    error_headline,
    format_seconds,
    format_stat_value,
)
from crmtasks.web.session import SESSION_COOKIE, KeyFileError, install_key

KEY = bytes(range(32))
# Nothing listens there: building the app does not connect; a login needs Redis (its failure count) and says so.
DEAD_REDIS = "redis://127.0.0.1:1/0"


def dashboard(key=KEY, user="ops", password="correct horse"):
    """The dashboard's Flask app for these credentials (no server, no Redis, no PostgreSQL needed)."""
    environ = {"REDIS_URL": DEAD_REDIS}
    if user:
        environ.update(CRMTASKS_DASHBOARD_USER=user, CRMTASKS_DASHBOARD_PASSWORD=password)
    settings = load_settings(environ)
    runtime = build_runtime(settings)
    return create_app(settings, runtime.broker, runtime.actors, key, redis.Redis.from_url(DEAD_REDIS))


def signed(app, **session) -> str:
    """A session cookie exactly as ``app`` would sign it."""
    return app.session_interface.get_signing_serializer(app).dumps(session)


def visit(app, path: str, cookie: str | None, method: str = "GET", **form):
    client = app.test_client()
    if cookie is not None:
        client.set_cookie(SESSION_COOKIE, cookie)
    return client.open(path, method=method, data=form or None)


def live(user="ops", **more) -> dict:
    return {"user": user, "expires_at": int(time.time()) + 3600, **more}


def test_a_session_it_signed_is_valid_until_it_expires():
    app = dashboard()
    assert visit(app, "/logout", signed(app, **live()), method="GET").status_code == 405  # past the wall
    expired = signed(app, user="ops", expires_at=int(time.time()) - 1)
    assert visit(app, "/logout", expired, method="GET").status_code == 303  # to the login form


def _replace(cookie: str, index: int, value: str) -> str:
    parts = cookie.rsplit(".", 2)
    parts[index] = value
    return ".".join(parts)


@pytest.mark.parametrize("tamper", [
    lambda app, c: signed(dashboard(password="another password"), **live()),          # signed for another password
    lambda app, c: _replace(c, 0, signed(app, **live("admin")).rsplit(".", 2)[0]),  # another user's payload
    lambda app, c: _replace(c, 2, c.rsplit(".", 2)[2][::-1]),                 # another signature
    lambda app, c: _replace(c, 1, "AAAAAA"),                                  # another timestamp
    lambda app, c: c[:-1],
    lambda app, c: c + ".x",
    lambda app, c: c.rsplit(".", 1)[0],
    lambda app, c: "",
    lambda app, c: "not a cookie",
    lambda app, c: _replace(c, 2, "A" * 42 + "~"),
], ids=["other password", "user", "signature", "timestamp", "truncated", "extra part", "unsigned", "empty",
        "garbage", "bad alphabet"])
def test_a_tampered_cookie_is_refused(tamper):
    app = dashboard()
    cookie = signed(app, **live())
    assert visit(app, "/", tamper(app, cookie)).status_code == 303


def test_a_cookie_is_refused_under_another_password_key_or_user():
    cookie = signed(dashboard(), **live())
    assert visit(dashboard(password="another password"), "/runs", cookie).status_code == 303
    assert visit(dashboard(key=bytes(32)), "/runs", cookie).status_code == 303
    assert visit(dashboard(user="admin"), "/runs", signed(dashboard(user="admin", password="correct horse"),
                                                           **live())).status_code == 303


def test_anonymous_sessions_of_a_dashboard_without_login_are_not_valid_with_login():
    open_app = dashboard(user="")
    anonymous = signed(open_app, **live(""))
    assert visit(dashboard(), "/runs", anonymous).status_code == 303
    # Signed with the login dashboard's own secret, an anonymous session is still no login.
    assert visit(dashboard(), "/runs", signed(dashboard(), **live(""))).status_code == 303


def test_csrf_token_is_valid_only_for_its_session():
    app = dashboard()
    one, other = signed(app, **live(csrf_token="a" * 40)), signed(app, **live(csrf_token="b" * 40))
    with app.test_request_context():
        flask.session["csrf_token"] = "a" * 40
        token = generate_csrf()
    assert visit(app, "/logout", other, method="POST", csrf_token=token).status_code == 403
    for bad in ("", token[:-1], token + "A", "x" * len(token)):
        assert visit(app, "/logout", one, method="POST", csrf_token=bad).status_code == 403
    assert visit(app, "/logout", None, method="POST", csrf_token=token).status_code == 403
    assert visit(app, "/logout", one, method="POST", csrf_token=token).status_code == 303


def test_a_login_while_redis_is_down_is_a_clear_503_without_the_password():
    app = dashboard()
    client = app.test_client()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    reply = client.post("/login", data={"user": "ops", "password": "correct horse", "csrf_token": token})
    assert reply.status_code == 503
    body = reply.get_data(as_text=True)
    assert "cannot reach Redis" in body and "correct horse" not in body


def test_install_key_creates_a_private_key_once(tmp_path):
    home = tmp_path / "home"
    key = install_key(home)
    assert len(key) == 32
    assert stat.S_IMODE((home / "dashboard.key").stat().st_mode) == 0o600
    assert install_key(home) == key
    assert install_key(tmp_path / "elsewhere") != key
    assert [path.name for path in home.iterdir()] == ["dashboard.key"]  # no temporary file left behind


def _key_of(home) -> bytes:
    return install_key(home)


def test_processes_starting_at_once_agree_on_one_key(tmp_path):
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        keys = pool.map(_key_of, [tmp_path] * 24)
    assert len(set(keys)) == 1
    assert keys[0] == install_key(tmp_path)


def test_a_damaged_key_file_is_an_error_that_says_what_to_do(tmp_path):
    (tmp_path / "dashboard.key").write_text("not hex\n")
    with pytest.raises(KeyFileError, match="delete it to make a new one"):
        install_key(tmp_path)


@pytest.mark.parametrize("target, expected", [
    ("/runs?task=x", "/runs?task=x"),
    ("/dramatiq/queues/default", "/dramatiq/queues/default"),
    (None, "/"),
    ("", "/"),
    ("runs", "/"),
    ("//evil.example/x", "/"),
    ("https://evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("/login?next=/", "/"),
    ("/logout", "/"),
    ("/\r\nSet-Cookie: x=1", "/"),
    ("/runs\nLocation: //evil.example", "/"),
    ("/\t/evil.example", "/"),
    ("/\x00", "/"),
    ("/\x7f", "/"),
    ("/runs?task=ünïcode", "/runs?task=ünïcode"),
])
def test_after_login_only_local_paths_are_followed(target, expected):
    assert safe_next(target) == expected


def test_credentials_match_only_the_configured_pair():
    settings = load_settings({"CRMTASKS_DASHBOARD_USER": "ops", "CRMTASKS_DASHBOARD_PASSWORD": "correct horse"})
    assert credentials_match(settings, "ops", "correct horse")
    assert not credentials_match(settings, "ops", "correct horse ")
    assert not credentials_match(settings, "Ops", "correct horse")
    assert not credentials_match(settings, "", "")
    assert not credentials_match(load_settings({}), "", "")


def test_error_headline_is_the_exception_of_a_traceback_or_the_first_line():
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad deal\n'
    assert error_headline(traceback) == "ValueError: bad deal"
    assert error_headline("OperationalError: server closed\nDETAIL: more") == "OperationalError: server closed"
    assert error_headline(None) == ""


def test_stats_and_durations_are_compact():
    assert compact_json({"users": 3, "facets": ["a"]}) == '{"facets":["a"],"users":3}'
    assert compact_json(None) == "{}"
    assert [format_seconds(s) for s in (0.4213, 12.34, 245, 7380, None)] == \
        ["0.42 s", "12.3 s", "4 min 05 s", "2 h 03 min", "—"]



def test_stats_values_read_as_values():
    assert [format_stat_value(v) for v in (1234567, 0.00012, 12345.678, True, None, ["stage", "owner"], [],
                                           {"b": 1, "a": [2]})] == \
        ["1,234,567", "0.00012", "12,345.7", "yes", "—", "stage, owner", "none", '{"a":[2],"b":1}']
