"""Text people type (command lines, settings, API values): what counts as a number, what PostgreSQL can store.

Python's ``int()``, ``Decimal()`` and ``\\d`` accept digits of every script
(``int("１２") == 12``, ``int("٥") == 5``) as well as ``"1_000"`` and
``"+5"``; someone typing a month, an id or a setting means ASCII digits, so
everything crmtasks parses from text goes through ``whole_number`` or the
ASCII-only patterns here. Text sent to PostgreSQL must be valid UTF-8 and
hold no NUL: ``check_text`` says so before psycopg2 fails on it mid-query.
"""

from __future__ import annotations

import re

# An optional minus sign and ASCII digits, nothing else (no spaces, '+', '_' or other scripts' digits).
WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def whole_number(text: str, what: str) -> int:
    """``text`` as an int when it is ASCII digits (with an optional leading '-'); ValueError naming ``what`` otherwise.

    Surrounding spaces are ignored.
    """
    if not isinstance(text, str) or not WHOLE_NUMBER.fullmatch(text.strip()):
        raise ValueError(f"{what} {str(text)[:80]!r} is not a whole number (digits 0-9)")
    return int(text.strip())


def check_text(value: str, what: str = "the value") -> str:
    """``value`` if PostgreSQL can store it as text; ValueError naming it otherwise.

    Refuses NUL and what is not valid UTF-8: a lone surrogate, which is how
    Python carries the bytes of a command-line argument that was not UTF-8
    (``$'\\xff'``); psycopg2 would fail on it while sending the query.
    """
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} '{shown(value[:80])}' is not valid UTF-8 text") from None
    return value


def shown(value: str) -> str:
    """``value`` fit for a message: bytes that were not UTF-8 on the command line as ``\\xff``, not ``\\udcff``."""
    escaped_bytes_only = all(not 0xD800 <= ord(char) <= 0xDFFF or 0xDC80 <= ord(char) <= 0xDCFF for char in value)
    raw = value.encode("utf-8", "surrogateescape" if escaped_bytes_only else "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")
