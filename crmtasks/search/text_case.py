"""PostgreSQL's lower-casing, learnt from the server, so an in-memory text match equals ``ILIKE``.

Why not Python's ``str.lower()``: ``ILIKE`` on a multi-byte (UTF8) database
lower-cases the pattern and the text with the server's ``lower()`` under the
column's collation, then compares bytes. Under a libc collation ``lower()``
maps each code point to one code point with the C library's ``towlower``,
which differs from Python: ``'İ'.lower()`` is two code points in Python and
``i`` in PostgreSQL, Python lowers a final ``Σ`` to ``ς`` and PostgreSQL to
``σ``, and a database whose ctype is ``C`` lowers ASCII only. So the map is
read from the server itself: every code point its ``lower()`` changes (about
1,400 under ``C.UTF-8``), and ``str.translate`` applies it.

That is exact only while ``lower()`` works code point by code point: a UTF8
server encoding, a libc default collation (not ICU, whose ``lower()`` is
context-dependent), and text columns under that default collation.
``read_case_map`` returns None otherwise, and text search stays live SQL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from crmtasks.pg import load_sql

# pg_collation's oid of "default": the database's own collation.
DEFAULT_COLLATION_OID = 100


@dataclasses.dataclass(frozen=True)
class CaseMap:
    """The server's ``lower()`` as a translation table.

    Parameters:
      changes(dict): code point -> the text ``lower(chr(code point))`` returns, for every code point it changes.
    """

    changes: Mapping[int, str]

    def lower(self, text: str) -> str:
        """``text`` as the server's ``lower(text)`` returns it (code point by code point)."""
        return text.translate(self.changes)

    def to_json_ready(self) -> dict[str, str]:
        return {str(code): lowered for code, lowered in self.changes.items()}

    @classmethod
    def from_json_ready(cls, data: Mapping[str, str]) -> CaseMap:
        return cls({int(code): lowered for code, lowered in data.items()})


def read_case_map(cur) -> CaseMap | None:
    """The server's case map; None when its ``lower()`` is not one code point to one (see the module docstring).

    One statement; about half a second (it lowers every code point once), so it is read once per index build.
    """
    cur.execute(load_sql("crmtasks.search", "case_map"))
    encoding, provider, changes = cur.fetchone()
    if encoding != "UTF8" or provider != "c":
        return None
    if any(len(lowered) != 1 for lowered in changes.values()):
        return None
    return CaseMap.from_json_ready(changes)


def default_collation(cur, table: str, columns: Sequence[str]) -> bool:
    """True when every one of ``columns`` of ``table`` uses the database's default collation."""
    cur.execute(load_sql("crmtasks.search", "text_collations"), {"table": table, "columns": list(columns)})
    collations = dict(cur.fetchall())
    return all(collations.get(column) == DEFAULT_COLLATION_OID for column in columns)
