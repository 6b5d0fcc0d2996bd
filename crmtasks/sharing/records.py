"""Reading records' facts and the current epoch in one round trip: one record, or a page of them.

Every check reads the record's row live (owner, criteria fields, account
owner): a reassigned record or a changed field counts at the very next check
without any cache invalidation. The epoch comes in the same statement, so the
record and the epoch are from one snapshot, at the cost of no extra round trip.

The statements (one record; an array of ids) are prepared once per
connection by crmtasks.pg.prepared (PREPARE/EXECUTE saves the parse and plan
of every call: tens of microseconds of a ~0.2 ms check). They are prepared
only on an idle connection (never inside a caller's transaction); a
connection that lost them (DISCARD ALL) gets them again.

In ``notify`` mode the same facts are also remembered between checks
(crmtasks.sharing.cache.LocalRecordCache), forgotten when a notification
says the record changed.
"""

from __future__ import annotations

from psycopg2 import sql

from crmtasks.pg.prepared import PreparedStatement
from crmtasks.sharing.entities import ENTITIES, SharedEntity
from crmtasks.sharing.visibility import AccessTest, Epoch, RecordFacts

_EPOCH_SQL = "SELECT epoch, token::text FROM sharing_epoch"


def read_epoch(cursor) -> Epoch:
    """The current sharing epoch (a one-row table: well under a millisecond)."""
    cursor.execute(_EPOCH_SQL)
    number, token = cursor.fetchone()
    return Epoch(int(number), str(token))


def _record_query(entity: SharedEntity, batch: bool, placeholder: sql.Composable) -> sql.Composable:
    """epoch, token, then per record whose id is ``placeholder`` (an array of ids with ``batch``): id,
    owner_id, <criteria fields>, account id and account owner (NULL when none). One row of NULLs after the
    epoch when no record matches.

    A batch joins the unnested array to the table: one index probe per id,
    which PostgreSQL answers from the covering index of migration 0016
    (id INCLUDE the fields read) without visiting the table; ``id = ANY(...)``
    is planned as a scan of the primary key plus the table instead.
    """
    record = sql.Identifier("record")
    columns = [sql.SQL("{}.{}").format(record, sql.Identifier(name)) for name in ("id", "owner_id", *entity.criteria_fields)]
    if entity.account_column:
        account_id = sql.SQL("record.{}").format(sql.Identifier(entity.account_column))
        account_owner = sql.SQL("account.owner_id")
        account_join = sql.SQL(" LEFT JOIN accounts AS account ON account.id = {}").format(account_id)
    else:
        account_id, account_owner, account_join = sql.SQL("NULL::bigint"), sql.SQL("NULL::bigint"), sql.SQL("")
    if batch:
        records = sql.SQL("(unnest({}) AS wanted(id) JOIN {} AS record ON record.id = wanted.id{}) ON true").format(
            placeholder, sql.Identifier(entity.table), account_join)
    else:
        records = sql.SQL("{} AS record ON record.id = {}{}").format(sql.Identifier(entity.table), placeholder,
                                                                     account_join)
    return sql.SQL(
        "SELECT epoch.epoch, epoch.token::text, {columns}, {account_id}, {account_owner} "
        "FROM sharing_epoch AS epoch LEFT JOIN {records}"
    ).format(columns=sql.SQL(", ").join(columns), account_id=account_id, account_owner=account_owner, records=records)


def _statement_name(entity: SharedEntity, batch: bool) -> str:
    """A fixed identifier (lower-case letters and underscores only, so it needs no quoting)."""
    return f"crmtasks_sharing_{'records' if batch else 'record'}_{entity.name}"


def _statement(entity: SharedEntity, batch: bool) -> PreparedStatement:
    return PreparedStatement(_statement_name(entity, batch), ("bigint[]" if batch else "bigint",),
                             lambda placeholders: _record_query(entity, batch, placeholders[0]))


# Built once per process: a warm check only looks its statement up.
_STATEMENTS = {(name, batch): _statement(entity, batch) for name, entity in ENTITIES.items() for batch in (False, True)}


def read_rows(cursor, entity_name: str, record_ids: list[int]) -> list[tuple]:
    """The rows of the record query for ``record_ids`` (ints in bigint range), one round trip.

    Every row starts with the epoch number and token (one snapshot with the
    records); then id, owner_id, the criteria fields, account id and account
    owner. When no record matches: one row, NULL after the epoch.
    """
    if len(record_ids) == 1:
        _STATEMENTS[entity_name, False].execute(cursor, (record_ids[0],))
    else:
        # An array literal: psycopg2 would adapt each int of a list in turn (~0.6 us each); int.__repr__
        # writes the digits whatever an int subclass's str() says.
        _STATEMENTS[entity_name, True].execute(cursor, ("{" + ",".join(map(int.__repr__, record_ids)) + "}",))
    return cursor.fetchall()


def epoch_of(rows: list[tuple]) -> Epoch:
    """The epoch the rows of ``read_rows`` were read at."""
    return Epoch(int(rows[0][0]), str(rows[0][1]))


def facts_of(entity_name: str, rows: list[tuple]) -> dict[int, RecordFacts]:
    """``{id: facts}`` of the records in ``rows`` (of ``read_rows``)."""
    entity = ENTITIES[entity_name]
    return {row[2]: _facts(entity, row) for row in rows if row[2] is not None}


def allowed_in(entity_name: str, rows: list[tuple], test: AccessTest) -> set[int]:
    """The ids of the records in ``rows`` (of ``read_rows``) that ``test`` lets through.

    The same decision as Visibility.allowed_ids over ``facts_of(rows)``, made
    on the rows as they come: a warm check builds no per-record objects.
    """
    if test.nothing:
        return set()
    if test.everything:
        return {row[2] for row in rows if row[2] is not None}
    owners, parents, criteria = test.owners, test.parents, test.criteria
    fields = _CRITERIA_COLUMNS[entity_name] if criteria else ()
    allowed = set()
    for row in rows:
        if row[2] is None:
            continue
        if row[3] in owners or row[-1] in parents or (fields and any((field, row[i]) in criteria for field, i in fields)):
            allowed.add(row[2])
    return allowed


# entity -> ((criteria field, its column in the record query's rows), ...)
_CRITERIA_COLUMNS = {name: tuple((field, 4 + i) for i, field in enumerate(entity.criteria_fields))
                     for name, entity in ENTITIES.items()}


def _facts(entity: SharedEntity, row) -> RecordFacts:
    fields = dict(zip(entity.criteria_fields, row[4:4 + len(entity.criteria_fields)]))
    return RecordFacts(owner_id=row[3], fields=fields, account_owner_id=row[-1], account_id=row[-2])


def fetch_record(cursor, entity_name: str, record_id: int) -> tuple[Epoch, RecordFacts | None]:
    """``(current epoch, the record's facts or None when there is no such record)``, one round trip."""
    rows = read_rows(cursor, entity_name, [record_id])
    return epoch_of(rows), facts_of(entity_name, rows).get(record_id)


def fetch_records(cursor, entity_name: str, record_ids: list[int]) -> tuple[Epoch, dict[int, RecordFacts]]:
    """``(current epoch, {id: facts} of those of ``record_ids`` that exist)``, one round trip for any number of ids.

    ``record_ids`` must be ints within bigint range (crmtasks.sharing.checker checks them).
    """
    rows = read_rows(cursor, entity_name, list(record_ids))
    return epoch_of(rows), facts_of(entity_name, rows)
