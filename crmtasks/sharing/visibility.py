"""A user's compiled visibility: what the rules say that user may read and edit, record by record.

Compiled from the roles, users, rules and defaults (crmtasks.sharing.compile)
and never from the records themselves: a record's owner and fields are read
live when it is checked (``allows``) or filtered (crmtasks.sharing.filters).
That is why a record write never makes a compiled visibility stale, and why
only changes to the sharing inputs bump the epoch.

A Visibility is immutable and tagged with the ``Epoch`` it was compiled at;
it is valid exactly while the database's epoch is still that one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from crmtasks.sharing.entities import EDIT, ENTITIES, READ

# Version of the cached form (to_json); a cache entry of another version is ignored.
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Epoch:
    """The sharing_epoch row: ``token`` is what tells two states apart; ``number`` is for people."""

    number: int
    token: str


@dataclasses.dataclass(frozen=True)
class EntityGrants:
    """What one user may do with one entity's records, besides owning them.

    Parameters:
      public(str|None): What the organization-wide default grants: None, ``read`` or ``edit``.
      read_owners(frozenset): Owner ids whose records the user reads (self, the
        users below in the hierarchy, owner-based rules of either level).
      edit_owners(frozenset): Owner ids whose records the user edits (a subset of read_owners).
      read_criteria(frozenset): ``(field, value)`` pairs: a record whose field
        equals value is readable (criteria rules of either level).
      edit_criteria(frozenset): The same for edit (a subset of read_criteria).
    """

    public: str | None
    read_owners: frozenset[int]
    edit_owners: frozenset[int]
    read_criteria: frozenset[tuple[str, str]]
    edit_criteria: frozenset[tuple[str, str]]

    def owners(self, level: str) -> frozenset[int]:
        return self.read_owners if level == READ else self.edit_owners

    def criteria(self, level: str) -> frozenset[tuple[str, str]]:
        return self.read_criteria if level == READ else self.edit_criteria

    def public_allows(self, level: str) -> bool:
        return self.public == EDIT or (self.public == READ and level == READ)


NO_GRANTS = EntityGrants(None, frozenset(), frozenset(), frozenset(), frozenset())
_NONE: frozenset = frozenset()


class AccessTest(NamedTuple):
    """One user's access to one entity at one level, as a record check needs it.

    A record passes when ``everything``, or its owner is in ``owners``, or
    its account's owner is in ``parents``, or one of its (field, value)
    pairs is in ``criteria``; never when ``nothing`` (an inactive user).
    """

    nothing: bool
    everything: bool
    owners: frozenset[int]
    parents: frozenset[int]
    criteria: frozenset[tuple[str, str]]


NOTHING = AccessTest(True, False, _NONE, _NONE, _NONE)
EVERYTHING = AccessTest(False, True, _NONE, _NONE, _NONE)


class RecordFacts(NamedTuple):
    """What a check needs to know about one record, read live from its row (a tuple: a page builds many).

    Parameters:
      owner_id(int|None): The record's owner.
      fields(dict): The entity's criteria fields and their values.
      account_owner_id(int|None): Owner of the record's account (contacts and deals), else None.
      account_id(int|None): The record's account (contacts and deals), else None: what the
        memory of ``notify`` mode keys the account owner by.
    """

    owner_id: int | None
    fields: Mapping[str, str | None]
    account_owner_id: int | None = None
    account_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Visibility:
    """One user's compiled visibility at one epoch.

    Parameters:
      user_id(int): The user.
      epoch(Epoch): The sharing_epoch it was compiled at.
      active(bool): False for an inactive or unknown user, who may access nothing.
      hierarchy_owners(frozenset): The user and every user in a role below
        theirs: the owners whose accounts' contacts and deals the user reads.
      entities(dict): entity name -> EntityGrants.
    """

    user_id: int
    epoch: Epoch
    active: bool
    hierarchy_owners: frozenset[int]
    entities: Mapping[str, EntityGrants]

    def grants(self, entity: str) -> EntityGrants:
        return self.entities.get(entity, NO_GRANTS)

    def allows(self, entity: str, level: str, record: RecordFacts | None) -> bool:
        """True when this user may ``level`` (read/edit) the record described by ``record`` (None: no such record)."""
        if record is None:
            return False
        return bool(self.allowed_ids(entity, level, {0: record}))

    def access_test(self, entity: str, level: str) -> AccessTest:
        """What a record of ``entity`` must satisfy for this user to ``level`` it (see AccessTest)."""
        if not self.active:
            return NOTHING
        grants = self.grants(entity)
        if grants.public_allows(level):
            return EVERYTHING
        # Child access: read only, for contacts and deals, through the account's owner.
        parents = self.hierarchy_owners if level == READ and ENTITIES[entity].account_column is not None else _NONE
        return AccessTest(False, False, grants.owners(level), parents, grants.criteria(level))

    def allowed_ids(self, entity: str, level: str, records: Mapping[int, RecordFacts]) -> set[int]:
        """The ids of ``records`` (id -> facts) this user may ``level``: ``allows`` for a page, looked up once."""
        test = self.access_test(entity, level)
        if test.nothing:
            return set()
        if test.everything:
            return set(records)
        owners, parents, criteria = test.owners, test.parents, test.criteria
        allowed = set()
        for record_id, record in records.items():
            if (record.owner_id in owners or record.account_owner_id in parents
                    or (criteria and any((field, value) in criteria for field, value in record.fields.items()))):
                allowed.add(record_id)
        return allowed

    # -- the cached form ---------------------------------------------------

    def to_json(self) -> str:
        """Compact JSON for the shared cache; owner sets are stored minus the hierarchy (which all include)."""
        entities = {}
        for name, grants in self.entities.items():
            entities[name] = {
                "public": grants.public,
                "read_owners": sorted(grants.read_owners - self.hierarchy_owners),
                "edit_owners": sorted(grants.edit_owners - self.hierarchy_owners),
                "read_criteria": sorted(grants.read_criteria),
                "edit_criteria": sorted(grants.edit_criteria),
            }
        return json.dumps({
            "format": FORMAT_VERSION, "user_id": self.user_id, "epoch": [self.epoch.number, self.epoch.token],
            "active": self.active, "hierarchy_owners": sorted(self.hierarchy_owners), "entities": entities,
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Visibility | None:
        """The Visibility in ``text``; None when it is of another format version or malformed."""
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT_VERSION:
                return None
            hierarchy = frozenset(data["hierarchy_owners"])
            entities = {}
            for name, item in data["entities"].items():
                # Equal sets share one object: decoding cost grows with distinct sets, not entities.
                read_owners = hierarchy.union(item["read_owners"]) if item["read_owners"] else hierarchy
                if item["edit_owners"] == item["read_owners"]:
                    edit_owners = read_owners
                else:
                    edit_owners = hierarchy.union(item["edit_owners"]) if item["edit_owners"] else hierarchy
                entities[name] = EntityGrants(
                    public=item["public"],
                    read_owners=read_owners,
                    edit_owners=edit_owners,
                    read_criteria=frozenset(tuple(pair) for pair in item["read_criteria"]),
                    edit_criteria=frozenset(tuple(pair) for pair in item["edit_criteria"]),
                )
            number, token = data["epoch"]
            return cls(user_id=int(data["user_id"]), epoch=Epoch(int(number), str(token)), active=bool(data["active"]),
                       hierarchy_owners=hierarchy, entities=entities)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def summary(self) -> dict[str, Any]:
        """Counts for people (CLI, logs): how many owners and criteria each entity opens."""
        return {
            "user_id": self.user_id, "epoch": self.epoch.number, "active": self.active,
            "hierarchy_owners": len(self.hierarchy_owners),
            "entities": {name: {"public": g.public, "read_owners": len(g.read_owners), "edit_owners": len(g.edit_owners),
                                "read_criteria": len(g.read_criteria), "edit_criteria": len(g.edit_criteria)}
                         for name, g in self.entities.items()},
        }
