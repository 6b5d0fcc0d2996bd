"""Checks made before any page runs: the Host a request names, and where a POST comes from.

**Host.** With login off the dashboard is reachable only on a loopback
address, and its only defence is that nobody else can reach it. A page of
``rebind.evil.example`` whose name the attacker re-points at 127.0.0.1 (DNS
rebinding) reaches it from the victim's browser, under the attacker's host
name. So without login only the loopback names of the bound address are
served (``localhost`` and the address itself); any other ``Host`` gets a 400.
With login on, the dashboard may sit behind a proxy under any name, and a
rebound page has no session cookie of that name, so the Host is not checked.

**Origin.** A browser says which site a POST comes from (``Origin``, or at
least ``Referer``). A POST whose origin is another site, or the opaque
``null`` of a sandboxed frame or a ``data:`` page, is refused (403) before
the CSRF token is even looked at. A POST with neither header (curl, scripts)
still needs a valid CSRF token. Only the host and port are compared, not
the scheme: behind a TLS proxy the page is ``https`` while the request we
see is ``http``.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOCALHOST = "localhost"
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``).

    Parameters:
      host(str): An address or name to bind, as given to ``crmtasks dashboard --host``.
    """
    if host.lower() == LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_names(bound_host: str) -> frozenset[str]:
    """The host names a browser on this machine uses for a dashboard bound to ``bound_host`` (lower case).

    Parameters:
      bound_host(str): The loopback address or name served (``127.0.0.1``, ``::1``, ``localhost``).
    """
    names = {LOCALHOST, bound_host.strip("[]").lower()}
    if bound_host.lower() == LOCALHOST:
        names.update({"127.0.0.1", "::1"})
    return frozenset(names)


def host_name(host_header: str | None) -> str | None:
    """The name part of a ``Host`` header (``[::1]:8080`` -> ``::1``), lower case; None when it cannot be read.

    Parameters:
      host_header(str|None): The header's value as received.
    """
    if not host_header:
        return None
    try:
        parts = urlsplit("//" + host_header)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    return parts.hostname


def _site(scheme: str, netloc: str) -> str:
    """``host[:port]`` in lower case, without the scheme's default port."""
    netloc = netloc.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and netloc.endswith(":" + default):
        netloc = netloc[: -len(default) - 1]
    return netloc


def post_from_elsewhere(origin: str | None, referer: str | None, host_header: str, scheme: str) -> bool:
    """True when a POST says it comes from a page of another site (by ``Origin``, else by ``Referer``).

    Parameters:
      origin(str|None): The ``Origin`` header.
      referer(str|None): The ``Referer`` header.
      host_header(str): The ``Host`` header of the request.
      scheme(str): The request's scheme as served (``http`` or ``https``).
    """
    source = origin if origin is not None else referer
    if source is None:
        return False
    parts = urlsplit(source.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return True  # "null", data:, file: and the like
    return _site(parts.scheme, parts.netloc) != _site(scheme, host_header or "")
