"""Session cookies, CSRF tokens, the per-install key and the login helpers (no services needed)."""

from __future__ import annotations

import multiprocessing
import stat

import pytest

from crmtasks.settings import load_settings
from crmtasks.web.auth import credentials_match, safe_next
from crmtasks.web.rendering import compact_json, error_headline, format_seconds
from crmtasks.web.session import KeyFileError, SessionSigner, install_key

KEY = bytes(range(32))
NOW = 1_800_000_000


def signer(key=KEY, user="ops", password="correct horse", lifetime_s=3600) -> SessionSigner:
    return SessionSigner(key, user, password, lifetime_s)


def test_a_session_it_issued_is_valid_until_it_expires():
    cookie = signer().issue(now=NOW)
    session = signer().verify(cookie, now=NOW + 10)
    assert session.user == "ops" and session.expires_at == NOW + 3600
    assert signer().verify(cookie, now=NOW + 3599) is not None
    assert signer().verify(cookie, now=NOW + 3600) is None  # expired
    assert signer().verify(cookie, now=NOW + 10 * 3600) is None


def test_every_login_is_a_session_of_its_own():
    assert signer().issue(now=NOW) != signer().issue(now=NOW)


def _replace(cookie: str, index: int, value: str) -> str:
    parts = cookie.split(".")
    parts[index] = value
    return ".".join(parts)


@pytest.mark.parametrize("tamper", [
    lambda c: _replace(c, 1, "YWRtaW4"),                      # user -> "admin"
    lambda c: _replace(c, 2, str(NOW + 10 * 86400)),          # expiry pushed back
    lambda c: _replace(c, 3, "AAAAAAAAAAAAAAAAAAAAAA"),       # another nonce
    lambda c: _replace(c, 4, c.split(".")[4][::-1]),          # another signature
    lambda c: _replace(c, 0, "v2"),
    lambda c: c[:-1],
    lambda c: c + ".x",
    lambda c: ".".join(c.split(".")[:4]),
    lambda c: "",
    lambda c: "not a cookie",
    lambda c: _replace(c, 4, "é" * 43),                       # non-ASCII must not raise
], ids=["user", "expiry", "nonce", "signature", "version", "truncated", "extra part", "unsigned", "empty",
        "garbage", "non-ascii"])
def test_a_tampered_cookie_is_refused(tamper):
    cookie = signer().issue(now=NOW)
    assert signer().verify(tamper(cookie), now=NOW + 1) is None


def test_a_cookie_is_refused_under_another_password_key_or_user():
    cookie = signer().issue(now=NOW)
    assert signer(password="another password").verify(cookie, now=NOW + 1) is None
    assert signer(key=bytes(32)).verify(cookie, now=NOW + 1) is None
    assert signer(user="admin").verify(cookie, now=NOW + 1) is None


def test_anonymous_sessions_of_a_dashboard_without_login_are_not_valid_with_login():
    anonymous = signer(user="", password="").issue(now=NOW)
    assert signer(user="", password="").verify(anonymous, now=NOW + 1).user == ""
    assert signer().verify(anonymous, now=NOW + 1) is None


def test_csrf_token_is_valid_only_for_its_session():
    one, other = signer().issue(now=NOW), signer().issue(now=NOW)
    token = signer().csrf_token(one)
    assert signer().csrf_valid(one, token)
    assert not signer().csrf_valid(other, token)
    assert not signer().csrf_valid(one, signer().csrf_token(other))
    assert not signer(password="another password").csrf_valid(one, token)
    for bad in ("", None, token[:-1], token + "A", "é" * len(token)):
        assert not signer().csrf_valid(one, bad)
    assert not signer().csrf_valid(None, token)


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

