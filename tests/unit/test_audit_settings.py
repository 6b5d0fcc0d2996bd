"""Audit settings are validated; months and retention decisions are computed, not read from names."""

from __future__ import annotations

import datetime

import pytest

from crmtasks.audit.months import Month
from crmtasks.audit.partitions import Partition
from crmtasks.audit.retention import past_retention, retention_cutoff
from crmtasks.settings import AUDIT_PAUSE_POINTS, SettingsError, load_settings

UTC = datetime.timezone.utc


def test_audit_defaults(tmp_path):
    settings = load_settings({"CRMTASKS_HOME": str(tmp_path)})
    assert settings.audit_premake_months == 3
    assert settings.audit_retention_months == 12
    assert settings.audit_retention_policy == "archive"
    assert settings.audit_archive_dir == tmp_path / "archive"
    assert settings.audit_hold is False
    assert settings.audit_pause_at is None
    assert settings.audit_maintenance_niceness == 10
    assert settings.audit_maintenance_idle is False
    assert settings.archive_duty_percent == 70


def test_audit_values_are_kept(tmp_path):
    settings = load_settings({
        "CRMTASKS_AUDIT_PREMAKE_MONTHS": "0", "CRMTASKS_AUDIT_RETENTION_MONTHS": "24",
        "CRMTASKS_AUDIT_RETENTION_POLICY": "Delete", "CRMTASKS_ARCHIVE_DIR": str(tmp_path / "arch"),
        "CRMTASKS_AUDIT_HOLD": "yes", "CRMTASKS_AUDIT_PAUSE_AT": "before_drop",
        "CRMTASKS_AUDIT_MAINTENANCE_NICENESS": "0", "CRMTASKS_ARCHIVE_DUTY_PERCENT": "60",
        "CRMTASKS_AUDIT_MAINTENANCE_IDLE": "on",
    })
    assert (settings.audit_maintenance_niceness, settings.archive_duty_percent) == (0, 60)
    assert settings.audit_maintenance_idle is True
    assert (settings.audit_premake_months, settings.audit_retention_months) == (0, 24)
    assert settings.audit_retention_policy == "delete"
    assert settings.audit_archive_dir == tmp_path / "arch"
    assert settings.audit_hold is True
    assert settings.audit_pause_at == "before_drop"


@pytest.mark.parametrize("variable, value, expected", [
    ("CRMTASKS_AUDIT_RETENTION_MONTHS", "0", "out of range (1 to 1200)"),
    ("CRMTASKS_AUDIT_RETENTION_MONTHS", "-3", "out of range"),
    ("CRMTASKS_AUDIT_RETENTION_MONTHS", "1y", "is not a whole number of months"),
    ("CRMTASKS_AUDIT_PREMAKE_MONTHS", "121", "out of range (0 to 120)"),
    ("CRMTASKS_AUDIT_RETENTION_POLICY", "shred", "is not one of archive, delete"),
    ("CRMTASKS_AUDIT_HOLD", "maybe", "is not a yes/no value"),
    ("CRMTASKS_AUDIT_PAUSE_AT", "somewhere", "is not one of"),
    ("CRMTASKS_AUDIT_MAINTENANCE_NICENESS", "20", "out of range (0 to 19)"),
    ("CRMTASKS_AUDIT_MAINTENANCE_NICENESS", "-5", "out of range (0 to 19)"),
    ("CRMTASKS_AUDIT_MAINTENANCE_NICENESS", "low", "is not a whole number"),
    ("CRMTASKS_AUDIT_MAINTENANCE_IDLE", "lowest", "is not a yes/no value"),
    ("CRMTASKS_ARCHIVE_DUTY_PERCENT", "5", "5 percent is out of range (10 to 100)"),
    ("CRMTASKS_ARCHIVE_DUTY_PERCENT", "101", "out of range (10 to 100)"),
    ("CRMTASKS_ARCHIVE_DUTY_PERCENT", "50%", "is not a whole number of percent"),
    ("CRMTASKS_ARCHIVE_DUTY_PERCENT", " ", "is set but empty"),
])
def test_bad_audit_values_name_the_variable(variable, value, expected):
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value})
    assert str(caught.value).startswith(f"{variable}: ")
    assert expected in str(caught.value)


def test_archive_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(SettingsError, match="^CRMTASKS_ARCHIVE_DIR: "):
        load_settings({"CRMTASKS_ARCHIVE_DIR": str(path)})


def test_pause_points_are_named():
    assert "before_drop" in AUDIT_PAUSE_POINTS and len(set(AUDIT_PAUSE_POINTS)) == len(AUDIT_PAUSE_POINTS)


@pytest.mark.parametrize("text, expected", [("2024-01", Month(2024, 1)), (" 1999-12 ", Month(1999, 12))])
def test_month_parse(text, expected):
    assert Month.parse(text) == expected


@pytest.mark.parametrize("text", ["2024-1", "2024-13", "2024-00", "24-01", "2024-01; DROP TABLE x", ""])
def test_month_parse_refuses(text):
    with pytest.raises(ValueError):
        Month.parse(text)


def test_month_arithmetic_and_names():
    month = Month(2024, 11)
    assert month.plus(2) == Month(2025, 1) and month.plus(-11) == Month(2023, 12)
    assert month.start == datetime.datetime(2024, 11, 1, tzinfo=UTC)
    assert month.end == datetime.datetime(2024, 12, 1, tzinfo=UTC)
    assert month.partition_name == "audit_log_p202411"
    later_zone = datetime.timezone(datetime.timedelta(hours=5))
    assert Month.of(datetime.datetime(2024, 12, 1, 3, 0, tzinfo=later_zone)) == Month(2024, 11)  # 22:00 UTC
    assert Month.from_start(datetime.datetime(2024, 11, 1, tzinfo=UTC)) == month
    assert Month.from_start(datetime.datetime(2024, 11, 2, tzinfo=UTC)) is None


def _partition(name, start, end, **kwargs):
    return Partition(name, start.start if start else None, end.start if end else None,
                     kwargs.get("is_default", False), kwargs.get("detach_pending", False), 0)


def test_retention_decides_from_bounds_not_names():
    current = Month(2025, 6)
    cutoff = retention_cutoff(current, 12)
    assert cutoff == Month(2024, 6).start
    partitions = [
        _partition("audit_log_p209901", Month(2024, 1), Month(2024, 2)),    # misnamed, really January 2024: expired
        _partition("audit_log_p202001", Month(2024, 6), Month(2024, 7)),    # misnamed, really June 2024: kept
        _partition("audit_log_p202405", Month(2024, 5), Month(2024, 6)),    # expired
        _partition("spans", Month(2024, 5), Month(2024, 7)),                # reaches into the window: kept
        _partition("open_start", None, Month(2023, 1)),                     # MINVALUE..2023: expired
        _partition("audit_log_default", None, None, is_default=True),
        _partition("audit_log_p202301", Month(2023, 1), Month(2023, 2), detach_pending=True),  # resumed elsewhere
    ]
    expired = [p.name for p in past_retention(partitions, cutoff)]
    assert expired == ["audit_log_p209901", "audit_log_p202405", "open_start"]
    assert [p.month for p in past_retention(partitions, cutoff)] == [Month(2024, 1), Month(2024, 5), None]


def test_audit_job_is_registered():
    from crmtasks.jobs import audit_maintenance, registry

    spec = registry.get("system_config.audit_maintenance")
    assert (spec.name, spec.cron, spec.queue) == ("audit_maintenance", "0 2 * * *", "workflow_io")
    assert (spec.max_retries, spec.min_backoff_ms, spec.max_backoff_ms) == (3, 5_000, 60_000)
    assert spec.time_limit_s == 3600
    assert spec.load() is audit_maintenance.run


def test_archive_url_names_a_directory_or_a_bucket_and_the_dir_variable_stays_an_alias(tmp_path):
    by_url = load_settings({"CRMTASKS_HOME": str(tmp_path), "CRMTASKS_ARCHIVE_URL": (tmp_path / "a b").as_uri()})
    assert by_url.audit_archive_dir == tmp_path / "a b" and by_url.archive_bucket is None
    by_alias = load_settings({"CRMTASKS_HOME": str(tmp_path), "CRMTASKS_ARCHIVE_DIR": str(tmp_path / "a b")})
    assert by_alias.audit_archive_dir == by_url.audit_archive_dir and by_alias.archive_url == by_url.archive_url
    assert load_settings({"CRMTASKS_HOME": str(tmp_path)}).archive_url == (tmp_path / "archive").as_uri()
    s3 = load_settings({"CRMTASKS_ARCHIVE_URL": "s3://crm-archive.eu/audit/prod/",
                        "CRMTASKS_S3_ENDPOINT_URL": "http://127.0.0.1:9000", "CRMTASKS_S3_PART_MB": "16"})
    assert (s3.archive_bucket, s3.archive_prefix, s3.s3_endpoint_url, s3.s3_part_mb) == (
        "crm-archive.eu", "audit/prod", "http://127.0.0.1:9000", 16)
    assert s3.archive_url == "s3://crm-archive.eu/audit/prod"
    assert load_settings({"CRMTASKS_ARCHIVE_URL": "s3://crm-archive"}).archive_prefix == ""


@pytest.mark.parametrize("environ, words", [
    ({"CRMTASKS_ARCHIVE_URL": "ftp://host/dir"}, "CRMTASKS_ARCHIVE_URL: scheme 'ftp' is not supported"),
    ({"CRMTASKS_ARCHIVE_URL": "/var/archive"}, "is not a URL; expected file:///absolute/dir or s3://bucket/prefix"),
    ({"CRMTASKS_ARCHIVE_URL": "file://otherhost/dir"}, "absolute path on this host"),
    ({"CRMTASKS_ARCHIVE_URL": "file:relative"}, "is not a URL"),
    ({"CRMTASKS_ARCHIVE_URL": "s3://UPPER/x"}, "'UPPER' is not an S3 bucket name"),
    ({"CRMTASKS_ARCHIVE_URL": "s3:///prefix"}, "'(none)' is not an S3 bucket name"),
    ({"CRMTASKS_ARCHIVE_URL": "s3://bucket/a//b"}, "empty segment"),
    ({"CRMTASKS_ARCHIVE_URL": "s3://bucket/x?region=eu"}, "takes no ?query"),
    ({"CRMTASKS_ARCHIVE_URL": "s3://AKIAXXXX:s3cr3t@bucket/x"}, "carries credentials"),
    ({"CRMTASKS_ARCHIVE_URL": "s3://bucket/x", "CRMTASKS_ARCHIVE_DIR": "/tmp/a"}, "set only one of them"),
    ({"CRMTASKS_S3_ENDPOINT_URL": "minio:9000"}, "expected http(s)://host:port"),
    ({"CRMTASKS_S3_ENDPOINT_URL": "http://user:s3cr3t@minio:9000"}, "carries credentials"),
    ({"CRMTASKS_S3_ENDPOINT_URL": "http://minio:port"}, "port is not a number"),
    ({"CRMTASKS_S3_PART_MB": "4"}, "out of range (5 to 5120)"),
])
def test_a_bad_archive_target_is_one_line_naming_the_variable_without_secrets(environ, words):
    with pytest.raises(SettingsError) as refused:
        load_settings(environ)
    message = str(refused.value)
    assert words in message and "\n" not in message and "s3cr3t" not in message
