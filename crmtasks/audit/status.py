"""What `crmtasks audit status` and `crmtasks audit verify` report: partitions, unfinished months, archives."""

from __future__ import annotations

import dataclasses

import psycopg2.extensions
from psycopg2 import sql

from crmtasks.audit import archive_file, codecs, ledger
from crmtasks.audit.archive_file import ArchiveCorrupt, Manifest
from crmtasks.audit.partitions import list_partitions
from crmtasks.audit.retention import archive_names
from crmtasks.audit.stores import ArchiveStore, open_store
from crmtasks.pg import transaction
from crmtasks.settings import Settings


@dataclasses.dataclass(frozen=True)
class ArchiveCheck:
    """The outcome of re-checking one archive against its manifest and the ledger.

    Parameters:
      month(str): ``YYYY-MM`` (or the manifest's file name when it cannot be read and the ledger does not know it).
      ok(bool): The archive is there, readable, and matches its manifest and the ledger.
      rows(int|None): Rows in the data file, when it verified.
      problem(str|None): What is wrong, in one line.
    """

    month: str
    ok: bool
    rows: int | None
    problem: str | None = None


def partition_rows(conn) -> list[dict]:
    """Every partition: name, range, state, exact row count, size in bytes."""
    result = []
    for part in list_partitions(conn):
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(part.name)))
            rows = cur.fetchone()[0]
        state = "default" if part.is_default else "detach pending" if part.detach_pending else "attached"
        result.append({"partition": part.name,
                       "from": part.range_start.isoformat() if part.range_start else ("DEFAULT" if part.is_default else "MINVALUE"),
                       "to": part.range_end.isoformat() if part.range_end else ("DEFAULT" if part.is_default else "MAXVALUE"),
                       "state": state, "rows": rows, "bytes": part.total_bytes})
    return result


def unfinished_months(conn) -> list[dict]:
    """Months whose retention is under way (a killed run left them; the next run resumes them)."""
    with conn.cursor() as cur:
        return [{"month": str(row.calendar_month), "table": row.partition_name, "state": row.state,
                 "policy": row.policy, "since": row.updated_at.isoformat()}
                for row in ledger.rows(cur, ledger.UNFINISHED)]


def expected_archives(conn) -> dict[str, ledger.LedgerRow]:
    """Manifest name -> ledger row, for every month the ledger says was archived.

    The ledger, not the store's listing, says which archives must exist:
    a deleted manifest leaves nothing in the store to notice it by.
    """
    if conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        with transaction(conn, read_only=True) as cur:  # leave the connection as it was found
            rows = ledger.with_archive(cur)
    else:
        with conn.cursor() as cur:  # inside the caller's transaction
            rows = ledger.with_archive(cur)
    return {archive_names(row.calendar_month)[1]: row for row in rows}


def ledger_mismatch(manifest: Manifest, row: ledger.LedgerRow | None) -> str | None:
    """Why ``manifest`` is not the archive the ledger recorded for its month (None when it is, or no row)."""
    if row is None:
        return None
    month = str(row.calendar_month)
    if manifest.month != month:
        return f"the manifest of {month} describes {manifest.month}"
    if row.rows_checksum is not None and (manifest.row_count, manifest.rows_sha256) != (
            row.row_count, row.rows_checksum):
        return (f"{month}: the archive holds {manifest.row_count} rows, not the {row.row_count} rows "
                f"(rows checksum {row.rows_checksum[:12]}...) the ledger recorded when it was archived")
    return None


def with_ledger_context(problem: str, row: ledger.LedgerRow | None) -> str:
    """``problem``, plus what the ledger says is at stake for that month."""
    if row is None:
        return problem
    since = f"{row.updated_at:%Y-%m-%d}" if row.updated_at else "an unknown date"
    if row.state == "dropped":
        return (f"{problem} (the ledger says {row.calendar_month} was archived and dropped on {since}: "
                f"its rows exist only in that archive)")
    return (f"{problem} (the ledger says {row.calendar_month} was archived on {since}; its rows are still in "
            f"the detached table {row.partition_name}, which maintenance will not drop)")


def archives(conn, settings: Settings) -> list[dict]:
    """Every archive the ledger expects or the store holds, from the manifests (data not re-read).

    ``state`` is ``complete`` or what is wrong; ``ledger`` is the month's
    ledger state when the ledger says it was archived (None otherwise).
    Manifest-less data objects (a killed run's leftovers) are listed too.
    StoreError when the store cannot be listed.
    """
    store = open_store(settings)
    expected = expected_archives(conn)
    described: set[str] = set()
    result = []
    for name, row in _manifests_to_check(store, expected):
        entry, data_file = _describe(store, name, row)
        result.append(entry)
        if data_file is not None:
            described.add(data_file)
    for name in store.names(codecs.DATA_SUFFIXES):
        if name not in described:
            result.append({"month": name, "rows": None, "ids": None, "bytes": store.size(name), "archived_at": None,
                           "state": "incomplete (no manifest): not an archive", "ledger": None})
    return sorted(result, key=lambda entry: entry["month"])


def _describe(store: ArchiveStore, name: str, row: ledger.LedgerRow | None) -> tuple[dict, str | None]:
    """One archive's status entry (manifest read, data object's size checked) and its data object's name."""
    month = str(row.calendar_month) if row else name
    entry = {"month": month, "rows": None, "ids": None, "bytes": None, "archived_at": None,
             "ledger": row.state if row else None}
    try:
        manifest = archive_file.read_manifest(store, name)
    except ArchiveCorrupt as error:
        return {**entry, "state": with_ledger_context(str(error), row)}, None
    present = "/" not in manifest.data_file and store.size(manifest.data_file) == manifest.file_bytes
    problem = ledger_mismatch(manifest, row) or (None if present else "data file missing or wrong size")
    entry.update(month=month if row else manifest.month, rows=manifest.row_count,
                 ids=f"{manifest.min_id}..{manifest.max_id}", bytes=manifest.file_bytes,
                 archived_at=manifest.archived_at,
                 state="complete" if problem is None else with_ledger_context(problem, row))
    return entry, manifest.data_file


def verify_archives(conn, settings: Settings) -> list[ArchiveCheck]:
    """Re-read every archive from the store and check it against its manifest and the ledger, oldest month first.

    Every month the ledger says was archived is checked, and fails when its
    manifest or data object is missing or unreadable, when the object differs
    from the manifest (size, SHA-256, row count, rows checksum), or when the
    manifest does not describe the rows the ledger recorded. Archives the
    ledger does not know (another database's, an older ledger's) are checked
    against their manifests. StoreError when the store cannot be listed.
    """
    store = open_store(settings)
    expected = expected_archives(conn)
    checks = [_verify_one(store, name, row) for name, row in _manifests_to_check(store, expected)]
    return sorted(checks, key=lambda check: check.month)


def _verify_one(store: ArchiveStore, name: str, row: ledger.LedgerRow | None) -> ArchiveCheck:
    month = str(row.calendar_month) if row else name
    try:
        manifest = archive_file.read_manifest(store, name)
        month = month if row else manifest.month
        digest = archive_file.verify_against_manifest(store, manifest)
        mismatch = ledger_mismatch(manifest, row)
        if mismatch is not None:
            raise ArchiveCorrupt(mismatch)
    except ArchiveCorrupt as error:
        return ArchiveCheck(month, False, None, with_ledger_context(str(error), row))
    return ArchiveCheck(month, True, digest.row_count)


def _manifests_to_check(store: ArchiveStore, expected: dict[str, ledger.LedgerRow]):
    """(manifest name, ledger row or None): the ledger's months whether or not their manifest exists, then the rest."""
    pairs = list(expected.items())
    return pairs + [(name, None) for name in store.names((archive_file.MANIFEST_SUFFIX,)) if name not in expected]
