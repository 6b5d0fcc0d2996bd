"""A real S3-compatible server for the archive tests: moto's standalone server, a subprocess on 127.0.0.1.

One server per test session (``moto_server``), one bucket per test
(``s3_archive``); a test that stops the server mid-upload starts its own
(``MotoServer``), so the others never see it go.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import boto3
import pytest

# Any key pair works with moto; real names so boto3 finds them the standard way (environment variables).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "crmtasks-test-key", "AWS_SECRET_ACCESS_KEY": "crmtasks-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MotoServer:
    """``python -m moto.server`` on 127.0.0.1:``port``; ``start`` waits until it answers, ``stop`` kills it.

    Parameters:
      port(int): TCP port (kept across a stop and a start, as a restarted real server would).
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def start(self) -> MotoServer:
        self._process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._process.returncode}")
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1).close()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError("moto server did not answer in 30 s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def client(self):
        return boto3.session.Session(aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                     aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                     region_name=CREDENTIALS["AWS_DEFAULT_REGION"]).client(
            "s3", endpoint_url=self.endpoint_url)

    def environ(self, bucket: str, prefix: str = "audit") -> dict[str, str]:
        """The variables that point crmtasks at ``bucket`` on this server."""
        return {"CRMTASKS_ARCHIVE_URL": f"s3://{bucket}/{prefix}", "CRMTASKS_S3_ENDPOINT_URL": self.endpoint_url,
                **CREDENTIALS}


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture()
def s3_archive(moto_server, monkeypatch):
    """A fresh bucket on the session's server; returns the environment for it, also set in os.environ (for boto3
    in this process and for subprocesses)."""
    bucket = f"crmtasks-{uuid.uuid4().hex[:16]}"
    moto_server.client().create_bucket(Bucket=bucket)
    environ = moto_server.environ(bucket)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CRMTASKS_ARCHIVE_DIR", raising=False)
    return environ


def unfinished_uploads(server: MotoServer, bucket: str) -> list[dict]:
    return server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def bucket_of(environ: dict[str, str]) -> str:
    return environ["CRMTASKS_ARCHIVE_URL"].split("/")[2]

