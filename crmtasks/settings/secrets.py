"""Keeping passwords out of output: masking URLs and scrubbing any text that might echo one.

A password can sit in a URL's userinfo (``postgresql://app:pw@db/crm``,
percent-encoded or not), in a query parameter (``?password=pw``, also
``sslpassword`` or a misspelt ``passwd``: any name holding "pass", "secret"
or "token", itself maybe percent-encoded), or in a libpq keyword DSN
(``host=db password='p w'``). ``mask_url`` replaces each with
``***`` whatever shape the value has, and never raises: it runs on values
that failed validation. ``url_secrets`` lists every string that could be
the password (raw and decoded, under each parser's reading), so ``scrub``
can take them out of text crmtasks did not write itself: libpq's and
redis-py's error messages, tracebacks, log records.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"
_EMBEDDED = "(embedded)"
# A keyword DSN's password: password=value, the value bare or single-quoted with \-escapes.
_KEYWORD_PASSWORD = re.compile(r"(\b[A-Za-z_]*(?:pass|secret|token)[A-Za-z_]*\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE)
_KEYWORD_UNESCAPE = re.compile(r"\\(.)")
# A query parameter whose name holds one of these may carry a secret; its value is masked.
_SECRET_WORDS = ("pass", "secret", "token")


def _is_password_name(name: str) -> bool:
    """True for a query parameter that may carry a password: ``password``, ``sslpassword``, a misspelt
    ``passwd`` or ``passwort`` (refused by libpq, but meant as one), percent-encoded too."""
    name = unquote(name).strip().lower()
    return any(word in name for word in _SECRET_WORDS)


def _mask_query(query: str) -> str:
    """``?a=1&password=x`` -> ``?a=1&password=***`` (empty stays empty)."""
    pairs = []
    for pair in query[1:].split("&"):
        name, equals, _ = pair.partition("=")
        pairs.append(f"{name}={MASK}" if equals and _is_password_name(name) else pair)
    return query[:1] + "&".join(pairs)


def _split(remainder: str) -> tuple[str, str, str]:
    """(userinfo with its '@', rest, '?' and query) of what follows ``scheme://``; the userinfo ends at the *last* '@'.

    urllib and redis-py read a URL that way; libpq stops at the first '@'.
    Masking everything up to the last one hides the password under either
    reading (settings refuse a URL with more than one '@' anyway).
    """
    userinfo, at, rest = remainder.rpartition("@")
    rest, question, query = rest.partition("?")
    return userinfo + at, rest, question + query


def _keyword_secrets(text: str) -> set[str]:
    found = set()
    for match in _KEYWORD_PASSWORD.finditer(text):
        value = match.group(2)
        found.add(value)
        if value.startswith("'"):
            found.add(_KEYWORD_UNESCAPE.sub(r"\1", value[1:-1] if value.endswith("'") else value[1:]))
    return found


def mask_url(url: str | None) -> str:
    """``url`` with every password replaced by ``***``, fit for output and logs; never raises.

    None or empty is the embedded server. A value without ``scheme://`` (a
    keyword DSN, a typo) has its ``password=`` values masked as well.
    """
    if not url:
        return _EMBEDDED
    scheme, separator, remainder = url.partition("://")
    if not separator:
        scheme, remainder = "", _KEYWORD_PASSWORD.sub(lambda match: match.group(1) + MASK, url)
    userinfo, rest, query = _split(remainder)
    user, colon, _ = userinfo.partition(":")
    if colon:
        userinfo = f"{user}:{MASK}@"
    return (f"{scheme}://" if separator else "") + userinfo + rest + _mask_query(query)


def url_secrets(url: str | None) -> set[str]:
    """Every string in ``url`` that is, or could be read as, a password: raw and percent-decoded."""
    if not url:
        return set()
    _, separator, remainder = url.partition("://")
    found = set() if separator else _keyword_secrets(url)
    userinfo, _, query = _split(remainder if separator else url)
    if ":" in userinfo:
        password = userinfo[:-1].partition(":")[2]
        found |= {password, password.partition("@")[0]}  # the second: libpq's reading, up to the first '@'
    for pair in query[1:].split("&"):
        name, _, value = pair.partition("=")
        if _is_password_name(name):
            found.add(value)
    found |= {unquote(value) for value in found}
    return {value for value in found if value}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (longest first)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
