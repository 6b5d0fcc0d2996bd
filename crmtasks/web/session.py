"""The dashboard's session cookie: Flask's itsdangerous-signed session, keyed per install.

A session is Flask's signed cookie (itsdangerous, HMAC-SHA256 here instead
of Flask's default SHA-1) holding who logged in, when the login ends, and
the raw CSRF token Flask-WTF compares form tokens with. Nothing is stored on
the server, so sessions need no database and survive restarts; the flip side
is that logging out deletes the cookie from the browser but cannot revoke a
copy of it before it expires.

The signing secret is derived from the dashboard credentials and a random
per-install key kept in ``CRMTASKS_HOME/dashboard.key`` (created 0600 on first
use). Every dashboard process on a host reads the same key, so they all
accept each other's sessions; changing the password (or the key file) ends
every session at once; knowing the password alone does not let anyone forge
a session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

import flask
from flask.sessions import SecureCookieSessionInterface

from crmtasks.errors import CrmtasksError

SESSION_COOKIE = "crmtasks_session"
# Seconds a login lasts, counted from the login (using the dashboard does not extend it).
SESSION_LIFETIME_S = 12 * 3600
KEY_FILE_NAME = "dashboard.key"
_KEY_BYTES = 32


class KeyFileError(CrmtasksError):
    """The per-install key file exists but cannot be used."""


def install_key(home: Path) -> bytes:
    """The per-install key, read from ``home/dashboard.key``; created (0600) when missing.

    Atomic: the key is written to a private temporary file and hard-linked to
    its name, so processes starting at once all end up with the one key that
    won, and none ever reads a half-written file.

    Parameters:
      home(Path): ``CRMTASKS_HOME``; created when missing.
    """
    home.mkdir(parents=True, exist_ok=True)
    path = home / KEY_FILE_NAME
    if not path.exists():
        temporary = home / f".{KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(_KEY_BYTES) + "\n")
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process won the race: use its key
        finally:
            temporary.unlink(missing_ok=True)
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != _KEY_BYTES:
        raise KeyFileError(f"{path} is not a dashboard key ({_KEY_BYTES * 2} hex digits); delete it to make a new one "
                           "(every dashboard session ends)")
    return key


def session_secret(key: bytes, user: str, password: str) -> bytes:
    """The secret that signs sessions and CSRF tokens for these credentials on this install.

    An HMAC of the credentials under the install key: another password, user
    or key file gives another secret, so their sessions are not valid here.

    Parameters:
      key(bytes): The per-install key (``install_key``).
      user(str): The dashboard login ("" when login is off).
      password(str): Its password ("" when login is off).
    """
    credentials = json.dumps(["crmtasks dashboard session", user, password]).encode()
    return hmac.new(key, credentials, hashlib.sha256).digest()


class SignedSessions(SecureCookieSessionInterface):
    """Flask's signed cookie sessions, signed with HMAC-SHA256 and marked Secure when the request came over TLS.

    Whether a request is TLS is known per request only (waitress behind a
    TLS proxy sets the scheme from its trusted headers), so the Secure flag
    follows the request rather than a fixed setting.
    """

    salt = "crmtasks dashboard session"
    digest_method = staticmethod(hashlib.sha256)

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        return flask.request.is_secure
