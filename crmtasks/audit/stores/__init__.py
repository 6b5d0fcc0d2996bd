"""Where audit archives live: a small interface with one implementation per kind of store.

``open_store(settings)`` returns the store CRMTASKS_ARCHIVE_URL names:
``file:///dir`` (crmtasks.audit.stores.file, the default) or
``s3://bucket/prefix`` on any S3-compatible server (crmtasks.audit.stores.s3).
Archive, verify, status and restore code talk only to this interface, so no
code outside this package branches on the scheme.

Every store keeps objects under flat names (``audit_log_p202401.copy.zst``,
``audit_log_p202401.manifest.json``). Its contract:

- ``writer(name, on_part)`` streams an object to the *temporary* name of
  ``name`` (``.tmp-`` + name), never holding it whole in memory; its
  ``commit()`` makes the bytes durable there, ``abort()`` discards them.
  A writer first discards what a killed run left under that temporary name.
- ``publish(name)`` moves the temporary object to ``name`` (replacing it).
- ``put(name, data)`` writes a small object (a manifest) atomically:
  readers see the old bytes or the new, never a part.
- ``read_blocks(name)`` streams an object back in blocks (ObjectMissing when
  it is not there); ``get(name)`` reads a small one whole.
- ``size(name)`` (None when missing), ``names(suffixes)``, ``delete(name)``.

Failures to reach or use the store raise StoreError with one line naming
the store and the operation; no credential is ever part of it.
"""

from __future__ import annotations

from crmtasks.audit.stores.base import (
    TEMP_PREFIX,
    ArchiveStore,
    ObjectMissing,
    StoreError,
    temporary_name,
)
from crmtasks.audit.stores.file import FileStore
from crmtasks.settings import Settings


def open_store(settings: Settings) -> ArchiveStore:
    """The archive store of these settings (CRMTASKS_ARCHIVE_URL, or its alias CRMTASKS_ARCHIVE_DIR)."""
    if settings.archive_bucket is not None:
        # imported here: boto3 costs every worker process ~12 MB and its import time; only S3 users pay it
        from crmtasks.audit.stores.s3 import S3Store

        return S3Store(settings.archive_bucket, settings.archive_prefix, endpoint_url=settings.s3_endpoint_url,
                       part_size=settings.s3_part_mb << 20)
    return FileStore(settings.audit_archive_dir)


__all__ = ["TEMP_PREFIX", "ArchiveStore", "FileStore", "ObjectMissing", "StoreError", "open_store", "temporary_name"]
