"""The little HTTP the dashboard needs on top of WSGI: a request, a response, cookies.

Our pages are a handful of GET pages and three POST forms, so a small
Request/Response pair is enough and keeps Flask out of the dependencies.
"""

from __future__ import annotations

import dataclasses
import functools
import http
from urllib.parse import parse_qsl

# The largest form body read (bytes); our forms are a few hundred bytes.
MAX_FORM_BYTES = 64 * 1024

# Sent with every response: no framing (clickjacking of the run-now buttons),
# no sniffing, no caching of pages that show operational data, no scripts at all.
SECURITY_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
)


def parse_cookies(header: str) -> dict[str, str]:
    """The cookies of a ``Cookie`` header; the first of duplicate names wins (the most specific path)."""
    cookies: dict[str, str] = {}
    for pair in header.split(";"):
        name, sep, value = pair.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies


class Request:
    """One HTTP request, read from a WSGI environ.

    Parameters:
      environ(dict): The WSGI environ.
    """

    def __init__(self, environ: dict) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO") or "/"
        self.query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        self.cookies = parse_cookies(environ.get("HTTP_COOKIE", ""))
        self.secure = environ.get("wsgi.url_scheme") == "https"

    @functools.cached_property
    def form(self) -> dict[str, str]:
        """The fields of a urlencoded POST body (empty for other requests); read once, at most MAX_FORM_BYTES."""
        if self.method != "POST":
            return {}
        if not self.environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            return {}
        try:
            length = min(int(self.environ.get("CONTENT_LENGTH") or 0), MAX_FORM_BYTES)
        except ValueError:
            return {}
        body = self.environ["wsgi.input"].read(length) if length > 0 else b""
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


@dataclasses.dataclass
class Response:
    """An HTTP response to be sent with ``respond``.

    Parameters:
      status(int): HTTP status code.
      body(str|bytes): The content (str is sent as UTF-8).
      headers(list): Extra ``(name, value)`` pairs.
      content_type(str): The Content-Type.
    """

    status: int = 200
    body: str | bytes = b""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    content_type: str = "text/html; charset=utf-8"

    def set_cookie(self, name: str, value: str, *, max_age: int, secure: bool) -> None:
        """Set an HttpOnly, SameSite=Lax cookie for the whole site (``max_age`` 0 deletes it)."""
        self.headers.append(("Set-Cookie", cookie_header(name, value, max_age=max_age, secure=secure)))

    def respond(self, start_response, *, head: bool = False) -> list[bytes]:
        """Send the status and headers; the body unless ``head`` (a HEAD request gets the headers only)."""
        body = self.body.encode("utf-8") if isinstance(self.body, str) else self.body
        headers = [("Content-Type", self.content_type), ("Content-Length", str(len(body))),
                   *SECURITY_HEADERS, *self.headers]
        start_response(status_line(self.status), headers)
        return [b""] if head else [body]


def cookie_header(name: str, value: str, *, max_age: int, secure: bool) -> str:
    header = f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    return header + "; Secure" if secure else header


def status_line(status: int) -> str:
    return f"{status} {http.HTTPStatus(status).phrase}"


def redirect(location: str, status: int = 303) -> Response:
    """Send the browser to ``location`` (303: the follow-up request is a GET, even after a POST)."""
    return Response(status=status, headers=[("Location", location)])


def text(status: int, message: str) -> Response:
    return Response(status=status, body=message + "\n", content_type="text/plain; charset=utf-8")
