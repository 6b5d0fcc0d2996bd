"""HTTP basic authentication in front of a WSGI app.

dramatiq-dashboard has no authentication of its own; this wrapper is the
wall in front of it. Credentials are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac


class BasicAuth:
    """Parameters:
      app(callable): The WSGI application to protect.
      user(str): The expected login.
      password(str): The expected password.
      realm(str): Shown by the browser's login prompt.
    """

    def __init__(self, app, user: str, password: str, realm: str = "crmtasks") -> None:
        self.app = app
        self._expected = f"{user}:{password}".encode()
        self.realm = realm

    def __call__(self, environ, start_response):
        if self._authorized(environ.get("HTTP_AUTHORIZATION", "")):
            return self.app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                            ("WWW-Authenticate", f'Basic realm="{self.realm}", charset="UTF-8"')])
        return [b"login required\n"]

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._expected)
