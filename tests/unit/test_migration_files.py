"""The migration files themselves: no index build inside a transaction on a table that may already hold rows."""

from __future__ import annotations

import re

import pytest

from crmtasks.pg import migrate

_NAME = r"([a-z_][a-z0-9_]*)"
_CREATE_TABLE = re.compile(rf"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_NAME}", re.IGNORECASE)
_CREATE_INDEX = re.compile(rf"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?{_NAME}\s+ON\s+"
                           rf"(ONLY\s+)?{_NAME}", re.IGNORECASE)


def _code(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


@pytest.mark.parametrize("migration", migrate.available(), ids=lambda m: m.label)
def test_a_transactional_part_indexes_only_the_tables_it_creates(migration):
    """An index on an older table would hold a SHARE lock on it, blocking its writers, for the whole build.

    ``ON ONLY`` a partitioned table builds nothing (the partitions' indexes are
    built concurrently later, see crmtasks.audit.partition_indexes), so it is allowed.
    """
    code = _code(migration.sql)
    created = {name.lower() for name in _CREATE_TABLE.findall(code)}
    for concurrently, index, only, table in _CREATE_INDEX.findall(code):
        assert not concurrently, f"{migration.label}: CREATE INDEX CONCURRENTLY cannot run in its transaction"
        assert only or table.lower() in created, (
            f"{migration.label}: index {index} is on {table}, a table an earlier migration created (it may hold "
            f"rows): build it in {migration.path.stem}{migrate.CONCURRENT_SUFFIX}")


def test_concurrent_parts_parse_and_name_each_index_once():
    names = [index.name for migration in migrate.available() for index in migration.indexes]
    assert names and len(names) == len(set(names))


@pytest.mark.parametrize("statement", ["CREATE INDEX leads_x_idx ON leads (name)",
                                       "CREATE INDEX CONCURRENTLY leads_x_idx ON leads (name)",
                                       "DROP INDEX leads_x_idx"])
def test_a_concurrent_part_holds_only_idempotent_concurrent_index_builds(statement):
    with pytest.raises(RuntimeError, match="not a CREATE INDEX CONCURRENTLY IF NOT EXISTS"):
        migrate.parse_concurrent(f"-- a comment; with a semicolon\n{statement};\n", "0009_x.concurrent.sql")


def test_a_concurrent_part_is_read_statement_by_statement():
    text = ("-- first\nCREATE INDEX CONCURRENTLY IF NOT EXISTS a_idx ON a (x);\n"
            "create unique index concurrently if not exists B_idx\n  ON b (y) WHERE y > 0;\n")
    assert [(i.name, i.statement.split()[-1]) for i in migrate.parse_concurrent(text, "f")] == [
        ("a_idx", "(x)"), ("b_idx", "0")]
