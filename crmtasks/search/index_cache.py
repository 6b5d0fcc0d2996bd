"""The search index as a searching process holds it: one generation per entity, loaded lazily, shared by threads.

A search reads, in its own snapshot, which generation is current and which
records changed since it (``crmtasks.search.change_log``). When the process
holds another generation of that entity, it loads the current one in a
snapshot of the search's own (the base only when the base changed; a delta is
small) and drops the old one, so memory stays at one generation per entity
and a new generation is used from the first search that sees it. Loading
is done by one thread per entity at a time; the others wait for it (they
need the same generation). After ``fork()`` the child starts empty (a
parent's arrays are shared copy-on-write, but its locks are not safe to use).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import threading

import numpy as np
from psycopg2 import sql
from pyroaring import BitMap

from crmtasks.search.facets import ENTITIES, Entity
from crmtasks.search.index import EntityIndex
from crmtasks.search.index_store import index_from_parts, read_parts, removed_from_part
from crmtasks.search.segments import Segment


@dataclasses.dataclass(frozen=True)
class GenerationKey:
    """A generation and its base, each named by id and as_of (ids alone may be reused after a sequence reset).

    For a base, ``base_id == generation``.
    """

    generation: int
    as_of: datetime.datetime
    base_id: int
    base_as_of: datetime.datetime

    @property
    def base(self) -> tuple[int, datetime.datetime]:
        return self.base_id, self.base_as_of


@dataclasses.dataclass(frozen=True)
class LoadedGeneration:
    """One entity's rows as of one generation: the base, minus ``removed`` positions, plus the delta.

    Parameters:
      key(GenerationKey): Which generation, and its base.
      base(EntityIndex): The base's rows.
      removed(BitMap): Base positions the delta replaces or deletes.
      delta(EntityIndex|None): Rows changed between the base and the generation (None for a base).
    """

    key: GenerationKey
    base: EntityIndex
    removed: BitMap
    delta: EntityIndex | None

    def segments(self, changed_ids: np.ndarray, live: EntityIndex | None) -> list[Segment]:
        """The search's segments, given the ids changed since the generation and their live rows."""
        segments = [Segment(self.base, self.removed | self.base.positions_of_ids(changed_ids))]
        if self.delta is not None:
            segments.append(Segment(self.delta, self.delta.positions_of_ids(changed_ids)))
        if live is not None:
            segments.append(Segment(live, BitMap()))
        return segments


def load_delta(cur, entity: str, generation: int, base_id: int) -> tuple[EntityIndex | None, np.ndarray]:
    """A generation's delta and the ids of base rows it replaces (None and no ids for a base)."""
    if generation == base_id:
        return None, np.zeros(0, dtype=np.int64)
    parts = read_parts(cur, generation, entity)
    return index_from_parts(entity, parts, prefix="delta:"), removed_from_part(parts["removed"])


def load_generation(cur, entity: str, key: GenerationKey, previous: LoadedGeneration | None = None) -> LoadedGeneration:
    """Read a generation's parts in the cursor's snapshot; reuse ``previous``'s base when it is the same one."""
    if previous is not None and previous.key.base == key.base:
        base = previous.base
    else:
        base = index_from_parts(entity, read_parts(cur, key.base_id, entity))
    delta, removed_ids = load_delta(cur, entity, key.generation, key.base_id)
    return LoadedGeneration(key, base, base.positions_of_ids(removed_ids), delta)


class IndexCache:
    """Process-wide: the loaded generation of each entity (see the module docstring)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._loaded: dict[str, LoadedGeneration] = {}

    def get(self, cur, entity: str, key: GenerationKey) -> LoadedGeneration:
        """The entity's rows as of generation ``key``, loading them in the cursor's snapshot when not held."""
        if self._pid != os.getpid():
            self._reset()
        held = self._loaded.get(entity)
        if held is not None and held.key == key:
            return held
        with self._guard:
            lock = self._locks.setdefault(entity, threading.Lock())
        with lock:
            held = self._loaded.get(entity)
            if held is not None and held.key == key:
                return held
            loaded = load_generation(cur, entity, key, held)
            if held is None or held.key.as_of <= key.as_of:
                self._loaded[entity] = loaded  # a search of an older snapshot does not evict the newer one
            return loaded

    def clear(self) -> None:
        self._reset()

    def held(self) -> dict[str, int]:
        """Generation held per entity (for tests and stats)."""
        return {entity: loaded.key.generation for entity, loaded in self._loaded.items()}


CACHE = IndexCache()
os.register_at_fork(after_in_child=CACHE.clear)


def _visible_changes(entity_name: str) -> sql.Composable:
    """Record ids (NULL: the whole table) of ``entity_name`` changed by transactions the generation ``g`` misses."""
    return sql.SQL(
        "SELECT s.record_id FROM search_changes AS s WHERE s.entity = {entity} "
        "AND s.xid >= pg_snapshot_xmin(g.snapshot) AND NOT pg_visible_in_snapshot(s.xid, g.snapshot)"
    ).format(entity=sql.Literal(entity_name))


def changed_ids_sql(entity: Entity) -> sql.Composable:
    """Ids of ``entity`` whose indexed row may differ from generation ``g``'s (a subquery on alias ``g``).

    Its own logged changes, plus the records whose joined record changed
    (a contact whose account changed industry).
    """
    parts = [_visible_changes(entity.name)]
    tables = {other.table: other.name for other in ENTITIES.values()}
    for _, table, column in entity.joins:
        parts.append(sql.SQL("SELECT j.id FROM {table} AS j WHERE j.{column} IN ({changed})").format(
            table=sql.Identifier(entity.table), column=sql.Identifier(column),
            changed=_visible_changes(tables[table])))
    return sql.SQL(" UNION ").join(parts)
