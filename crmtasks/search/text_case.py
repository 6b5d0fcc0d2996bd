"""PostgreSQL's lower-casing, learnt from the server, so an in-memory text match equals ``ILIKE``.

Why not Python's ``str.lower()``: ``ILIKE`` on a multi-byte (UTF8) database
lower-cases the pattern and the text with the server's ``lower()`` under the
column's collation, then compares bytes. Under a libc collation ``lower()``
maps each code point to one code point with the C library's ``towlower``,
which differs from Python: ``'İ'.lower()`` is two code points in Python and
``i`` in PostgreSQL, Python lowers a final ``Σ`` to ``ς`` and PostgreSQL to
``σ``, and a database whose ctype is ``C`` lowers ASCII only. So each code
point's lower case is asked of the server itself, the first time a search
holds it (one short statement, in the search's snapshot), and remembered.

That is exact only while ``lower()`` works code point by code point: a UTF8
server encoding, a libc default collation (not ICU, whose ``lower()`` depends
on context), and text columns under that default collation. ``supported``
says so, and text search stays live SQL otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from crmtasks.pg import load_sql

# pg_collation's oid of "default": the database's own collation.
DEFAULT_COLLATION_OID = 100
# Code points remembered at most (a few hundred in practice); past it the memory starts again.
MAX_KNOWN_CODE_POINTS = 100_000


def lower_is_per_code_point(cur) -> bool:
    """True when the server's ``lower()`` maps one code point to one (UTF8 encoding, libc default collation)."""
    cur.execute(load_sql("crmtasks.search", "case_model"))
    encoding, provider = cur.fetchone()
    return encoding == "UTF8" and provider == "c"


def default_collation(cur, table: str, columns: Sequence[str]) -> bool:
    """True when every one of ``columns`` of ``table`` uses the database's default collation."""
    cur.execute(load_sql("crmtasks.search", "text_collations"), {"table": table, "columns": list(columns)})
    collations = dict(cur.fetchall())
    return all(collations.get(column) == DEFAULT_COLLATION_OID for column in columns)


class ServerLower:
    """The server's ``lower()``, code point by code point, remembered as it is learnt (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[int, str] = {}

    def lower(self, cur, text: str) -> str:
        """``text`` as the server's ``lower(text)`` returns it; asks ``cur`` about code points not seen yet."""
        codes = {ord(char) for char in text}
        with self._lock:
            table = {code: self._known[code] for code in codes if code in self._known}
        unknown = sorted(codes - table.keys())
        if unknown:
            cur.execute(load_sql("crmtasks.search", "lower_code_points"), {"code_points": unknown})
            learnt = {int(code): lowered for code, lowered in cur.fetchall()}
            table.update(learnt)
            with self._lock:
                if len(self._known) + len(learnt) > MAX_KNOWN_CODE_POINTS:
                    self._known.clear()
                self._known.update(learnt)
        return text.translate(table)

    def clear(self) -> None:
        with self._lock:
            self._known.clear()
