"""Audit archives in object storage: a real S3-compatible server (moto's, on 127.0.0.1), a failed upload, old gzip
archives, and the operator's commands reading from the store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import zstandard
from psycopg2 import sql

from crmtasks.audit import archive_file, codecs
from crmtasks.audit.maintenance import run_maintenance
from crmtasks.audit.months import Month
from crmtasks.audit.restore import restore_month
from crmtasks.audit.status import verify_archives
from crmtasks.audit.stores import open_store
from tests.integration.audit_support import (
    archived_ids,
    audit_settings,
    fill_month,
    old_months,
    table_ids,
    table_rows,
)
from tests.integration.s3_support import MotoServer, bucket_of, unfinished_uploads

pytestmark = pytest.mark.slow
GZIP_FIXTURE = Path(__file__).resolve().parents[1] / "data" / "audit_gzip_v1"
GZIP_MONTH = Month.parse("2020-01")

# Rows whose COPY text compresses poorly (random hex), so a month is several 5 MiB parts of a multipart upload.
FILL_INCOMPRESSIBLE = """
INSERT INTO audit_log (occurred_at, action, entity, entity_id, changes)
SELECT %(start)s::timestamptz + (%(end)s::timestamptz - %(start)s::timestamptz) * (g - 0.5) / %(rows)s,
       'update', 'lead', g,
       jsonb_build_object('a', md5(random()::text) || md5(random()::text) || md5(random()::text) ||
                               md5(random()::text) || md5(random()::text) || md5(random()::text) ||
                               md5(random()::text) || md5(random()::text))
FROM generate_series(1, %(rows)s) AS g
"""


@pytest.fixture()
def jobs():
    """Job processes a test starts; any still alive at the end (a failed assertion while paused) is killed,
    so it cannot keep the maintenance lock from the next test."""
    started: list[subprocess.Popen] = []
    yield started
    for job in started:
        if job.poll() is None:
            job.kill()
            job.wait(timeout=10)


def _fill_incompressible(conn, month, rows):
    fill_month(conn, month, 0)
    with conn.cursor() as cur:
        cur.execute(FILL_INCOMPRESSIBLE, {"start": month.start, "end": month.end, "rows": rows})
    conn.commit()


def _crmtasks(environ, *args, stdin=None):
    return subprocess.Popen([sys.executable, "-m", "crmtasks", *args], env=dict(os.environ, **environ),
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(environ, *args):
    child = _crmtasks(environ, *args)
    out, err = child.communicate(timeout=180)
    return child.returncode, out, err


def _ledger_state(conn, month):
    with conn.cursor() as cur:
        cur.execute("SELECT state FROM audit_retention_ledger WHERE month = %s", (month.first_day,))
        found = cur.fetchone()
    conn.commit()
    return found and found[0]


def test_server_stopped_mid_upload_drops_nothing_and_the_next_run_completes(audit_conn, tmp_path, monkeypatch,
                                                                            jobs):
    server = MotoServer().start()
    bucket = f"crmtasks-{uuid.uuid4().hex[:16]}"
    try:
        server.client().create_bucket(Bucket=bucket)
        environ = {**server.environ(bucket), "CRMTASKS_S3_PART_MB": "5"}
        month = old_months(1)[0]
        _fill_incompressible(audit_conn, month, 60_000)
        expected = sorted(table_ids(audit_conn))
        job = _crmtasks({**environ, "CRMTASKS_AUDIT_PAUSE_AT": "part_stored"}, "run", "--task", "audit_maintenance",
                        "--json", stdin=subprocess.PIPE)
        jobs.append(job)
        assert job.stdout.readline().strip() == "paused at part_stored"
        [upload] = unfinished_uploads(server, bucket)  # mid-upload: one part in, the object not yet complete
        assert len(server.client().list_parts(Bucket=bucket, Key=upload["Key"],
                                              UploadId=upload["UploadId"])["Parts"]) == 1
        server.stop()
        out, err = job.communicate("continue\n", timeout=180)
        assert job.returncode == 1, out + err
        [outcome] = json.loads(out)
        assert outcome["status"] == "failed"
        assert outcome["error"].count("\n") == 0 and f"archive store s3://{bucket}/audit" in outcome["error"]
        assert "upload of audit/.tmp-" in outcome["error"] and "Traceback" not in err
        assert environ["AWS_SECRET_ACCESS_KEY"] not in out + err

        # Nothing was dropped: the month's table is detached, whole, and the ledger says so.
        assert _ledger_state(audit_conn, month) == "detached"
        assert sorted(table_ids(audit_conn, month.partition_name)) == expected

        server.start()  # the same endpoint, an empty store (moto keeps nothing across a restart)
        server.client().create_bucket(Bucket=bucket)
        settings = audit_settings(tmp_path, **environ)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)  # boto3 in this process finds the credentials as the job did
        stats = run_maintenance(audit_conn, settings)
        assert (stats["archived"], stats["dropped"], stats["rows"]) == (1, 1, len(expected)), stats
        # What audit_log still holds is the operator trail of the `crmtasks run` above, in the current month.
        assert table_rows(audit_conn, "audit_log", sql.SQL("entity <> 'crmtasks.operations'")) == []
        assert sorted(archived_ids(settings)) == expected
        [check] = verify_archives(audit_conn, settings)
        assert check.ok and check.rows == len(expected)
        manifest = archive_file.read_manifest(open_store(settings), f"{month.partition_name}.manifest.json")
        assert manifest.file_bytes > 5 << 20 and manifest.compression == codecs.ZSTD.label
        assert unfinished_uploads(server, bucket) == [] and open_store(settings).names(temporary=True) == []
    finally:
        server.stop()


def test_a_job_killed_mid_upload_leaves_no_unfinished_upload_after_the_next_run(audit_conn, tmp_path, s3_archive,
                                                                                moto_server, monkeypatch, jobs):
    environ = {**s3_archive, "CRMTASKS_S3_PART_MB": "5"}
    monkeypatch.setenv("CRMTASKS_S3_PART_MB", "5")
    month = old_months(1)[0]
    _fill_incompressible(audit_conn, month, 60_000)
    expected = sorted(table_ids(audit_conn))
    # The job itself, not `crmtasks run`: a killed run would hold the job's Redis mutex for its TTL.
    job = subprocess.Popen([sys.executable, "-c", "from crmtasks.jobs.audit_maintenance import run; run()"],
                           env=dict(os.environ, **environ, CRMTASKS_AUDIT_PAUSE_AT="part_stored"),
                           stdout=subprocess.PIPE, text=True)
    jobs.append(job)
    assert job.stdout.readline().strip() == "paused at part_stored"
    job.kill()
    job.wait(timeout=10)
    bucket = bucket_of(environ)
    assert len(unfinished_uploads(moto_server, bucket)) == 1  # the killed job's part stays in the store
    settings = audit_settings(tmp_path, **environ)
    stats = run_maintenance(audit_conn, settings)
    assert (stats["archived"], stats["dropped"], stats["rows"]) == (1, 1, len(expected)), stats
    assert sorted(archived_ids(settings)) == expected
    assert unfinished_uploads(moto_server, bucket) == [], "the killed run's multipart upload was not aborted"


def test_verify_status_and_restore_read_from_the_bucket(audit_conn, tmp_path, s3_archive, moto_server):
    settings = audit_settings(tmp_path, **s3_archive)
    months = old_months(2)
    for month in months:
        fill_month(audit_conn, month, 300)
    originals = {month: table_rows(audit_conn, month.partition_name) for month in months}
    run_maintenance(audit_conn, settings)
    assert table_ids(audit_conn) == []
    assert not (tmp_path / "archive").exists() and not (tmp_path / "home" / "archive").exists()

    code, out, err = _run(s3_archive, "audit", "status", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["archive_url"] == s3_archive["CRMTASKS_ARCHIVE_URL"]
    assert [a["state"] for a in report["archives"]] == ["complete", "complete"]
    code, out, err = _run(s3_archive, "audit", "verify")
    assert code == 0 and s3_archive["CRMTASKS_ARCHIVE_URL"] in out, out + err

    # One changed row in a valid zstd object: only the checksums can tell, and only by reading the bucket.
    client, bucket = moto_server.client(), bucket_of(s3_archive)
    key = f"audit/{months[0].partition_name}.copy.zst"
    text = zstandard.ZstdDecompressor().decompressobj().decompress(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    client.put_object(Bucket=bucket, Key=key, Body=zstandard.ZstdCompressor().compress(text.replace(b"\tview\t", b"\tVIEW\t", 1)))
    code, out, err = _run(s3_archive, "audit", "verify", "--json")
    results = {check["month"]: check for check in json.loads(out)}
    assert code == 1 and not results[str(months[0])]["ok"] and results[str(months[1])]["ok"]
    code, out, err = _run(s3_archive, "audit", "restore", str(months[0]))
    assert code == 2 and "fails verification" in err and err.count("\n") == 1

    code, out, err = _run(s3_archive, "audit", "restore", str(months[1]))
    assert code == 0, err
    assert table_rows(audit_conn, "audit_log") == originals[months[1]]

    # `crmtasks check` looks in the bucket too: the replaced object no longer has its manifest's size.
    code, out, err = _run(s3_archive, "check", "--json")
    problems = [f["message"] for f in json.loads(out) if f["area"] == "audit" and not f["ok"]]
    assert len(problems) == 1 and str(months[0]) in problems[0] and "wrong size" in problems[0], problems


@pytest.mark.parametrize("target", ["file", "s3"])
def test_a_gzip_archive_written_before_zstd_still_verifies_and_restores(audit_conn, tmp_path, target, request):
    """The fixture was written by the gzip archive code this change replaced (manifest ``gzip-1``, ``.copy.gz``)."""
    if target == "file":
        settings = audit_settings(tmp_path)
        settings.audit_archive_dir.mkdir(parents=True)
        for path in GZIP_FIXTURE.iterdir():
            shutil.copy(path, settings.audit_archive_dir / path.name)
    else:
        environ = request.getfixturevalue("s3_archive")
        settings = audit_settings(tmp_path, **environ)
        client = request.getfixturevalue("moto_server").client()
        for path in GZIP_FIXTURE.iterdir():
            client.put_object(Bucket=bucket_of(environ), Key=f"audit/{path.name}", Body=path.read_bytes())
    [check] = verify_archives(audit_conn, settings)
    assert (check.month, check.ok, check.rows) == ("2020-01", True, 300), check
    result = restore_month(audit_conn, settings, GZIP_MONTH)
    assert (result.rows, result.min_id, result.max_id) == (300, 1, 300)
    with audit_conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*), count(DISTINCT id) FROM {}").format(
            sql.Identifier(GZIP_MONTH.partition_name)))
        assert cur.fetchone() == (300, 300)
    audit_conn.commit()

    # Its gzip data damaged, the next run archives the month again, in zstd, and leaves no orphan .copy.gz behind.
    store = open_store(settings)
    data = b"".join(store.read_blocks("audit_log_p202001.copy.gz"))
    store.put("audit_log_p202001.copy.gz", data[:-100])
    stats = run_maintenance(audit_conn, settings)
    assert (stats["archived"], stats["dropped"], stats["rows"]) == (1, 1, 300), stats
    assert store.names(codecs.DATA_SUFFIXES) == ["audit_log_p202001.copy.zst"]
    [check] = verify_archives(audit_conn, settings)
    assert (check.month, check.ok, check.rows) == ("2020-01", True, 300), check


def test_a_bad_archive_url_is_one_line_and_touches_nothing(audit_conn):
    for url, words in [("ftp://host/dir", "scheme 'ftp' is not supported"),
                       ("s3://Bad_Bucket/x", "is not an S3 bucket name"),
                       ("s3://key:hunter2@bucket/x", "carries credentials")]:
        code, out, err = _run({"CRMTASKS_ARCHIVE_URL": url}, "audit", "status")
        assert code == 2 and err.count("\n") == 1 and words in err and "CRMTASKS_ARCHIVE_URL" in err, err
        assert "hunter2" not in err


def test_an_unreachable_store_is_one_line(audit_conn, tmp_path):
    environ = {**MotoServer().environ("crmtasks-nowhere"), "AWS_MAX_ATTEMPTS": "1"}
    for command in (["audit", "verify"], ["audit", "status"], ["audit", "restore", "2020-01"]):
        code, out, err = _run(environ, *command)
        assert code == 2 and err.count("\n") == 1 and "archive store s3://crmtasks-nowhere/audit" in err, err
