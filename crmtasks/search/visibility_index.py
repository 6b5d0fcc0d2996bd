"""A user's visibility as a position filter over the index's segments: ``sharing.visible`` as bitmaps.

``crmtasks.sharing.filters.condition`` keeps a row when (for ``read``)
    owner_id = ANY(read owners)            -- self, the hierarchy below, owner-based rules
    OR <field> = ANY(values) per field     -- criteria-based rules
    OR its account's owner is in the hierarchy (deals and contacts)
with TRUE for an open organization-wide default and FALSE for an inactive user. Here the
same compiled ``Visibility`` (read through the search's cursor, so in its snapshot, exactly
as ``visible()`` reads it) becomes, per segment of the index:
  - the union of the ``owner`` facet's bitmaps of the read owners, and of the criteria
    fields' facet bitmaps of the granted values (every criteria field is a facet field
    of the same name, with the value itself as key);
  - for deals and contacts, the positions whose ``account_id`` is one of the accounts
    the hierarchy owns, read in the search's snapshot (an account's owner is no sharing
    input: it changes without an epoch bump, so it is never cached).
The first part of a large segment (the base) is cached per user in a bounded LRU keyed by
the index object and the visibility's epoch token: a change to roles, users, rules or
defaults bumps the epoch, so no answer comes from a compile of another state; a record
change does not matter, since each segment is a fixed set of rows (changed rows are in
another segment).
"""

from __future__ import annotations

import collections
import threading

import numpy as np
from pyroaring import BitMap

from crmtasks import sharing
from crmtasks.pg import load_sql
from crmtasks.search.index import EntityIndex
from crmtasks.search.segments import KeptSet, PositionFilter, column_codes
from crmtasks.search.text_index import uint32_bitmap
from crmtasks.sharing.entities import READ, SharedEntity
from crmtasks.sharing.visibility import Visibility

# Segments of at least this many rows (the base) keep their grant bitmaps per user and epoch.
CACHE_FROM_ROWS = 50_000
# Users' grant bitmaps kept per process (one per user and base index; oldest dropped first). One
# bitmap takes at most rows/8 bytes (125 KB at 1M rows), its counts per facet code a few KB, the
# positions left after skipping as an array at most 256 KB (segments.KEPT_ARRAY_POSITIONS): at most
# 26 MB at 1M leads.
CACHED_GRANTS = 64


class GrantCache:
    """Bounded LRU of (index, user, epoch token) -> the owner-and-criteria positions (a ``KeptSet``: with
    them, their counts per facet, made on first use); thread-safe."""

    def __init__(self, size: int = CACHED_GRANTS) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[tuple, tuple[EntityIndex, KeptSet]] = collections.OrderedDict()

    def get(self, index: EntityIndex, user_id: int, token: str) -> KeptSet | None:
        with self._lock:
            entry = self._entries.get((id(index), user_id, token))
            if entry is None or entry[0] is not index:
                return None
            self._entries.move_to_end((id(index), user_id, token))
            return entry[1]

    def put(self, index: EntityIndex, user_id: int, token: str, positions: KeptSet) -> None:
        with self._lock:
            self._entries[(id(index), user_id, token)] = (index, positions)  # the index kept: its id is not reused
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = GrantCache()


def granted_positions(index: EntityIndex, visibility: Visibility, entity: str) -> BitMap:
    """Positions of ``index`` the owner and criteria grants of ``visibility`` admit (not child access)."""
    grants = visibility.grants(entity)
    owner = index.facets["owner"]
    code_of = column_codes(owner)
    parts = [owner.bitmaps[code_of[str(owner_id)]] for owner_id in grants.read_owners if str(owner_id) in code_of]
    for field, value in grants.read_criteria:
        column = index.facets[field]
        code = column_codes(column).get(value)
        if code is not None:
            parts.append(column.bitmaps[code])
    return BitMap.union(*parts) if parts else BitMap()


def child_positions(index: EntityIndex, account_column: str, account_ids: np.ndarray) -> BitMap:
    """Positions whose ``account_column`` is one of ``account_ids`` (sorted int64)."""
    column = index.numbers[account_column]
    mask = np.isin(column.values, account_ids)
    if column.present is not None:
        mask &= column.present
    return uint32_bitmap(np.flatnonzero(mask))


def _hierarchy_accounts(cur, owners: frozenset[int]) -> np.ndarray:
    cur.execute(load_sql("crmtasks.search", "accounts_of_owners"), {"owners": sorted(owners)})
    return np.array(sorted(cur.fetchone()[0]), dtype=np.int64)


def reads_accounts(visibility: Visibility, entity: str) -> bool:
    """True when the user's filter needs the accounts their hierarchy owns (child access: deals, contacts)."""
    return bool(visibility.active and not visibility.grants(entity).public_allows(READ)
                and sharing.ENTITIES[entity].account_column and visibility.hierarchy_owners)


class EpochSeen:
    """The sharing epoch's token the last search of this process read (``LogState.sharing_token``).

    A search as a user looks up the user's visibility compiled at that token in the sharing
    checker's memory before sending anything: its statement reads the token again, in its own
    snapshot, and the answer is used only when both agree (the rules are then exactly those of the
    snapshot). A stale token costs a statement once per sharing change, never a wrong answer.
    """

    def __init__(self) -> None:
        self.token: str | None = None

    def note(self, token: str | None) -> None:
        self.token = token

    def remembered(self, user_id: int) -> Visibility | None:
        """``user_id``'s visibility at the token last seen, from memory (no round trip); None when not there."""
        cache = sharing.checker().cache
        if self.token is None or cache is None:
            return None
        return cache.current(user_id, self.token)


EPOCH_SEEN = EpochSeen()


def visibility_filter(cur, visibility: Visibility, entity: str, cache: GrantCache = CACHE) -> PositionFilter | None:
    """The positions of a segment the user of ``visibility`` may read, or None when every row is readable.

    ``visibility``: ``sharing.visibility(user_id, cursor=cur)``, compiled in the search's snapshot. For
    deals and contacts the accounts the user's hierarchy owns are read through ``cur`` (same snapshot);
    when ``reads_accounts`` is false ``cur`` is not used (None will do).
    """
    user_id = visibility.user_id
    shared: SharedEntity = sharing.ENTITIES[entity]
    if not visibility.active:
        return lambda index: BitMap()
    if visibility.grants(entity).public_allows(READ):
        return None
    accounts = _hierarchy_accounts(cur, visibility.hierarchy_owners) if reads_accounts(visibility, entity) else None
    token = visibility.epoch.token

    def positions(index: EntityIndex) -> BitMap | KeptSet:
        if len(index) < CACHE_FROM_ROWS:
            granted = granted_positions(index, visibility, entity)
        else:
            kept = cache.get(index, user_id, token)
            if kept is None:
                kept = KeptSet(granted_positions(index, visibility, entity))
                cache.put(index, user_id, token, kept)
            if accounts is None or not len(accounts):
                return kept  # the same object while the epoch holds: its counts are kept with it
            granted = kept.positions
        if accounts is not None and len(accounts):
            return granted | child_positions(index, shared.account_column, accounts)
        return granted

    return positions
