"""can_access_many: a page of records checked in one statement, with the answers of can_access.

On the hand-made organization of test_sharing_model, in both consistency
modes; the random organizations of test_sharing_reference compare it with
the reference evaluator too.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from crmtasks import sharing
from crmtasks.cli import main
from crmtasks.settings import get_settings
from tests.integration import test_sharing_model as hand_made
from tests.integration.test_sharing_model import CEO, GONE, LEADS, SUPPORT, USERS
from tests.integration.test_sharing_revocation import ROOT, _environment

organization = hand_made.organization  # the fixture writing the hand-made organization

IDS = {"leads": list(LEADS), "deals": list(hand_made.DEALS), "accounts": list(hand_made.ACCOUNTS),
       "contacts": list(hand_made.CONTACTS)}


@pytest.fixture(params=["exact", "notify"])
def checker(request, organization):
    made = sharing.make_checker(get_settings(), consistency=request.param)
    if made.listener is not None:
        assert made.listener.wait_listening(10)
    yield made
    made.close()


def test_many_answers_as_one_by_one(checker):
    for user_id in [*USERS, 999]:
        for entity, ids in IDS.items():
            for level in ("read", "edit"):
                asked = [*ids, 777, ids[0]]  # an unknown id and a repeated one
                expected = {record_id for record_id in asked if checker.can_access(user_id, entity, record_id, level)}
                assert checker.can_access_many(user_id, entity, asked, level) == expected, (user_id, entity, level)
    assert checker.can_access_many(CEO, "leads", []) == set()
    assert checker.can_access_many(CEO, "leads", iter([1, 2**70, -4, 0])) == {1}  # out of range: no such record


def _executions(crm_db, name: str) -> int:
    row = crm_db.execute_sql("SELECT generic_plans + custom_plans FROM pg_prepared_statements WHERE name = %s",
                             (name,)).fetchone()
    return row[0] if row else 0


def test_ten_thousand_ids_take_one_statement(organization, crm_db):
    checker = sharing.make_checker(get_settings(), consistency="exact")
    crm_db.execute_sql("INSERT INTO leads (id, name, status, owner_id) "
                       "SELECT n, 'lead ' || n, 'new', %s FROM generate_series(100, 10098) AS n", (SUPPORT,))
    ids = list(range(1, 10_001))
    small = {record_id for record_id in LEADS if checker.can_access(SUPPORT, "leads", record_id)}
    checker.can_access_many(SUPPORT, "leads", ids[:2])  # prepares the statement
    before, compiles = _executions(crm_db, "crmtasks_sharing_records_leads"), checker.counts["compiles"]
    allowed = checker.can_access_many(SUPPORT, "leads", ids)
    assert _executions(crm_db, "crmtasks_sharing_records_leads") == before + 1
    assert checker.counts["compiles"] == compiles  # warm: nothing else was sent
    assert allowed == small | set(range(100, 10_001))  # the hand-made answers and the user's own leads
    assert small == {1, 2, 3}  # rules 2 and 1


def test_bad_batches_are_refused_before_any_sql(crm_db):
    assert sharing.MAX_BATCH == 10_000
    for bad, message in [((1, "lead", [1]), "unknown entity 'lead'"), ((1, "leads", [1], "write"), "unknown access level"),
                         ((1, "leads", [1, "2"]), "every record id must be an int, got str '2'"),
                         ((1, "leads", [1, 2.0]), "every record id must be an int"),
                         ((1, "leads", [True]), "every record id must be an int"),
                         ((1, "leads", "12"), "record_ids must be a collection of ints, got str"),
                         ((1, "leads", 12), "record_ids must be a collection of ints, got int"),
                         (("1", "leads", [1]), "user_id must be an int"),
                         ((1, "leads", range(10_001)), "at most 10,000 record ids per call")]:
        with pytest.raises(ValueError, match=message):
            sharing.can_access_many(*bad)


# Run against a server that is not there: a refusal that comes before any SQL needs no server.
_NO_SERVER = """
import json
from crmtasks import sharing
outcomes = []
for args in ([1, "leads", [1, "2"]], [1, "leads", list(range(10_001))], [1, "deals", [1], "own"], [1, "leads", [1, 2]]):
    try:
        sharing.can_access_many(*args)
        outcomes.append("allowed")
    except Exception as error:
        outcomes.append(type(error).__name__)
print(json.dumps(outcomes))
"""


@pytest.mark.parametrize("consistency", ["exact", "notify"])
def test_bad_batches_never_reach_the_database(consistency):
    env = {**_environment(), "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere",
           "CRMTASKS_SHARING_CONSISTENCY": consistency}
    result = subprocess.run([sys.executable, "-c", _NO_SERVER], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    # the last, valid call is the only one that tried to connect
    assert json.loads(result.stdout.splitlines()[-1]) == ["ValueError", "ValueError", "ValueError", "OperationalError"]


def test_sharing_check_takes_several_records(organization):
    runner = CliRunner()
    several = runner.invoke(main, ["sharing", "check", str(SUPPORT), "leads", "3", "4", "3"])
    assert (several.exit_code, several.output) == (1, f"user {SUPPORT} may read leads 3\nuser {SUPPORT} may NOT read leads 4\n")
    allowed = runner.invoke(main, ["sharing", "check", str(CEO), "leads", "1", "4"])
    assert allowed.exit_code == 0 and allowed.output.count("may read") == 2
    assert runner.invoke(main, ["sharing", "check", str(GONE), "leads", "5"]).exit_code == 1
    too_many = runner.invoke(main, ["sharing", "check", str(CEO), "leads", *map(str, range(1, 10_002))])
    assert too_many.exit_code == 2 and "at most 10,000 record ids per check, got 10,001" in too_many.output
