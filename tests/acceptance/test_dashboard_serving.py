"""``crmtasks dashboard``: loopback by default, a login wall when credentials are set."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def dashboard(migrated_database_url):
    port = _free_port()
    env = dict(os.environ, CRMTASKS_DASHBOARD_USER="ops", CRMTASKS_DASHBOARD_PASSWORD="correct horse")
    process = subprocess.Popen([sys.executable, "-m", "crmtasks", "dashboard", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"dashboard did not start: {process.stdout.read()}")
    yield base
    process.terminate()
    process.wait(timeout=10)


def _get(url, credentials=None):
    request = urllib.request.Request(url)
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_login_wall(dashboard):
    assert _get(dashboard + "/")[0] == 401
    assert _get(dashboard + "/", "ops:wrong password")[0] == 401
    status, body = _get(dashboard + "/", "ops:correct horse")
    assert status == 200
    assert "Dramatiq" in body


def test_refuses_a_public_address_without_credentials():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMTASKS_DASHBOARD_")}
    result = subprocess.run([sys.executable, "-m", "crmtasks", "dashboard", "--host", "0.0.0.0"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("crmtasks: refusing to serve the dashboard on 0.0.0.0 without a login")
