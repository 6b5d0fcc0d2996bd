"""Signed session cookies and CSRF tokens of the dashboard.

A session is a cookie ``v1.<user>.<expiry>.<nonce>.<signature>``: the user
(base64url), its expiry (Unix seconds), a random nonce (so every login is a
session of its own, with CSRF tokens of its own) and an HMAC-SHA256 of them.
Nothing is stored on the server, so sessions need no database and survive
restarts; the flip side is that logging out deletes the cookie from the
browser but cannot revoke a copy of it before it expires.

The signing secret is derived from the dashboard credentials and a random
per-install key kept in ``CRMTASKS_HOME/dashboard.key`` (created 0600 on first
use). Every dashboard process on a host reads the same key, so they all
accept each other's sessions; changing the password (or the key file)
ends every session at once; knowing the password alone does not let anyone
forge a session.

A CSRF token is an HMAC of the session cookie: a page can only hold it if it
was served to that session, and a cross-site form cannot read it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from crmtasks.errors import CrmtasksError

SESSION_COOKIE = "crmtasks_session"
# Seconds a login lasts.
SESSION_LIFETIME_S = 12 * 3600
KEY_FILE_NAME = "dashboard.key"
_KEY_BYTES = 32
_NONCE_BYTES = 16
_VERSION = "v1"


class KeyFileError(CrmtasksError):
    """The per-install key file exists but cannot be used."""


def install_key(home: Path) -> bytes:
    """The per-install key, read from ``home/dashboard.key``; created (0600) when missing.

    Atomic: the key is written to a private temporary file and hard-linked to
    its name, so processes starting at once all end up with the one key that
    won, and none ever reads a half-written file.
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


@dataclasses.dataclass(frozen=True)
class Session:
    """A valid session.

    Parameters:
      user(str): Who logged in ("" for the anonymous session of a dashboard without login).
      expires_at(int): Unix seconds after which the cookie is refused.
    """

    user: str
    expires_at: int


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens for one set of credentials.

    Parameters:
      key(bytes): The per-install key (``install_key``).
      user(str): The dashboard login ("" when login is off).
      password(str): Its password ("" when login is off).
      lifetime_s(int): Seconds a session lasts.
    """

    def __init__(self, key: bytes, user: str, password: str, lifetime_s: int = SESSION_LIFETIME_S) -> None:
        credentials = json.dumps(["crmtasks dashboard session", user, password]).encode()
        self._secret = hmac.new(key, credentials, hashlib.sha256).digest()
        self.user = user
        self.lifetime_s = lifetime_s

    def issue(self, now: float | None = None) -> str:
        """A new session cookie value for the configured user."""
        expires_at = int(now if now is not None else time.time()) + self.lifetime_s
        nonce = _b64encode(secrets.token_bytes(_NONCE_BYTES))
        payload = f"{_VERSION}.{_b64encode(self.user.encode())}.{expires_at}.{nonce}"
        return f"{payload}.{self._sign('session', payload)}"

    def verify(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of ``cookie``; None when it is missing, malformed, tampered with, expired or another user's."""
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 5 or parts[0] != _VERSION or not parts[2].isdigit():
            return None
        payload = ".".join(parts[:4])
        if not _equal(self._sign("session", payload), parts[4]):
            return None
        try:
            user = _b64decode(parts[1]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        expires_at = int(parts[2])
        if expires_at <= (now if now is not None else time.time()) or user != self.user:
            return None
        return Session(user=user, expires_at=expires_at)

    def csrf_token(self, cookie: str) -> str:
        """The CSRF token of the session ``cookie``: put it in every form this session may post."""
        return self._sign("csrf", cookie)

    def csrf_valid(self, cookie: str | None, token: str | None) -> bool:
        """True when ``token`` was made for the session ``cookie`` (constant-time compare)."""
        if not cookie or not token:
            return False
        return _equal(self.csrf_token(cookie), token)

    def _sign(self, purpose: str, payload: str) -> str:
        digest = hmac.new(self._secret, f"{purpose}\0{payload}".encode(), hashlib.sha256).digest()
        return _b64encode(digest)


def _equal(expected: str, given: str) -> bool:
    """Constant-time string equality; never raises on non-ASCII input (compare_digest on str would)."""
    return hmac.compare_digest(expected.encode("utf-8", "replace"), given.encode("utf-8", "replace"))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
