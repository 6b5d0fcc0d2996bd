"""Settings are validated once, with one line naming the variable at fault."""

from __future__ import annotations

import logging
import re

import pytest

from crmtasks.jobs import registry
from crmtasks.settings import SettingsError, configure_logging, load_settings, mask_url


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


# ------------------------------------------------------------ hardening (issue 16)

@pytest.mark.parametrize("url, masked", [
    ("postgresql://u@127.0.0.1:1/db?password=S3cr3t", "postgresql://u@127.0.0.1:1/db?password=***"),
    ("postgresql://h/db?sslmode=require&pass%77ord=S3cr3t&sslpassword=S3cr3t",
     "postgresql://h/db?sslmode=require&pass%77ord=***&sslpassword=***"),
    ("redis://127.0.0.1:1/7?password=S3cr3t", "redis://127.0.0.1:1/7?password=***"),
    ("postgresql://u:S3cr%40t@db/crm", "postgresql://u:***@db/crm"),
    ("postgresql://u:S3@cr3t@db/crm", "postgresql://u:***@db/crm"),
    ("postgresql://u:S3/cr3t@db/crm", "postgresql://u:***@db/crm"),
    ("postgresql://u:S3cr3t@127.0.0.1:notaport/db", "postgresql://u:***@127.0.0.1:notaport/db"),
    ("host=127.0.0.1 password=S3cr3t dbname=x", "host=127.0.0.1 password=*** dbname=x"),
    ("host=127.0.0.1 password = 'S3 cr\\'3t' dbname=x", "host=127.0.0.1 password = *** dbname=x"),
    ("u:S3cr3t@db/crm", "u:***@db/crm"),
])
def test_mask_url_hides_every_form_of_password_and_never_raises(url, masked):
    assert mask_url(url) == masked


@pytest.mark.parametrize("variable, value", [
    ("DATABASE_URL", "postgresql://u:S3cr3t@127.0.0.1:notaport/db"),
    ("REDIS_URL", "redis://u:S3cr3t@127.0.0.1:notaport/0"),
    ("DATABASE_URL", "postgresql://u:S3cr3t@127.0.0.1:５４３２/db"),
])
def test_a_bad_port_is_a_settings_error_with_the_password_masked(variable, value):
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}: is not a valid URL") and "S3cr3t" not in message
    assert "u:***@127.0.0.1" in message


@pytest.mark.parametrize("variable, value, expected", [
    ("DATABASE_URL", "host=127.0.0.1 password=S3cr3t dbname=x", "is a keyword string"),
    ("DATABASE_URL", "postgresql://u:S3@cr3t@127.0.0.1:1/db", "has an '@' besides the one"),
    ("DATABASE_URL", "postgresql://u:S3/cr3t@127.0.0.1/db", "has an '@' besides the one"),
    ("DATABASE_URL", "postgresql://u:S3cr%zz3t@127.0.0.1:5432/db", "libpq cannot read it"),
    ("DATABASE_URL", "postgresql://u:S3cr3t@127.0.0.1:5432/db?passwort=S3cr3t", "libpq cannot read it"),
    ("DATABASE_URL", "postgresql://u:S3cr3t@127.0.0.1:5432/db\udcff", "is not valid UTF-8"),
    ("REDIS_URL", "redis://:S3cr3t@127.0.0.1:6379/0?timeout=5", "redis-py cannot read it"),
    ("REDIS_URL", "redis://:S3cr3t@127.0.0.1:6379/٥", "is not a number written in ASCII digits"),
    ("REDIS_URL", "redis://127.0.0.1:6379/0?db=１&password=S3cr3t", "is not a number written in ASCII digits"),
])
def test_urls_the_libraries_would_read_differently_are_refused_without_the_password(variable, value, expected):
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}: ") and expected in message, message
    assert "S3cr3t" not in message and "S3" not in message.replace("***", "")


def test_a_schedule_that_never_fires_is_refused(one_task):
    for value in ("0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"):
        with pytest.raises(SettingsError, match=f"^CRMTASKS_SCHEDULE_TIDY_UP: {re.escape(repr(value))} never fires"):
            load_settings({"CRMTASKS_SCHEDULE_TIDY_UP": value})
    assert load_settings({"CRMTASKS_SCHEDULE_TIDY_UP": "0 0 29 2 *"}).schedule("tidy_up") == "0 0 29 2 *"


@pytest.mark.parametrize("variable", ["CRMTASKS_AUDIT_RETENTION_MONTHS", "DATABASE_URL", "REDIS_URL", "CRMTASKS_HOME",
                                      "CRMTASKS_LOG_LEVEL", "CRMTASKS_DASHBOARD_PASSWORD", "CRMTASKS_AUDIT_PAUSE_AT"])
@pytest.mark.parametrize("value", ["", "  "])
def test_a_variable_set_but_empty_is_refused_not_taken_as_unset(variable, value):
    with pytest.raises(SettingsError, match=f"^{variable}: is set but empty; unset it to use the default"):
        load_settings({variable: value})


def test_a_schedule_override_set_but_empty_is_refused(one_task):
    with pytest.raises(SettingsError, match="^CRMTASKS_SCHEDULE_TIDY_UP: is set but empty"):
        load_settings({"CRMTASKS_SCHEDULE_TIDY_UP": ""})


@pytest.mark.parametrize("value", ["１２", "٥", "1_2", "+12", "12.0", "1e1"])
def test_numbers_are_ascii_digits_only(value):
    with pytest.raises(SettingsError, match="^CRMTASKS_AUDIT_RETENTION_MONTHS: .* is not a whole number of months"):
        load_settings({"CRMTASKS_AUDIT_RETENTION_MONTHS": value})
    assert load_settings({"CRMTASKS_AUDIT_RETENTION_MONTHS": " 12 "}).audit_retention_months == 12


def test_settings_know_their_secrets_and_scrub_them():
    settings = load_settings({"DATABASE_URL": "postgresql://app:p%40ss@db/crm?sslpassword=key-phrase",
                              "REDIS_URL": "redis://127.0.0.1:6379/0?password=S3cr3t",
                              "CRMTASKS_DASHBOARD_USER": "ops", "CRMTASKS_DASHBOARD_PASSWORD": "correct horse"})
    assert settings.secrets >= {"p%40ss", "p@ss", "key-phrase", "S3cr3t", "correct horse"}
    text = 'invalid percent-encoded token: "p%40ss"; auth p@ss S3cr3t key-phrase correct horse'
    assert settings.scrub(text) == 'invalid percent-encoded token: "***"; auth *** *** *** ***'


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_records_are_scrubbed_of_the_settings_passwords(tmp_path, log_format):
    log_file = tmp_path / "crmtasks.log"
    settings = load_settings({"DATABASE_URL": "postgresql://app:S3cr3t@db/crm", "CRMTASKS_LOG_FILE": str(log_file),
                              "CRMTASKS_LOG_FORMAT": log_format})
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging(settings)
        logger = logging.getLogger("crmtasks.test_secrets")
        logger.warning("connecting to %s", settings.database_url)
        try:
            raise ConnectionError(f"could not use {settings.database_url}")
        except ConnectionError:
            logger.exception("the job failed")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            if handler not in handlers:
                handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    written = log_file.read_text()
    assert "connecting to postgresql://app:***@db/crm" in written and "could not use postgresql://app:***@db" in written
    assert "S3cr3t" not in written


@pytest.mark.parametrize("value", ["ınfo", "loud"])
def test_a_log_level_is_named_as_typed_and_only_in_ascii(value):
    with pytest.raises(SettingsError, match=f"^CRMTASKS_LOG_LEVEL: '{value}' is not one of DEBUG"):
        load_settings({"CRMTASKS_LOG_LEVEL": value})
