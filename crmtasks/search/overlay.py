"""The rows changed since the generation, as this process last read them: kept between searches, per entity.

Without it every search re-read live every row changed since the last
facet run, so a search cost more the longer since that run. An ``Overlay``
holds, for one loaded generation, the ids changed since it and their rows
as of a *position* (the ``pg_snapshot`` they were read in, see
``crmtasks.search.change_log``), as the search's segments:
  - the generation's base and delta, minus the positions of changed ids;
  - layers of changed rows, each read live once, minus the positions of ids
    changed again in a later layer.
A search whose snapshot contains the position reads only the changes since
it. When there are none (the common case) the overlay's segments are
exactly the search's rows; otherwise the search reads the rows of the new
changes and advances the overlay (``advanced``): cost follows what changed
since this process last looked, not since the last facet run.

An overlay is immutable: advancing makes a new one, offered to the
``OverlayCache`` with the overlay it was made from; it is kept only if that
one is still current (compare and swap under a lock), so threads never see
a half-made overlay and never lose a newer one to an older one. A new layer
is folded into the one before while that one is not much larger (as a
log-structured merge does): a fold costs what the two layers hold, each row
is copied a few times at most, and layers stay few (``MAX_LAYERS``). Past
``MAX_CHANGED_ROWS`` changed ids the process keeps no overlay for that generation (``Overflow``): searches read every
change live, as before, until the next generation arrives.
"""

from __future__ import annotations

import dataclasses
import os
import threading

import numpy as np
from pyroaring import BitMap

from crmtasks.search.index import EntityIndex
from crmtasks.search.index_cache import GenerationKey, LoadedGeneration
from crmtasks.search.segments import Segment, combine

# Changed ids an overlay may hold: their rows take a few hundred bytes each (up to ~30 MB for leads),
# and a run folds the changes into a delta every few minutes, so this is reached only by mass updates.
MAX_CHANGED_ROWS = 100_000
# Layers of changed rows at most (each about twice the next one's size, see ``Overlay.advanced``).
MAX_LAYERS = 8


@dataclasses.dataclass(frozen=True)
class Overlay:
    """One generation plus the changes since it, as of ``position``.

    Parameters:
      loaded(LoadedGeneration): The generation.
      position(str): ``pg_snapshot`` text: the changes of transactions visible in it are applied.
      changed(ndarray): Sorted int64 ids changed since the generation (as of ``position``).
      segments(tuple): The rows as of ``position``: base, delta (if any), then the layers.
    """

    loaded: LoadedGeneration
    position: str
    changed: np.ndarray
    segments: tuple[Segment, ...]

    @property
    def key(self) -> GenerationKey:
        return self.loaded.key

    @classmethod
    def of_generation(cls, loaded: LoadedGeneration, position: str, changed_ids, rows: EntityIndex | None) -> Overlay:
        """The overlay of ``changed_ids`` (changed since the generation), their ``rows`` read in ``position``."""
        changed = np.unique(np.asarray(list(changed_ids), dtype=np.int64))
        return cls(loaded, position, changed, tuple(loaded.segments(changed, rows)))

    def advanced(self, position: str, changed_ids, rows: EntityIndex | None) -> Overlay:
        """This overlay plus ``changed_ids`` (changed since ``self.position``), their ``rows`` read in ``position``."""
        new = np.unique(np.asarray(list(changed_ids), dtype=np.int64))
        if not len(new):
            return dataclasses.replace(self, position=position)
        segments = [Segment(s.index, s.skipped | s.index.positions_of_ids(new)) if len(s.index) else s
                    for s in self.segments]
        fixed = 1 if self.loaded.delta is None else 2
        layers = segments[fixed:]
        if rows is not None and len(rows):
            layers.append(Segment(rows, BitMap()))
        # Fold the newest layer into the one before while that one is not much larger (as a log-structured
        # merge does): each changed row is copied O(log n) times, not once per search, and layers stay few.
        while len(layers) >= 2 and (_live(layers[-2]) <= 2 * _live(layers[-1]) or len(layers) > MAX_LAYERS):
            layers[-2:] = [_folded(layers[-2:])]
        return Overlay(self.loaded, position, np.union1d(self.changed, new), tuple(segments[:fixed] + layers))


def _live(layer: Segment) -> int:
    return len(layer.index) - len(layer.skipped)


def _folded(layers: list[Segment]) -> Segment:
    """The layers' rows that are not skipped, as one segment (ids are distinct across them)."""
    parts = []
    for layer in layers:
        keep = np.ones(len(layer.index), dtype=bool)
        keep[np.frombuffer(layer.skipped.to_array(), dtype=np.uint32)] = False
        parts.append((layer.index, np.flatnonzero(keep)))
    return Segment(combine(layers[0].index.entity, parts), BitMap())


@dataclasses.dataclass(frozen=True)
class Overflow:
    """Too many changes since generation ``key`` to keep: read them live until the next generation."""

    key: GenerationKey


class OverlayCache:
    """Process-wide: the current overlay (or overflow) of each entity; readers take no lock."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._held: dict[str, Overlay | Overflow] = {}

    def get(self, entity: str) -> Overlay | Overflow | None:
        if self._pid != os.getpid():
            self._reset()
        return self._held.get(entity)

    def offer(self, entity: str, based_on: Overlay | Overflow | None, made: Overlay | Overflow) -> None:
        """Keep ``made`` if ``based_on`` is still what is held, or if ``made`` is of a newer generation."""
        with self._lock:
            held = self._held.get(entity)
            if held is based_on or held is None or held.key.as_of < made.key.as_of:
                self._held[entity] = made

    def clear(self) -> None:
        self._reset()


OVERLAYS = OverlayCache()
os.register_at_fork(after_in_child=OVERLAYS.clear)


def too_many(changed: np.ndarray | list) -> bool:
    return len(changed) > MAX_CHANGED_ROWS
