"""The directory store writes an archive to disk as it goes, not in one burst at the end."""

from __future__ import annotations

from crmtasks.audit.stores import FileStore
from crmtasks.audit.stores.file import SYNC_EVERY_BYTES


def test_the_data_file_reaches_the_disk_a_mebibyte_at_a_time(tmp_path):
    store = FileStore(tmp_path)
    writer = store.writer("audit_log_p202401.copy.zst")
    block = b"x" * (SYNC_EVERY_BYTES // 4)
    for _ in range(10):  # 2.5 sync intervals
        writer.write(block)
    assert writer.synced_bytes == 2 * SYNC_EVERY_BYTES  # before commit: all but the last part interval
    writer.commit()
    assert writer.synced_bytes == 10 * len(block)
    store.publish("audit_log_p202401.copy.zst")
    assert store.get("audit_log_p202401.copy.zst") == block * 10


def test_an_aborted_file_leaves_nothing(tmp_path):
    store = FileStore(tmp_path)
    writer = store.writer("audit_log_p202401.copy.zst")
    writer.write(b"x" * (SYNC_EVERY_BYTES + 1))
    writer.abort()
    assert store.names(temporary=True) == [] and store.names() == []
