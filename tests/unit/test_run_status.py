"""Run status, trigger, slot state and skip reason are enums whose values are the strings stored and shown.

The values must be exactly those the schema's CHECK constraints allow, and
a member must read as its value wherever it ends up (f-strings, tables,
JSON, Prometheus labels, dictionary keys), so that moving from bare strings
to enums changes nothing outside Python.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import crmtasks
from crmtasks.runs.runner import Outcome
from crmtasks.runs.status import (
    CATCH_UP_REASON,
    JobState,
    RunStatus,
    SkipReason,
    SlotState,
    Trigger,
)

PACKAGE = Path(crmtasks.__file__).resolve().parent


def _table_sql(table: str) -> str:
    """The CREATE TABLE statement of ``table`` in the package's migrations."""
    pattern = re.compile(rf"CREATE TABLE {table} \((.*?)\n\);", re.S)
    found = {match.group(1) for path in PACKAGE.rglob("migrations/*.sql")
             for match in pattern.finditer(path.read_text())}
    assert len(found) == 1, f"expected one CREATE TABLE {table}, found {len(found)}"
    return found.pop()


def _allowed(table: str, column: str) -> set[str]:
    """The values the CHECK constraint of ``table.column`` allows."""
    match = re.search(rf"\b{column}\b[^\n]*CHECK \({column} IN \(([^)]*)\)\)", _table_sql(table))
    assert match, f"no CHECK on {table}.{column}"
    return {value.strip().strip("'") for value in match.group(1).split(",")}


@pytest.mark.parametrize(("enum", "table", "column"), [
    (RunStatus, "task_runs", "status"),
    (Trigger, "task_runs", "trigger"),
    (SlotState, "schedule_slots", "state"),
])
def test_enum_values_are_the_values_the_schema_allows(enum, table, column):
    assert {member.value for member in enum} == _allowed(table, column)


def test_slot_reasons_are_the_stored_skip_reasons_and_catch_up():
    # A queued or deferred message is never recorded: it is decided, and recorded, later.
    stored = {reason.value for reason in SkipReason} - {SkipReason.QUEUED, SkipReason.DEFERRED}
    assert stored | {CATCH_UP_REASON} == _allowed("schedule_slots", "reason")


@pytest.mark.parametrize("member", [*RunStatus, *Trigger, *SlotState, *SkipReason, *JobState])
def test_a_member_reads_as_its_value_everywhere(member):
    value = member.value
    assert member == value and value == member
    assert str(member) == f"{member}" == "%s" % member == value
    assert f"{member:>12}" == f"{value:>12}"
    assert json.dumps({"status": member}) == json.dumps({"status": value})
    assert {value: 1}[member] == 1 and {member: 1}[value] == 1


def test_stored_strings_compare_equal_to_members():
    assert "failed" == RunStatus.FAILED and "succeeded" != RunStatus.FAILED
    assert RunStatus("skipped") is RunStatus.SKIPPED


def test_an_outcome_prints_as_json_with_plain_strings():
    outcome = Outcome("tidy_up", RunStatus.SKIPPED, 0.0, {"skip_reason": SkipReason.OVERLAP})
    assert json.loads(json.dumps(vars(outcome))) == {
        "task": "tidy_up", "status": "skipped", "duration_s": 0.0, "stats": {"skip_reason": "overlap"},
        "error": None, "run_id": None}
