"""Settings are validated once, with one line naming the variable at fault."""

from __future__ import annotations

import pytest

from crmtasks.jobs import registry
from crmtasks.settings import SettingsError, load_settings, mask_url


def test_defaults_use_embedded_services(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.database_url is None and settings.embedded_database
    assert settings.redis_url is None and settings.embedded_redis
    assert settings.home == tmp_path / ".crmtasks"
    assert settings.redis_prefix == "crmtasks"
    assert settings.db_pool_size == 20
    assert settings.db_pool_timeout_s == 30.0
    assert settings.api_processes == 0
    assert dict(settings.schedules) == {spec.name: spec.cron for spec in registry.JOBS}


def test_valid_values_are_kept(tmp_path):
    settings = load_settings({
        "DATABASE_URL": "postgresql://app:s3cret@db.example:5432/crm",
        "REDIS_URL": "redis://cache:6379/2",
        "CRMTASKS_HOME": str(tmp_path / "state"),
        "CRMTASKS_REDIS_PREFIX": "crm-prod",
        "CRMTASKS_DB_POOL_SIZE": "8",
        "CRMTASKS_DB_POOL_TIMEOUT_S": "2.5",
        "CRMTASKS_API_PROCESSES": "6",
        "CRMTASKS_LOG_LEVEL": "debug",
    })
    assert settings.db_pool_timeout_s == 2.5
    assert settings.api_processes == 6
    assert settings.database_url == "postgresql://app:s3cret@db.example:5432/crm"
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.home == tmp_path / "state"
    assert settings.redis_prefix == "crm-prod"
    assert settings.db_pool_size == 8
    assert settings.log_level == "DEBUG"


def test_unix_socket_urls_are_accepted():
    settings = load_settings({"DATABASE_URL": "postgresql://postgres@/crm?host=/run/pg",
                              "REDIS_URL": "unix:///tmp/redis.sock?db=0"})
    assert settings.redis_url.startswith("unix://")


@pytest.mark.parametrize("variable, value, expected", [
    ("DATABASE_URL", "mysql://root@localhost/crm", "is not PostgreSQL"),
    ("DATABASE_URL", "localhost:5432", "is not PostgreSQL"),
    ("DATABASE_URL", "postgresql://localhost:5432", "names no database"),
    ("DATABASE_URL", "postgresql://localhost:99999999/crm", "is not a valid URL"),
    ("REDIS_URL", "http://localhost:6379", "is not Redis"),
    ("REDIS_URL", "redis://", "names no host"),
    ("CRMTASKS_REDIS_PREFIX", "has space", "must be 1-64 characters"),
    ("CRMTASKS_DB_POOL_SIZE", "many", "is not a whole number"),
    ("CRMTASKS_DB_POOL_SIZE", "0", "out of range"),
    ("CRMTASKS_DB_POOL_TIMEOUT_S", "soon", "is not a number of seconds"),
    ("CRMTASKS_DB_POOL_TIMEOUT_S", "0", "out of range"),
    ("CRMTASKS_DB_POOL_TIMEOUT_S", "nan", "out of range"),
    ("CRMTASKS_API_PROCESSES", "-1", "out of range"),
    ("CRMTASKS_LOG_LEVEL", "LOUD", "is not one of"),
])
def test_bad_values_name_the_variable(variable, value, expected):
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert expected in message
    assert "\n" not in message


def test_home_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(SettingsError, match="^CRMTASKS_HOME: .* is not a directory"):
        load_settings({"CRMTASKS_HOME": str(path)})


def test_passwords_never_appear_in_errors():
    with pytest.raises(SettingsError) as caught:
        load_settings({"DATABASE_URL": "mysql://app:hunter2@db/crm"})
    assert "hunter2" not in str(caught.value)
    assert "app:***@db" in str(caught.value)


@pytest.mark.parametrize("url, masked", [
    ("postgresql://app:hunter2@db:5432/crm", "postgresql://app:***@db:5432/crm"),
    ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
    ("postgresql://app@db/crm", "postgresql://app@db/crm"),
    (None, "(embedded)"),
])
def test_mask_url(url, masked):
    assert mask_url(url) == masked


@pytest.fixture()
def one_task(monkeypatch):
    spec = registry.JobSpec(name="tidy_up", actor_name="tests.tidy_up", cron="*/5 * * * *", queue="default",
                             job="tests.unit.test_settings:_unused", description="test", time_limit_s=60)
    monkeypatch.setattr(registry, "JOBS", (spec,))
    return spec


def test_schedule_override(one_task):
    settings = load_settings({"CRMTASKS_SCHEDULE_TIDY_UP": " 15  2 * * 1-5 "})
    assert settings.schedule("tidy_up") == "15 2 * * 1-5"


@pytest.mark.parametrize("value, expected", [
    ("every day", "is not a 5-field cron"),
    ("61 * * * *", "is not a valid cron"),
    ("* * * *", "is not a 5-field cron"),
])
def test_bad_schedule_override(one_task, value, expected):
    with pytest.raises(SettingsError, match=f"^CRMTASKS_SCHEDULE_TIDY_UP: .*{expected}"):
        load_settings({"CRMTASKS_SCHEDULE_TIDY_UP": value})


def test_schedule_override_for_unknown_task(one_task):
    with pytest.raises(SettingsError, match="^CRMTASKS_SCHEDULE_NOPE: names no task; valid: CRMTASKS_SCHEDULE_TIDY_UP"):
        load_settings({"CRMTASKS_SCHEDULE_NOPE": "* * * * *"})


def test_dashboard_credentials_come_in_pairs_and_stay_hidden():
    settings = load_settings({"CRMTASKS_DASHBOARD_USER": "ops", "CRMTASKS_DASHBOARD_PASSWORD": "correct horse"})
    assert (settings.dashboard_user, settings.dashboard_password) == ("ops", "correct horse")
    assert "correct horse" not in repr(settings)
    with pytest.raises(SettingsError, match="^CRMTASKS_DASHBOARD_PASSWORD: must be set together"):
        load_settings({"CRMTASKS_DASHBOARD_USER": "ops"})
    with pytest.raises(SettingsError, match="^CRMTASKS_DASHBOARD_USER: must be set together"):
        load_settings({"CRMTASKS_DASHBOARD_PASSWORD": "correct horse"})
    with pytest.raises(SettingsError, match="^CRMTASKS_DASHBOARD_PASSWORD: must be at least 8"):
        load_settings({"CRMTASKS_DASHBOARD_USER": "ops", "CRMTASKS_DASHBOARD_PASSWORD": "short"})
