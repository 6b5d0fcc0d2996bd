"""A warm check decides on the statement's rows as they come (records.allowed_in): the same answers as
Visibility.allowed_ids over the facts built from those rows, for every entity, level and kind of grant."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crmtasks.sharing.entities import ACCESS_LEVELS, ENTITIES
from crmtasks.sharing.records import allowed_in, facts_of
from crmtasks.sharing.visibility import EntityGrants, Epoch, Visibility

OWNERS = st.one_of(st.none(), st.integers(1, 6))
VALUES = st.sampled_from([None, "a", "b", "c"])
EPOCH = Epoch(3, "token")


def _grants(draw) -> EntityGrants:
    read_owners = draw(st.frozensets(st.integers(1, 6)))
    fields = st.sampled_from(sorted({field for entity in ENTITIES.values() for field in entity.criteria_fields}))
    read_criteria = draw(st.frozensets(st.tuples(fields, st.sampled_from(["a", "b"])), max_size=4))
    return EntityGrants(public=draw(st.sampled_from([None, "read", "edit"])), read_owners=read_owners,
                        edit_owners=frozenset(o for o in read_owners if o % 2), read_criteria=read_criteria,
                        edit_criteria=frozenset(list(read_criteria)[:1]))


@st.composite
def cases(draw):
    entity = ENTITIES[draw(st.sampled_from(sorted(ENTITIES)))]
    visibility = Visibility(user_id=1, epoch=EPOCH, active=draw(st.booleans()),
                            hierarchy_owners=draw(st.frozensets(st.integers(1, 6))),
                            entities={entity.name: _grants(draw)} if draw(st.booleans()) else {})
    rows = []
    for record_id in draw(st.lists(st.integers(1, 50), unique=True, max_size=12)):
        fields = [draw(VALUES) for _ in entity.criteria_fields]
        account = draw(st.one_of(st.none(), st.integers(1, 9))) if entity.account_column else None
        account_owner = draw(OWNERS) if account is not None else None
        rows.append((3, "token", record_id, draw(OWNERS), *fields, account, account_owner))
    if not rows:
        rows = [(3, "token", None, None, *(None for _ in entity.criteria_fields), None, None)]  # nothing matched
    return entity.name, visibility, rows


@settings(max_examples=400, deadline=None)
@given(cases(), st.sampled_from(ACCESS_LEVELS))
def test_rows_and_facts_give_the_same_answer(case, level):
    entity, visibility, rows = case
    expected = visibility.allowed_ids(entity, level, facts_of(entity, rows))
    assert allowed_in(entity, rows, visibility.access_test(entity, level)) == expected
