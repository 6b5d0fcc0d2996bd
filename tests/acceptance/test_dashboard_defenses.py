"""The dashboard against a hostile visitor: the six defects of issue 15, each tried on the served dashboard.

1. the login form carries a CSRF token and a login post without it is refused;
2. dramatiq-dashboard's delete and requeue need our session-bound token, not
   only its own ``__dd_csrf`` cookie (which anyone who can set a cookie chooses);
3. without login, only the loopback host names are served (DNS rebinding), and
   a POST from another origin is refused;
4. a ``next`` with CR/LF is a local path like any other, never a 500;
5. failed logins are limited per user and per address, in Redis, with 429;
6. a NUL in a query parameter is a clear 400, never a 500.

Each test talks to ``crmtasks dashboard`` served by waitress in a subprocess,
with the real PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import time
import uuid
from urllib.parse import urlsplit

import pytest
from dramatiq import Message

from crmtasks.web.throttle import (
    FAILURE_WINDOW_S,
    MOST_FAILURES_PER_ADDRESS,
    MOST_FAILURES_PER_USER,
)
from tests.acceptance.dashboard_for_tests import (
    PASSWORD,
    SESSION_COOKIE,
    USER,
    call,
    login,
    login_reply,
    served_dashboard,
)
from tests.acceptance.test_dashboard_serving import queued_message_ids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dashboard(migrated_database_url, tmp_path_factory):
    with served_dashboard(tmp_path_factory.mktemp("defenses-home")) as base:
        yield base


@pytest.fixture()
def open_dashboard(crm_db, tmp_path):
    """A dashboard without credentials: login off, loopback only."""
    with served_dashboard(tmp_path / "open-home", credentials=False) as base:
        yield base


def _host(base: str) -> str:
    return urlsplit(base).netloc


# --- 1. the login form's CSRF token -------------------------------------------------------------------------------

def test_the_login_form_carries_a_csrf_token_and_a_post_without_it_is_refused(dashboard):
    page = call(dashboard, "GET", "/login")
    assert page.status == 200 and page.csrf_token()
    cookie = page.cookie_value(SESSION_COOKIE)
    assert cookie, "the token must be bound to a session the login page starts"
    refused = call(dashboard, "POST", "/login", session=cookie,
                   form={"user": USER, "password": PASSWORD, "next": "/"})
    assert refused.status == 403
    assert "Log in" in refused.body and refused.csrf_token()  # the form again, with a fresh token
    # A token of another visitor's login page does not do either (login CSRF: logging the victim into our account).
    other = call(dashboard, "GET", "/login")
    refused = call(dashboard, "POST", "/login", session=cookie,
                   form={"user": USER, "password": PASSWORD, "next": "/", "csrf_token": other.csrf_token()})
    assert refused.status == 403
    session = refused.cookie_value(SESSION_COOKIE) or cookie
    assert call(dashboard, "GET", "/", session=session).status == 303  # still not logged in
    assert login_reply(dashboard).status == 303  # with the page's own token it works


# --- 2. dramatiq-dashboard's forms behind our CSRF ----------------------------------------------------------------

def _dead_letter(redis_client) -> str:
    """Put one dead-lettered message of the default queue in Redis, as the broker files it; its Redis id."""
    redis_id = str(uuid.uuid4())
    message = Message(queue_name="default", actor_name="tests.tally_users", args=(), kwargs={},
                      options={"redis_message_id": redis_id})
    prefix = os.environ["CRMTASKS_REDIS_PREFIX"]
    redis_client.hset(f"{prefix}:default.XQ.msgs", redis_id, message.encode())
    redis_client.zadd(f"{prefix}:default.XQ", {redis_id: int(time.time() * 1000)})
    return redis_id


def _is_dead_letter(redis_client, redis_id: str) -> bool:
    return redis_client.hexists(f"{os.environ['CRMTASKS_REDIS_PREFIX']}:default.XQ.msgs", redis_id)


def test_a_dead_letter_delete_with_an_attacker_chosen_dd_csrf_cookie_is_refused(dashboard, redis_client):
    redis_id = _dead_letter(redis_client)
    cookie = login(dashboard)
    chosen = "a" * 64
    reply = call(dashboard, "POST", "/dramatiq/delete-message", session=cookie, cookies={"__dd_csrf": chosen},
                 form={"__dd_csrf": chosen, "queue": "default.XQ", "id": redis_id})
    assert reply.status == 403
    assert _is_dead_letter(redis_client, redis_id)
    # Nor with a token of another session of the same user.
    other_token = call(dashboard, "GET", "/", session=login(dashboard)).csrf_token()
    reply = call(dashboard, "POST", "/dramatiq/delete-message", session=cookie, cookies={"__dd_csrf": chosen},
                 form={"__dd_csrf": chosen, "queue": "default.XQ", "id": redis_id, "csrf_token": other_token})
    assert reply.status == 403
    assert _is_dead_letter(redis_client, redis_id)


def test_the_dead_letter_forms_carry_our_token_and_work_with_it(dashboard, redis_client):
    deleted, requeued = _dead_letter(redis_client), _dead_letter(redis_client)
    cookie = login(dashboard)
    page = call(dashboard, "GET", "/dramatiq/queues/default/failed", session=cookie)
    assert page.status == 200 and deleted in page.body
    token = page.csrf_token()
    assert token and page.body.count(f'value="{token}"') >= 2  # in every form of the page
    dd_csrf = page.cookie_value("__dd_csrf")
    reply = call(dashboard, "POST", "/dramatiq/delete-message", session=cookie, cookies={"__dd_csrf": dd_csrf},
                 form={"__dd_csrf": dd_csrf, "csrf_token": token, "queue": "default.XQ", "id": deleted})
    assert reply.status in (302, 303), reply.body
    assert not _is_dead_letter(redis_client, deleted)
    reply = call(dashboard, "POST", "/dramatiq/requeue-message", session=cookie, cookies={"__dd_csrf": dd_csrf},
                 form={"__dd_csrf": dd_csrf, "csrf_token": token, "queue": "default.XQ", "id": requeued})
    assert reply.status in (302, 303), reply.body
    assert not _is_dead_letter(redis_client, requeued)


def test_a_cross_site_post_to_the_queue_console_is_refused_even_with_every_token(dashboard, redis_client):
    redis_id = _dead_letter(redis_client)
    cookie = login(dashboard)
    page = call(dashboard, "GET", "/dramatiq/queues/default/failed", session=cookie)
    dd_csrf = page.cookie_value("__dd_csrf")
    form = {"__dd_csrf": dd_csrf, "csrf_token": page.csrf_token(), "queue": "default.XQ", "id": redis_id}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Referer": "http://evil.example/page"}):
        reply = call(dashboard, "POST", "/dramatiq/delete-message", session=cookie,
                     cookies={"__dd_csrf": dd_csrf}, form=form, headers=headers)
        assert reply.status == 403, headers
        assert _is_dead_letter(redis_client, redis_id)
    same_site = call(dashboard, "POST", "/dramatiq/delete-message", session=cookie, cookies={"__dd_csrf": dd_csrf},
                     form=form, headers={"Origin": dashboard})
    assert same_site.status in (302, 303)
    assert not _is_dead_letter(redis_client, redis_id)


def test_a_queue_console_post_without_a_session_goes_nowhere(dashboard, redis_client):
    redis_id = _dead_letter(redis_client)
    reply = call(dashboard, "POST", "/dramatiq/delete-message", cookies={"__dd_csrf": "b" * 64},
                 form={"__dd_csrf": "b" * 64, "queue": "default.XQ", "id": redis_id})
    assert reply.status == 403
    assert _is_dead_letter(redis_client, redis_id)


# --- 3. DNS rebinding and foreign origins ---------------------------------------------------------------------------

def test_without_login_a_foreign_host_name_is_refused(open_dashboard, redis_client):
    port = urlsplit(open_dashboard).port
    rebound = call(open_dashboard, "GET", "/", headers={"Host": f"rebind.evil.example:{port}"})
    assert rebound.status == 400
    assert SESSION_COOKIE not in rebound.set_cookies()
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "LOCALHOST:%d" % port):
        assert call(open_dashboard, "GET", "/", headers={"Host": host}).status == 200, host
    # A run-now from the rebound name, even with a session and token of the real one, enqueues nothing.
    page = call(open_dashboard, "GET", "/")
    cookie, token = page.cookie_value(SESSION_COOKIE), page.csrf_token()
    before = queued_message_ids(redis_client)
    reply = call(open_dashboard, "POST", "/jobs/tally_users/run", session=cookie, form={"csrf_token": token},
                 headers={"Host": f"rebind.evil.example:{port}"})
    assert reply.status == 400
    assert call(open_dashboard, "GET", "/dramatiq/", headers={"Host": "rebind.evil.example"}).status == 400
    assert queued_message_ids(redis_client) == before


def test_a_post_from_another_origin_is_refused(open_dashboard, redis_client):
    page = call(open_dashboard, "GET", "/")
    cookie, token = page.cookie_value(SESSION_COOKIE), page.csrf_token()
    before = queued_message_ids(redis_client)
    for origin in ("http://rebind.evil.example", "null", f"http://{_host(open_dashboard)}.evil.example"):
        reply = call(open_dashboard, "POST", "/jobs/tally_users/run", session=cookie, form={"csrf_token": token},
                     headers={"Origin": origin})
        assert reply.status == 403, origin
    assert queued_message_ids(redis_client) == before
    sent = call(open_dashboard, "POST", "/jobs/tally_users/run", session=cookie, form={"csrf_token": token},
                headers={"Origin": open_dashboard})
    assert sent.status == 303


def test_with_login_a_post_from_another_origin_is_refused(dashboard, crm_db, redis_client):
    cookie = login(dashboard)
    token = call(dashboard, "GET", "/", session=cookie).csrf_token()
    before = queued_message_ids(redis_client)
    reply = call(dashboard, "POST", "/jobs/tally_users/run", session=cookie, form={"csrf_token": token},
                 headers={"Origin": "https://evil.example"})
    assert reply.status == 403
    assert queued_message_ids(redis_client) == before


# --- 4. CR/LF in next ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["/\r\nSet-Cookie: evil=1", "/runs\nX: y", "/\x00", "/\t/evil.example"])
def test_a_next_with_control_characters_logs_in_and_goes_home(dashboard, target):
    reply = login_reply(dashboard, next_path=target)
    assert reply.status == 303, reply.body
    assert reply.header("Location") == "/"
    assert "evil" not in reply.set_cookies()
    assert call(dashboard, "GET", "/", session=reply.cookie_value(SESSION_COOKIE)).status == 200


def test_the_login_page_with_a_crlf_next_is_the_form_or_a_redirect_home(dashboard):
    path = "/login?next=/%0d%0aSet-Cookie:%20evil=1"
    page = call(dashboard, "GET", path)
    assert page.status == 200
    assert 'name="next" value="/"' in page.body
    reply = call(dashboard, "GET", path, session=login(dashboard))
    assert reply.status == 303 and reply.header("Location") == "/"
    assert "evil" not in reply.set_cookies()


# --- 5. the login rate limit ---------------------------------------------------------------------------------------

@pytest.fixture()
def throttled_dashboard(migrated_database_url, tmp_path):
    """A dashboard of its own Redis key prefix, so its lockouts touch no other test; yields (base, prefix)."""
    prefix = f"{os.environ['CRMTASKS_REDIS_PREFIX']}-logins-{uuid.uuid4().hex[:6]}"
    with served_dashboard(tmp_path / "home", environ={"CRMTASKS_REDIS_PREFIX": prefix}) as base:
        yield base, prefix


def _assert_throttled(reply) -> None:
    assert reply.status == 429, reply.body
    assert 0 < int(reply.header("Retry-After")) <= FAILURE_WINDOW_S
    assert SESSION_COOKIE not in reply.set_cookies() or "Max-Age=0" in reply.set_cookies()[SESSION_COOKIE]
    assert PASSWORD not in reply.body


def test_failed_logins_of_one_user_are_limited_from_every_address_and_every_process(
        throttled_dashboard, tmp_path, redis_client):
    base, prefix = throttled_dashboard
    for attempt in range(MOST_FAILURES_PER_USER):
        assert login_reply(base, password=f"guess {attempt}", source="127.0.0.2").status == 403
    _assert_throttled(login_reply(base, password=f"guess {MOST_FAILURES_PER_USER}", source="127.0.0.2"))
    # The right password does not get through either, from this address or another one.
    _assert_throttled(login_reply(base, source="127.0.0.2"))
    _assert_throttled(login_reply(base, source="127.0.0.3"))
    # Another dashboard process on the same Redis prefix knows it too.
    with served_dashboard(tmp_path / "second-home", environ={"CRMTASKS_REDIS_PREFIX": prefix}) as second:
        _assert_throttled(login_reply(second, source="127.0.0.3"))
    keys = list(redis_client.scan_iter(match=f"{prefix}:dashboard:login-failures:*"))
    assert keys and all(0 < redis_client.ttl(key) <= FAILURE_WINDOW_S for key in keys)


def test_failed_logins_from_one_address_are_limited_whatever_the_user(throttled_dashboard):
    base, _ = throttled_dashboard
    for attempt in range(MOST_FAILURES_PER_ADDRESS):
        reply = login_reply(base, user=f"someone-{attempt}", password="guess", source="127.0.0.4")
        assert reply.status == 403, attempt
    _assert_throttled(login_reply(base, source="127.0.0.4"))
    # The user itself is not locked: from another address the right password works.
    assert login_reply(base, source="127.0.0.5").status == 303


def test_a_wrong_user_and_a_wrong_password_count_alike(throttled_dashboard, redis_client):
    base, prefix = throttled_dashboard
    assert login_reply(base, user="nobody", password=PASSWORD, source="127.0.0.6").status == 403
    assert login_reply(base, user=USER, password="wrong password", source="127.0.0.6").status == 403
    address_keys = list(redis_client.scan_iter(match=f"{prefix}:dashboard:login-failures:address:*"))
    user_keys = list(redis_client.scan_iter(match=f"{prefix}:dashboard:login-failures:user:*"))
    assert [int(redis_client.get(key)) for key in address_keys] == [2]
    assert sorted(int(redis_client.get(key)) for key in user_keys) == [1, 1]
    assert all(USER not in key.decode() and "nobody" not in key.decode() for key in user_keys)


# --- 6. NUL and other bytes a database refuses ----------------------------------------------------------------------

@pytest.mark.parametrize("query", ["task=%00", "task=tally%00users", "task=" + "x" * 5000, "limit=%00",
                                   "task=%ff%fe", "limit=99999999999999999999999"])
def test_a_runs_query_the_database_cannot_take_is_a_clear_answer(dashboard, crm_db, query):
    reply = call(dashboard, "GET", f"/runs?{query}", session=login(dashboard))
    assert reply.status in (200, 400), reply.body
    assert "Something went wrong" not in reply.body and "Traceback" not in reply.body
    if reply.status == 400:
        assert "job name" in reply.body
