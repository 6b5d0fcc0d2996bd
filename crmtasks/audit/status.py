"""What `crmtasks audit status` and `crmtasks audit verify` report: partitions, unfinished months, archives."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from psycopg2 import sql

from crmtasks.audit import archive_file, ledger
from crmtasks.audit.archive_file import ArchiveCorrupt
from crmtasks.audit.partitions import list_partitions
from crmtasks.settings import Settings


@dataclasses.dataclass(frozen=True)
class ArchiveCheck:
    """The outcome of re-checking one archive against its manifest."""

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


def archives(directory: Path) -> list[dict]:
    """The archives in ``directory`` from their manifests (not re-verified), plus manifest-less leftovers."""
    result = []
    if not directory.is_dir():
        return result
    described = set()
    for path in sorted(directory.glob(f"*{archive_file.MANIFEST_SUFFIX}")):
        try:
            manifest = archive_file.read_manifest(path)
        except ArchiveCorrupt as error:
            result.append({"month": path.name, "rows": None, "ids": None, "bytes": None, "archived_at": None,
                           "state": f"bad manifest: {error}"})
            continue
        described.add(manifest.data_file)
        data = directory / manifest.data_file
        present = data.is_file() and data.stat().st_size == manifest.file_bytes
        result.append({"month": manifest.month, "rows": manifest.row_count,
                       "ids": f"{manifest.min_id}..{manifest.max_id}", "bytes": manifest.file_bytes,
                       "archived_at": manifest.archived_at,
                       "state": "complete" if present else "data file missing or wrong size"})
    for path in sorted(directory.glob(f"*{archive_file.DATA_SUFFIX}")):
        if path.name not in described and not path.name.startswith(archive_file.TEMP_PREFIX):
            result.append({"month": path.name, "rows": None, "ids": None, "bytes": path.stat().st_size,
                           "archived_at": None, "state": "incomplete (no manifest): not an archive"})
    return result


def verify_archives(settings: Settings) -> list[ArchiveCheck]:
    """Re-read every archive and check it against its manifest (size, SHA-256, row count, rows checksum)."""
    directory = settings.audit_archive_dir
    checks = []
    if not directory.is_dir():
        return checks
    for path in sorted(directory.glob(f"*{archive_file.MANIFEST_SUFFIX}")):
        try:
            manifest = archive_file.read_manifest(path)
        except ArchiveCorrupt as error:
            checks.append(ArchiveCheck(path.name, False, None, str(error)))
            continue
        try:
            digest = archive_file.verify_against_manifest(directory, manifest)
        except ArchiveCorrupt as error:
            checks.append(ArchiveCheck(manifest.month, False, None, str(error)))
            continue
        checks.append(ArchiveCheck(manifest.month, True, digest.row_count))
    return checks
