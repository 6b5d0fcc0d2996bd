"""Compiling a user's visibility from the database (the uncached path).

One statement (crmtasks/sharing/sql/compile.sql) reads the epoch and every
input (the user, the role tree, the rules granted to the user, the owners
those rules cover, the defaults) from one snapshot, so the result is exactly
the sharing state at the epoch it is tagged with. Cost: a few recursive
index walks over roles and users; it never touches the records.
"""

from __future__ import annotations

from crmtasks.pg import load_sql
from crmtasks.sharing.entities import DEFAULT_GRANTS, EDIT, ENTITIES
from crmtasks.sharing.visibility import EntityGrants, Epoch, Visibility


def compile_sql() -> str:
    """The text of crmtasks/sharing/sql/compile.sql."""
    return load_sql("crmtasks.sharing", "compile")


def compile_visibility(cursor, user_id: int) -> Visibility:
    """The visibility of ``user_id`` as of now, read with ``cursor`` (inside its transaction, if any).

    Read only; takes no lock. An unknown or inactive user gets a visibility
    that allows nothing (still tagged with the epoch, so it is cached too).
    """
    cursor.execute(compile_sql(), {"user_id": user_id})
    number, token, is_active, hierarchy_ids, defaults, rules = cursor.fetchone()
    epoch = Epoch(int(number), str(token))
    if not is_active:
        return Visibility(user_id=user_id, epoch=epoch, active=False, hierarchy_owners=frozenset(), entities={})
    hierarchy = frozenset(hierarchy_ids)
    read_owners = {name: set(hierarchy) for name in ENTITIES}
    edit_owners = {name: set(hierarchy) for name in ENTITIES}
    read_criteria: dict[str, set] = {name: set() for name in ENTITIES}
    edit_criteria: dict[str, set] = {name: set() for name in ENTITIES}
    for rule in rules:
        entity = rule["entity"]
        if entity not in ENTITIES:
            continue  # the migration's CHECK allows no other; a future entity needs code here first
        if rule["kind"] == "owner":
            read_owners[entity].update(rule["owner_ids"])
            if rule["access"] == EDIT:
                edit_owners[entity].update(rule["owner_ids"])
        else:
            pair = (rule["field"], rule["value"])
            read_criteria[entity].add(pair)
            if rule["access"] == EDIT:
                edit_criteria[entity].add(pair)
    entities = {
        name: EntityGrants(
            public=DEFAULT_GRANTS.get(defaults.get(name, "private")),
            read_owners=frozenset(read_owners[name]),
            edit_owners=frozenset(edit_owners[name]),
            read_criteria=frozenset(read_criteria[name]),
            edit_criteria=frozenset(edit_criteria[name]),
        )
        for name in ENTITIES
    }
    return Visibility(user_id=user_id, epoch=epoch, active=True, hierarchy_owners=hierarchy, entities=entities)
