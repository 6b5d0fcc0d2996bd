"""``crmtasks audit restore YYYY-MM``: bring an archived month back into audit_log, verified.

All or nothing: the table is created, loaded, checked and attached in one
transaction, so a kill leaves either the restored month or nothing. ATTACH
takes SHARE UPDATE EXCLUSIVE on audit_log: writers go on. The archive files
stay where they are (read from the archive store: a directory or S3); if the month is still past retention, the next
maintenance run detaches it again and, finding an archive of exactly the
same rows, drops it without writing a new one (set CRMTASKS_AUDIT_HOLD=1 to
keep a restored month).
"""

from __future__ import annotations

import dataclasses

from psycopg2 import sql

from crmtasks.audit import archive_file, ledger, status
from crmtasks.audit.archive_file import ArchiveCorrupt
from crmtasks.audit.locking import maintenance_lock
from crmtasks.audit.months import PARENT_TABLE, Month
from crmtasks.audit.partitions import list_partitions, parent_columns, table_exists
from crmtasks.audit.retention import archive_names
from crmtasks.audit.stores import ArchiveStore, open_store
from crmtasks.errors import CrmtasksError
from crmtasks.pg import transaction
from crmtasks.settings import Settings


class RestoreRefused(CrmtasksError):
    """The month cannot be restored; the message says why (one line)."""


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    month: str
    partition: str
    rows: int
    min_id: int | None
    max_id: int | None


def restore_month(conn, settings: Settings, month: Month) -> RestoreResult:
    """Verify ``month``'s archive and re-attach it as audit_log's partition for that month.

    Refuses (RestoreRefused) when there is no archive (saying so when the
    ledger says there should be one), when the file does not match its
    manifest (size, SHA-256, row count, rows checksum), when the manifest
    describes another range or other rows than the ledger recorded for the
    month, when any partition overlaps the month,
    or when a table already has the month's name. After loading, the rows are
    exported again and must give the manifest's rows checksum: the restored
    table holds exactly the archived rows.
    """
    conn.autocommit = True
    with maintenance_lock(conn):
        store = open_store(settings)
        manifest = _verified_archive(conn, store, month)
        overlapping = [p.name for p in list_partitions(conn) if p.overlaps(month)]
        if overlapping:
            raise RestoreRefused(f"{month} overlaps existing partition(s) {', '.join(overlapping)} of {PARENT_TABLE}")
        if table_exists(conn, month.partition_name):
            raise RestoreRefused(f"a table named {month.partition_name} already exists (see `crmtasks audit status`)")
        live = parent_columns(conn)
        unknown = [column for column in manifest.columns if column not in live]
        if unknown:
            raise RestoreRefused(f"archive columns {', '.join(unknown)} no longer exist in {PARENT_TABLE}")
        table = sql.Identifier(month.partition_name)
        with transaction(conn) as cur:
            archive_file.pin_copy_format(cur)
            cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
                table, sql.Identifier(PARENT_TABLE)))
            cur.copy_expert(
                sql.SQL("COPY {} ({}) FROM STDIN").format(table, sql.SQL(", ").join(map(sql.Identifier, manifest.columns))),
                archive_file.CopyTextReader(store, manifest.data_file, archive_file.manifest_codec(manifest)),
                size=1 << 20)
            digest = archive_file.copy_to_digest(cur, archive_file.copy_out_statement(month.partition_name,
                                                                                      manifest.columns))
            if (digest.row_count, digest.rows_sha256) != (manifest.row_count, manifest.rows_sha256):
                raise RestoreRefused(f"{month}: the loaded rows do not reproduce the archive's rows checksum")
            cur.execute(sql.SQL("SELECT count(*), min(id), max(id) FROM {}").format(table))
            count, min_id, max_id = cur.fetchone()
            if (count, min_id, max_id) != (manifest.row_count, manifest.min_id, manifest.max_id):
                raise RestoreRefused(f"{month}: loaded {count} rows (ids {min_id}..{max_id}), manifest says "
                                     f"{manifest.row_count} (ids {manifest.min_id}..{manifest.max_id})")
            # A CHECK matching the bounds lets ATTACH skip its validation scan; it
            # also refuses rows outside the month. Dropped once attached.
            bounds_check = sql.Identifier(f"{month.partition_name}_restore_bounds")
            cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (occurred_at >= {} AND occurred_at < {})").format(
                table, bounds_check, sql.Literal(month.start), sql.Literal(month.end)))
            cur.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(PARENT_TABLE), table, sql.Literal(month.start), sql.Literal(month.end)))
            cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, bounds_check))
            ledger.mark_restored(cur, month, month.partition_name, month.start, month.end, count, min_id, max_id)
    return RestoreResult(str(month), month.partition_name, count, min_id, max_id)


def _verified_archive(conn, store: ArchiveStore, month: Month) -> archive_file.Manifest:
    """``month``'s manifest, its data object verified against it and the manifest against the ledger; else
    RestoreRefused.

    A missing manifest is told apart from "never archived" by the ledger: a
    month it says was archived and dropped has lost its archive, which the
    operator must know rather than read "no archive".
    """
    manifest_name = archive_names(month)[1]
    with conn.cursor() as cur:
        row = next((r for r in ledger.with_archive(cur) if r.calendar_month == month), None)
    if store.size(manifest_name) is None:
        if row is None:
            raise RestoreRefused(f"no archive of {month} in {store.location} (no {manifest_name})")
        raise RestoreRefused(status.with_ledger_context(f"the archive of {month} is lost: {manifest_name} is "
                                                        f"missing from {store.location}", row))
    try:
        manifest = archive_file.read_manifest(store, manifest_name)
        if (manifest.month, manifest.range_start, manifest.range_end) != (
                str(month), month.start.isoformat(), month.end.isoformat()):
            raise RestoreRefused(f"{manifest_name} describes {manifest.month} "
                                 f"[{manifest.range_start}, {manifest.range_end}), not the month {month}")
        archive_file.verify_against_manifest(store, manifest)
    except ArchiveCorrupt as damage:
        raise RestoreRefused(status.with_ledger_context(f"archive of {month} fails verification: {damage}",
                                                        row)) from None
    mismatch = status.ledger_mismatch(manifest, row)
    if mismatch is not None:
        raise RestoreRefused(f"{mismatch}: not the archive this database dropped")
    return manifest
