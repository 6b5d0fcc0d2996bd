"""Retention: archive (or delete) the audit_log partitions wholly older than the retention window.

Which partitions: those whose upper bound, read from the catalog, is at or
before the first instant of (current month - retention months), UTC. A
partition's name is never used to decide; partitions whose bounds are not
exactly one calendar month are left alone and counted as ``irregular``.

How, per month (see crmtasks.audit.ledger for the state machine):
1. ledger 'detaching' (with the catalog bounds), then
   ``ALTER TABLE audit_log DETACH PARTITION ... CONCURRENTLY``: SHARE UPDATE
   EXCLUSIVE on audit_log only, so inserts and reads never wait; it runs
   outside a transaction block. A detach left "pending" by a kill is
   completed with ``DETACH PARTITION ... FINALIZE``.
2. ledger 'detached'. Archive policy: the detached table (which nothing
   writes to any more) is exported with COPY into a zstd object under a
   temporary name in the archive store (a directory or an S3 bucket,
   crmtasks.audit.stores), made durable there, read back from the store and
   checked (row count against count(*) in the same snapshot, rows checksum,
   file SHA-256), published under its final name, and only then the
   manifest is written and read back.
3. ledger 'archived'. The manifest and the data object are read back from
   the store and verified once more, then the table is dropped in one
   transaction with the ledger's 'dropped', after checking under ACCESS
   EXCLUSIVE (on the detached table only) that it still holds exactly the
   archived rows. A store that fails (unreachable, a failed upload) fails
   the run with one StoreError line and drops nothing; the next run resumes.
Delete policy: 1, then 3 without the archive.

Legal hold (CRMTASKS_AUDIT_HOLD=1): no new month is detached and no table is
dropped; an interrupted detach is still finalized and an already detached
month may still get its (verified) archive file: neither removes a row from
the database.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

from psycopg2 import sql

from crmtasks.audit import archive_file, codecs, ledger
from crmtasks.audit.archive_file import ArchiveCorrupt, Manifest
from crmtasks.audit.codecs import Codec
from crmtasks.audit.months import PARENT_TABLE, Month
from crmtasks.audit.partitions import Partition, list_partitions, parent_columns
from crmtasks.audit.pause import pause_point
from crmtasks.audit.stores import ArchiveStore, StoreError, open_store, temporary_name
from crmtasks.errors import CrmtasksError
from crmtasks.pg import transaction
from crmtasks.settings import Settings

log = logging.getLogger(__name__)

# Longest wait for a lock on a detached table before a drop gives up (retried next run).
DROP_LOCK_TIMEOUT = "10s"


class ArchiveConflict(CrmtasksError):
    """A month already has a verified archive holding different rows; nothing is overwritten."""


@dataclasses.dataclass
class RetentionStats:
    """What one retention pass did.

    Parameters:
      archived(int): Months whose verified archive was written (or found complete) this run.
      dropped(int): Detached tables dropped (archived or deleted months).
      rows(int): Audit rows that left the database (archived then dropped, or deleted).
      bytes(int): Bytes of archive files written.
      finalized(int): Interrupted detaches completed with FINALIZE.
      held(int): Months past retention left in place because of the legal hold.
      irregular(int): Past-retention partitions not exactly one month: left alone.
      conflicts(int): Months left detached because an archive with other rows exists.
    """

    archived: int = 0
    dropped: int = 0
    rows: int = 0
    bytes: int = 0
    finalized: int = 0
    held: int = 0
    irregular: int = 0
    conflicts: int = 0


def retention_cutoff(current: Month, retention_months: int) -> datetime.datetime:
    """Partitions ending at or before this instant are past retention."""
    return current.plus(-retention_months).start


def past_retention(partitions: list[Partition], cutoff: datetime.datetime) -> list[Partition]:
    """The attached partitions wholly older than ``cutoff`` (by catalog bounds), oldest first."""
    return [p for p in partitions if not p.detach_pending and p.wholly_before(cutoff)]


def apply_retention(conn, settings: Settings, current: Month) -> RetentionStats:
    """Resume every unfinished month, then start on every partition past retention.

    ``conn`` must be an autocommit psycopg2 connection holding the
    maintenance lock. Idempotent and resumable after kill -9 at any point.
    """
    stats = RetentionStats()
    store = open_store(settings)
    with conn.cursor() as cur:
        unfinished = ledger.rows(cur, ledger.UNFINISHED)
    for row in unfinished:
        _advance(conn, settings, store, row, stats)
    resumed = {row.calendar_month for row in unfinished}

    cutoff = retention_cutoff(current, settings.audit_retention_months)
    for partition in past_retention(list_partitions(conn), cutoff):
        month = partition.month
        if partition.is_default:
            continue
        if month in resumed:
            continue  # still attached because the hold stopped it above: counted there
        if month is None:
            stats.irregular += 1
            log.warning("audit partition %s has irregular bounds [%s, %s): not touched by retention",
                        partition.name, partition.range_start, partition.range_end)
            continue
        if settings.audit_hold:
            stats.held += 1
            continue
        with transaction(conn) as cur:
            ledger.begin(cur, month, partition.name, partition.range_start, partition.range_end,
                         settings.audit_retention_policy)
            row = ledger.get(cur, month)
        _advance(conn, settings, store, row, stats)
    return stats


def _advance(conn, settings: Settings, store: ArchiveStore, row: ledger.LedgerRow, stats: RetentionStats) -> None:
    """Take one month as far along its state machine as the policy and the hold allow."""
    month = row.calendar_month
    policy = "archive" if "archive" in (row.policy, settings.audit_retention_policy) else "delete"
    state = row.state

    if state == "detaching":
        where = _locate(conn, row)
        if where == "attached":
            if settings.audit_hold:
                stats.held += 1
                return
            pause_point(settings, "before_detach")
            _detach_concurrently(conn, row.partition_name)
        elif where == "pending":
            _finalize_detach(conn, row.partition_name)
            stats.finalized += 1
        elif where == "missing":
            log.error("audit month %s: table %s is gone although the ledger says 'detaching'",
                      month, row.partition_name)
            return
        pause_point(settings, "after_detach")
        with transaction(conn) as cur:
            ledger.set_state(cur, month, "detached")
        state = "detached"

    if state == "archived" and policy == "archive" and not _archive_intact(store, month):
        state = "detached"  # its rows are still in the detached table: archive them again

    if state == "detached" and policy == "archive":
        try:
            manifest, written_bytes = archive_detached(conn, settings, store, row)
        except ArchiveConflict as conflict:
            stats.conflicts += 1
            log.error("%s", conflict)
            return
        pause_point(settings, "after_manifest")
        with transaction(conn) as cur:
            ledger.set_state(cur, month, "archived", row_count=manifest.row_count, min_id=manifest.min_id,
                             max_id=manifest.max_id, data_file=manifest.data_file,
                             file_sha256=manifest.file_sha256, rows_checksum=manifest.rows_sha256,
                             file_bytes=manifest.file_bytes)
        stats.archived += 1
        stats.bytes += written_bytes
        state = "archived"

    if state in ("archived", "detached"):
        if settings.audit_hold:
            stats.held += 1
            return
        expected = None
        if state == "archived":
            expected = _verified_manifest(store, month)
        pause_point(settings, "before_drop")
        stats.rows += _drop_detached(conn, row, expected)
        stats.dropped += 1


def _locate(conn, row: ledger.LedgerRow) -> str:
    """Where the month's table is: 'attached', 'pending' (detach interrupted), 'detached' or 'missing'."""
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT i.inhrelid IS NOT NULL, coalesce(i.inhdetachpending, false)
            FROM pg_class c
            LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = %s::regclass
            WHERE c.oid = to_regclass(%s)
            """,
            (PARENT_TABLE, sql.Identifier(row.partition_name).as_string(conn)),
        )
        found = cur.fetchone()
    if found is None:
        return "missing"
    attached, pending = found
    if attached:
        bounds = {p.name: p for p in list_partitions(conn)}[row.partition_name]
        if (bounds.range_start, bounds.range_end) != (row.range_start, row.range_end):
            raise RuntimeError(f"partition {row.partition_name} now has bounds [{bounds.range_start}, "
                               f"{bounds.range_end}), not the [{row.range_start}, {row.range_end}) retention chose")
        return "pending" if pending else "attached"
    return "detached"


def _detach_concurrently(conn, name: str) -> None:
    """DETACH PARTITION ... CONCURRENTLY (autocommit; waits for older transactions without blocking writers)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
            sql.Identifier(PARENT_TABLE), sql.Identifier(name)))


def _finalize_detach(conn, name: str) -> None:
    """Complete a DETACH ... CONCURRENTLY that was interrupted between its two transactions."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(
            sql.Identifier(PARENT_TABLE), sql.Identifier(name)))


def archive_names(month: Month, codec: Codec = codecs.WRITE_DEFAULT) -> tuple[str, str]:
    """(data object, manifest) names of ``month``'s archive, computed from the month."""
    base = month.partition_name
    return f"{base}{codec.suffix}", f"{base}{archive_file.MANIFEST_SUFFIX}"


def archive_detached(conn, settings: Settings, store: ArchiveStore, row: ledger.LedgerRow, *,
                     codec: Codec = codecs.WRITE_DEFAULT) -> tuple[Manifest, int]:
    """Write, verify and publish the archive of a detached month; return (manifest, bytes written).

    Idempotent: a complete archive of the same rows (same rows checksum) is
    reused; a leftover temporary or manifest-less data object is replaced. An
    archive of different rows is never overwritten (ArchiveConflict).
    """
    month = row.calendar_month
    data_name, manifest_name = archive_names(month, codec)
    columns = parent_columns(conn)
    table = row.partition_name
    with transaction(conn, repeatable_read=True, read_only=True) as cur:
        archive_file.pin_copy_format(cur)
        cur.execute(sql.SQL("SELECT count(*), min(id), max(id), min(occurred_at), max(occurred_at) FROM {}").format(
            sql.Identifier(table)))
        row_count, min_id, max_id, min_at, max_at = cur.fetchone()
        writer = store.writer(data_name, on_part=_first_part_pause(settings))
        digest = archive_file.copy_to_store(cur, archive_file.copy_out_statement(table, columns), writer,
                                            codec=codec, on_rows=_halfway_pause(settings, row_count),
                                            duty_percent=settings.archive_duty_percent)
    temp_name = temporary_name(data_name)
    try:
        if digest.row_count != row_count:
            raise ArchiveCorrupt(f"{month}: COPY gave {digest.row_count} rows, count(*) says {row_count}")
        if archive_file.read_digest(store, temp_name, codec) != digest:
            raise ArchiveCorrupt(f"{month}: the object read back from {store.location} differs from what was written")
        replaced = None
        if store.size(manifest_name) is not None:
            existing, replaced = _reusable_archive(store, month, manifest_name, digest)
            if existing is not None:
                return existing, 0
        store.publish(data_name)
    finally:
        _discard(store, temp_name)
    pause_point(settings, "after_data_file")
    manifest = Manifest(
        month=str(month), partition=table, range_start=row.range_start.isoformat(),
        range_end=row.range_end.isoformat(), columns=columns, row_count=row_count, min_id=min_id, max_id=max_id,
        min_occurred_at=_iso(min_at), max_occurred_at=_iso(max_at), data_file=data_name,
        file_bytes=digest.file_bytes, file_sha256=digest.file_sha256, rows_sha256=digest.rows_sha256,
        compression=codec.label, format="postgresql-copy-text",
        archived_at=datetime.datetime.now(datetime.timezone.utc).isoformat(),
    )
    store.put(manifest_name, manifest.to_json().encode())
    if archive_file.read_manifest(store, manifest_name) != manifest:
        raise ArchiveCorrupt(f"{month}: the manifest read back from {store.location} differs from what was written")
    if replaced != data_name and replaced in {month.partition_name + suffix for suffix in codecs.DATA_SUFFIXES}:
        _discard(store, replaced)  # the damaged archive's data under its older name (.copy.gz): no manifest names it
    return manifest, digest.file_bytes


def _discard(store: ArchiveStore, temp_name: str) -> None:
    """Remove a temporary object (published, or not to be); a failure only leaves it for the next writer."""
    try:
        store.delete(temp_name)
    except StoreError as error:
        log.warning("could not remove %s: %s", temp_name, error)


def _reusable_archive(store: ArchiveStore, month: Month, manifest_name: str,
                      digest: archive_file.StreamDigest) -> tuple[Manifest | None, str | None]:
    """(the existing archive when it holds exactly these rows and verifies, else None; the data object name its
    manifest gives, which a rewrite replaces)."""
    try:
        existing = archive_file.read_manifest(store, manifest_name)
    except ArchiveCorrupt:
        return None, None  # an unreadable manifest: our rows are still in the table, rewrite both
    if (existing.row_count, existing.rows_sha256) != (digest.row_count, digest.rows_sha256):
        raise ArchiveConflict(
            f"audit month {month}: {manifest_name} in {store.location} already archives {existing.row_count} other "
            f"rows; the detached table is kept (restore or move that archive aside, then re-run)")
    try:
        archive_file.verify_against_manifest(store, existing)
    except ArchiveCorrupt as damage:
        log.warning("replacing damaged archive of %s: %s", month, damage)
        return None, existing.data_file
    return existing, existing.data_file


def _archive_intact(store: ArchiveStore, month: Month) -> bool:
    """Whether the archive the ledger recorded for ``month`` is still there and verifies (logged when not).

    Checked before the drop: the ledger's 'archived' alone does not prove the
    objects survived since (deleted, damaged), and the table still has the rows.
    """
    try:
        _verified_manifest(store, month)
    except ArchiveCorrupt as damage:
        log.warning("audit month %s: its recorded archive fails verification (%s): archiving it again from the "
                    "detached table", month, damage)
        return False
    return True


def _verified_manifest(store: ArchiveStore, month: Month) -> Manifest:
    """The month's manifest after re-reading its data object from the store (before a drop)."""
    manifest = archive_file.read_manifest(store, archive_names(month)[1])
    archive_file.verify_against_manifest(store, manifest)
    return manifest


def _drop_detached(conn, row: ledger.LedgerRow, expected: Manifest | None) -> int:
    """Drop the detached table and mark the month 'dropped', atomically; return its row count.

    With ``expected`` (archive policy), refuse unless the table still holds
    exactly the archived rows: same count and id range, checked under ACCESS
    EXCLUSIVE on the detached table (audit_log itself is not locked).
    """
    table = sql.Identifier(row.partition_name)
    with transaction(conn) as cur:
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (DROP_LOCK_TIMEOUT,))
        cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        cur.execute(sql.SQL("SELECT count(*), min(id), max(id) FROM {}").format(table))
        count, min_id, max_id = cur.fetchone()
        if expected is not None and (count, min_id, max_id) != (expected.row_count, expected.min_id, expected.max_id):
            raise ArchiveCorrupt(
                f"{row.partition_name} holds {count} rows (ids {min_id}..{max_id}) but its archive has "
                f"{expected.row_count} (ids {expected.min_id}..{expected.max_id}): not dropped")
        cur.execute(sql.SQL("DROP TABLE {}").format(table))
        ledger.set_state(cur, row.calendar_month, "dropped", row_count=count, min_id=min_id, max_id=max_id)
    return count


def _first_part_pause(settings: Settings):
    if settings.audit_pause_at != "part_stored":
        return None

    def maybe_pause(parts_so_far: int) -> None:
        if parts_so_far == 1:
            pause_point(settings, "part_stored")

    return maybe_pause


def _halfway_pause(settings: Settings, row_count: int):
    if settings.audit_pause_at != "mid_write":
        return None
    half = max(row_count // 2, 1)

    def maybe_pause(rows_so_far: int) -> None:
        if rows_so_far >= half:
            pause_point(settings, "mid_write")

    return maybe_pause


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.astimezone(datetime.timezone.utc).isoformat() if moment is not None else None
