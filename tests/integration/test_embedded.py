"""Real embedded PostgreSQL / Redis servers (no mocks), shared between processes.

Each home lives under /tmp, which the ``embedded_postgres`` system user can
traverse when the tests run as root. Every fixture stops its servers at the
end, so the module leaves nothing running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import psycopg2
import pytest
import redis

from crmtasks.services import embedded

REPO = Path(__file__).resolve().parents[2]

# Run by the child processes: wait for a common start time (so they really
# race), then ensure both servers and print what they got as JSON.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from crmtasks.services import embedded

    home, start_at = Path(sys.argv[1]), float(sys.argv[2])
    time.sleep(max(0.0, start_at - time.time()))
    pg_url, redis_url = embedded.ensure_postgres(home), embedded.ensure_redis(home)
    pids = {s.name: s.pid for s in embedded.status(home)}
    print(json.dumps({"pg_url": pg_url, "redis_url": redis_url, "pids": pids}))
    """
)


def _spawn(home: Path, start_at: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), str(start_at)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _status(home: Path) -> dict[str, embedded.ServiceStatus]:
    return {s.name: s for s in embedded.status(home)}


def _servers_of(home: Path) -> tuple[list[int], list[int]]:
    """Pids of the postmasters and redis-servers working in ``home`` (by cwd)."""
    home = home.resolve()
    postmasters, redises = [], []
    for proc in psutil.process_iter(["name", "cwd", "ppid"]):
        name, cwd = proc.info["name"], proc.info["cwd"]
        if name == "postgres" and cwd == str(home / "postgres"):
            try:
                parent_name = psutil.Process(proc.info["ppid"]).name()
            except psutil.Error:
                parent_name = None
            if parent_name != "postgres":  # backends are children of the postmaster
                postmasters.append(proc.pid)
        elif name == "redis-server" and cwd == str(home / "redis"):
            redises.append(proc.pid)
    return postmasters, redises


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _new_home(tmp_path_factory, request, name: str) -> Path:
    home = tmp_path_factory.mktemp(name) / "home"
    request.addfinalizer(lambda: embedded.stop(home))
    return home


@pytest.fixture(scope="module")
def home(tmp_path_factory, request) -> Path:
    """A home shared by the tests of this module; its servers are stopped at the end."""
    return _new_home(tmp_path_factory, request, "embedded")


@pytest.fixture
def fresh_home(tmp_path_factory, request) -> Path:
    return _new_home(tmp_path_factory, request, "fresh")


def test_ensure_postgres_gives_a_connectable_crmtasks_database(home, monkeypatch):
    url = embedded.ensure_postgres(home)

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)
        cur.execute("select current_database()")
        assert cur.fetchone() == ("crmtasks",)
        cur.execute("show max_connections")
        assert cur.fetchone() == ("200",)
    conn.close()
    monkeypatch.chdir(home.parent)
    assert embedded.ensure_postgres(Path(home.name)) == url  # a relative home reuses the same server


def test_ensure_redis_gives_a_unix_socket_url(home):
    url = embedded.ensure_redis(home)

    assert url.startswith("unix:///") and url.endswith("redis.sock?db=0")
    client = redis.Redis.from_url(url)
    assert client.ping()
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("port") == {"port": "0"}  # no TCP listener
    client.close()


def test_concurrent_processes_share_one_server_of_each(fresh_home):
    start_at = time.time() + 1.5  # all three are ready to go by then
    procs = [_spawn(fresh_home, start_at) for _ in range(3)]
    results = [_result(p) for p in procs]

    assert len({json.dumps(r, sort_keys=True) for r in results}) == 1, results
    postmasters, redises = _servers_of(fresh_home)
    assert postmasters == [results[0]["pids"]["postgres"]]
    assert redises == [results[0]["pids"]["redis"]]


def test_servers_outlive_the_process_that_started_them(home):
    embedded.stop(home)  # so that the child below is the one that starts them

    child = _result(_spawn(home, 0))

    status = _status(home)
    assert status["postgres"].running and status["redis"].running
    assert {name: s.pid for name, s in status.items()} == child["pids"]
    assert status["postgres"].url == child["pg_url"]
    with psycopg2.connect(child["pg_url"]) as conn, conn.cursor() as cur:
        cur.execute("select 1")
    conn.close()
    assert redis.Redis.from_url(child["redis_url"]).ping()


def test_stop_stops_both_and_ensure_starts_them_again(home):
    client = redis.Redis.from_url(embedded.ensure_redis(home))
    client.set("queued", "message")
    client.close()
    embedded.ensure_postgres(home)
    old_pg_pid = _status(home)["postgres"].pid

    after = {s.name: s for s in embedded.stop(home)}

    assert not after["postgres"].running and not after["redis"].running
    assert after["postgres"].pid is None and after["postgres"].url is None
    _wait_until(lambda: _gone(old_pg_pid))  # pg_ctl returns once postmaster.pid is removed
    assert _servers_of(home) == ([], [])
    assert embedded.stop(home) == list(after.values())  # idempotent

    with psycopg2.connect(embedded.ensure_postgres(home)) as conn, conn.cursor() as cur:
        cur.execute("select 1")
    conn.close()
    client = redis.Redis.from_url(embedded.ensure_redis(home))
    assert client.get("queued") == b"message"  # the AOF survived the restart
    client.close()
    assert all(s.running for s in embedded.status(home))


def test_stale_redis_pid_file_is_replaced_by_a_fresh_server(home):
    embedded.ensure_redis(home)
    old_pid = _status(home)["redis"].pid
    os.kill(old_pid, signal.SIGKILL)
    _wait_until(lambda: not _status(home)["redis"].running)  # (a zombie counts as dead)
    assert (home / "redis" / "redis.pid").exists()  # left behind, like the socket

    url = embedded.ensure_redis(home)

    new_pid = _status(home)["redis"].pid
    assert new_pid not in (None, old_pid)
    assert redis.Redis.from_url(url).ping()
    assert _servers_of(home)[1] == [new_pid]


def test_deep_home_puts_the_redis_socket_in_a_short_directory(tmp_path_factory, request):
    home = tmp_path_factory.mktemp("deep") / ("d" * 60) / ("e" * 60)
    request.addfinalizer(lambda: embedded.stop(home))

    url = embedded.ensure_redis(home)

    socket_path = url.removeprefix("unix://").removesuffix("?db=0")
    assert len(socket_path) < 100 and not socket_path.startswith(str(home))
    assert redis.Redis.from_url(url).ping()
    assert _status(home)["redis"].url == url


def test_status_of_an_unused_home_starts_nothing(tmp_path):
    home = tmp_path / "never-used"

    assert [(s.name, s.running, s.pid, s.url) for s in embedded.status(home)] == [
        ("postgres", False, None, None),
        ("redis", False, None, None),
    ]
    assert not home.exists()
    assert [s.running for s in embedded.stop(home)] == [False, False]
