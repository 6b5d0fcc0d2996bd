"""``q`` as a position filter over the index's segments, and the per-process state it needs.

A search process checks once that the server's ``lower()`` works code point by code point
and that each entity's text columns use the default collation (crmtasks.search.text_case),
and learns each code point's lower case from the server the first time a ``q`` holds it;
when the in-memory path is ruled out, ``text_filter`` returns None and the search stays
live SQL, so answers never differ from ILIKE.

Segments below ``SCAN_BELOW_ROWS`` rows holding their text raw (the delta, the rows changed
since the generation) are scanned; a base (its text dictionary-coded, crmtasks.search.coded_text)
or a large raw segment gets a ``TextIndex`` built on its first text search and kept while that index is loaded (at most ``KEPT_INDEXES``, the oldest
dropped first: the cache in crmtasks.search.index_cache holds one generation per entity).
"""

from __future__ import annotations

import collections
import threading

from pyroaring import BitMap

from crmtasks.search.coded_text import CodedText
from crmtasks.search.facets import Entity
from crmtasks.search.index import EntityIndex
from crmtasks.search.process_memory import release_free_memory
from crmtasks.search.segments import PositionFilter
from crmtasks.search.text_case import (
    ServerLower,
    default_collation,
    lower_is_per_code_point,
)
from crmtasks.search.text_index import TextIndex, scanned_positions

SCAN_BELOW_ROWS = 50_000
KEPT_INDEXES = 8


class TextSearchState:
    """One process's lower-casing, per-entity collation checks and trigram indexes (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lowering = ServerLower()
        self._per_code_point: bool | None = None
        self._collation_ok: dict[str, bool] = {}
        self._indexes: collections.OrderedDict[int, tuple[EntityIndex, TextIndex]] = collections.OrderedDict()

    def answerable(self, cur, entity: Entity) -> bool:
        """True when ``entity``'s text search can be answered from memory (two cheap catalog reads, once)."""
        with self._lock:
            if self._per_code_point is None:
                self._per_code_point = lower_is_per_code_point(cur)
            if entity.name not in self._collation_ok:
                self._collation_ok[entity.name] = default_collation(cur, entity.table, entity.text_columns)
            return self._per_code_point and self._collation_ok[entity.name]

    def trigrams(self, index: EntityIndex) -> TextIndex:
        """The TextIndex of ``index``, built on first use (the lock is held while it builds: one build at a time)."""
        with self._lock:
            held = self._indexes.get(id(index))
            if held is not None and held[0] is index:
                self._indexes.move_to_end(id(index))
                return held[1]
            built = TextIndex.build(index)
            release_free_memory()  # the build's temporary arrays (sorted trigram keys) were several times its size
            self._indexes[id(index)] = (index, built)  # the index is kept too, so its id is not reused meanwhile
            while len(self._indexes) > KEPT_INDEXES:
                self._indexes.popitem(last=False)
            return built

    def nbytes(self) -> int:
        """Bytes of the trigram indexes held."""
        with self._lock:
            return sum(text_index.nbytes() for _, text_index in self._indexes.values())

    def clear(self) -> None:
        with self._lock:
            self._per_code_point = None
            self._collation_ok.clear()
            self._indexes.clear()
        self.lowering.clear()


STATE = TextSearchState()


def text_filter(cur, entity: Entity, q: str, state: TextSearchState = STATE) -> PositionFilter | None:
    """The positions of a segment matching ``q`` (checked by the request), or None: answer live instead."""
    if not state.answerable(cur, entity):
        return None
    needle = state.lowering.lower(cur, q).encode("utf-8")

    def positions(index: EntityIndex) -> BitMap:
        if len(index) < SCAN_BELOW_ROWS and not any(isinstance(text, CodedText) for text in index.texts.values()):
            return scanned_positions(index, needle)
        return state.trigrams(index).positions(needle)

    return positions
