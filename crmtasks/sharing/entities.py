"""The record types sharing applies to, and what a rule may test on each.

The names are the table names, as in the facet registry (``leads``,
``deals``, ``accounts``, ``contacts``). The criteria fields are the facet
fields a criteria-based rule may test (the migration's CHECK constraint
lists the same pairs). ``account_column`` marks the children of accounts:
their account's owner, and the users above that owner, read them.
"""

from __future__ import annotations

import dataclasses

ACCESS_LEVELS = ("read", "edit")
READ, EDIT = ACCESS_LEVELS
# Organization-wide defaults, from closed to open.
DEFAULT_ACCESS = ("private", "public_read", "public_read_write")
# What each default grants every active user: nothing, read, or read and edit.
DEFAULT_GRANTS = {"private": None, "public_read": READ, "public_read_write": EDIT}
RULE_KINDS = ("owner", "criteria")


@dataclasses.dataclass(frozen=True)
class SharedEntity:
    """One record type under sharing.

    Parameters:
      name(str): API name and table name (``leads``).
      criteria_fields(tuple): Text columns a criteria-based rule may test.
      account_column(str|None): Column holding the record's account id, for
        implicit child access; None for records that are no account's child.
    """

    name: str
    criteria_fields: tuple[str, ...]
    account_column: str | None = None

    @property
    def table(self) -> str:
        return self.name


ENTITIES: dict[str, SharedEntity] = {
    entity.name: entity
    for entity in (
        SharedEntity("leads", ("status", "industry", "source", "rating")),
        SharedEntity("deals", ("stage",), account_column="account_id"),
        SharedEntity("accounts", ("industry", "region")),
        SharedEntity("contacts", ("lead_source",), account_column="account_id"),
    )
}


def get_entity(name: str) -> SharedEntity:
    """The entity called ``name``; ValueError listing the valid names otherwise."""
    try:
        return ENTITIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown entity {name!r}; expected one of {', '.join(ENTITIES)}") from None


def check_level(level: str) -> str:
    """``level`` when it is ``read`` or ``edit``; ValueError otherwise."""
    if level not in ACCESS_LEVELS:
        raise ValueError(f"unknown access level {level!r}; expected one of {', '.join(ACCESS_LEVELS)}")
    return level
