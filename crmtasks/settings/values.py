"""Checking each environment variable's value: one function per kind of setting.

Each function takes the raw text (or the environment and the variable's
name) and returns the typed value, or raises ``SettingsError`` naming the
variable and what is wrong, in words a user can act on.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from crmtasks.errors import SettingsError
from crmtasks.jobs import registry
from crmtasks.settings.secrets import mask_url, scrub, url_secrets
from crmtasks.user_text import WHOLE_NUMBER, check_text, shown

_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DATABASE_SCHEMES = ("postgres", "postgresql")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_CRON_NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Test-only pause points of the audit maintenance job (CRMTASKS_AUDIT_PAUSE_AT):
# the job prints "paused at <step>" and waits there, so a test can kill -9 it (or let it go on:
# crmtasks.audit.pause).
AUDIT_PAUSE_POINTS = (
    "after_premake",     # the first missing month was created and committed
    "before_detach",     # the ledger says 'detaching'; DETACH ... CONCURRENTLY not sent yet
    "after_detach",      # the partition is detached; the ledger still says 'detaching'
    "part_stored",       # the first part (block, or multipart part on S3) of the archive is in the store
    "mid_write",         # half of the archive's rows are in the temporary file
    "after_data_file",   # the archive file is renamed into place; no manifest yet
    "after_manifest",    # the manifest is written; the ledger still says 'detached'
    "before_drop",       # the ledger says 'archived' (or 'detached' for delete); table not dropped
)
_TRUE_WORDS = ("1", "true", "yes", "on")
# CRMTASKS_ALERT_URLS: URLs are separated by spaces, or by commas before the next "scheme://"
# (a comma inside a URL, as in mailto's ?to=a@x,b@y, stays part of it).
_ALERT_URL_SEPARATOR = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_FALSE_WORDS = ("0", "false", "no", "off")
_REDIS_DB = re.compile(r"[0-9]+")
# Every variable crmtasks reads besides the CRMTASKS_SCHEDULE_<TASK> overrides.
VARIABLES = (
    "DATABASE_URL", "REDIS_URL", "CRMTASKS_HOME", "CRMTASKS_REDIS_PREFIX", "CRMTASKS_DB_POOL_SIZE",
    "CRMTASKS_LOG_LEVEL", "CRMTASKS_LOG_FORMAT", "CRMTASKS_LOG_FILE", "CRMTASKS_METRICS_HOST", "CRMTASKS_METRICS_PORT",
    "CRMTASKS_WORKER_HEARTBEAT_TIMEOUT_MS", "CRMTASKS_BROKER_MAINTENANCE_CHANCE", "CRMTASKS_DASHBOARD_USER",
    "CRMTASKS_DASHBOARD_PASSWORD", "CRMTASKS_AUDIT_PREMAKE_MONTHS", "CRMTASKS_AUDIT_RETENTION_MONTHS",
    "CRMTASKS_AUDIT_RETENTION_POLICY", "CRMTASKS_ARCHIVE_DIR", "CRMTASKS_ARCHIVE_URL",
    "CRMTASKS_S3_ENDPOINT_URL", "CRMTASKS_S3_PART_MB", "CRMTASKS_AUDIT_HOLD", "CRMTASKS_AUDIT_PAUSE_AT",
    "CRMTASKS_AUDIT_MAINTENANCE_NICENESS", "CRMTASKS_AUDIT_MAINTENANCE_IDLE", "CRMTASKS_ARCHIVE_DUTY_PERCENT",
    "CRMTASKS_AGGREGATES_REBUILD_HOURS", "CRMTASKS_SEARCH_TIMEOUT_MS", "CRMTASKS_SHARING_CACHE_TTL_S",
    "CRMTASKS_SHARING_LOCAL_CACHE_USERS", "CRMTASKS_SHARING_LOCAL_CACHE_RECORDS", "CRMTASKS_SHARING_CONSISTENCY",
    "CRMTASKS_ALERT_URLS", "CRMTASKS_HISTORY_DAYS", "CRMTASKS_DB_POOL_TIMEOUT_S", "CRMTASKS_API_PROCESSES",
    "CRMTASKS_SHARING_CHECKS_AT_ONCE", "CRMTASKS_SEARCHES_AT_ONCE",
)


def refuse_blank(environ: Mapping[str, str], variables: tuple[str, ...] = VARIABLES) -> None:
    """SettingsError for a variable that is set but empty (or only spaces).

    Unset means "the default"; an empty value is more often a template that
    was not filled in (``DATABASE_URL=${DATABASE_URL}``) than a wish for the
    default, so it is refused rather than silently taken as unset.
    """
    names = [*variables, *(name for name in environ if name.startswith("CRMTASKS_SCHEDULE_"))]
    for name in names:
        value = environ.get(name)
        if value is not None and not value.strip():
            raise SettingsError(name, "is set but empty; unset it to use the default, or give a value")


def empty_to_none(value: str | None) -> str | None:
    """``value`` without surrounding spaces; None when unset (refuse_blank has already refused a blank one)."""
    if value is None or not value.strip():
        return None
    return value.strip()


def database_url(value: str | None) -> str | None:
    value = empty_to_none(value)
    if value is None:
        return None
    if "://" not in value and "=" in value:
        raise SettingsError("DATABASE_URL", "is a keyword string (host=... dbname=...); write it as a URL, "
                                            f"postgresql://user:password@host:port/dbname (got {mask_url(value)})")
    parts = split_url("DATABASE_URL", value)
    if parts.scheme not in _DATABASE_SCHEMES:
        raise SettingsError(
            "DATABASE_URL",
            f"scheme {parts.scheme or '(none)'!r} is not PostgreSQL; expected postgresql://user@host:port/dbname "
            f"(got {mask_url(value)})",
        )
    if not parts.path.strip("/"):
        raise SettingsError("DATABASE_URL", f"names no database; expected postgresql://user@host:port/dbname (got {mask_url(value)})")
    # imported here: only settings validation needs libpq's own reading of the URL
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import parse_dsn

    try:
        parse_dsn(value)  # an unknown ?option or a bad %-escape, found now rather than at the first connection
    except ProgrammingError as error:
        raise SettingsError("DATABASE_URL", f"libpq cannot read it ({_cause(error, value)}): {mask_url(value)}") from None
    return value


def _cause(error: Exception, url: str) -> str:
    """The first line of a library's complaint about ``url``, with the URL's password masked (libpq echoes it)."""
    return scrub((str(error).strip().splitlines() or [type(error).__name__])[0], url_secrets(url))


def redis_url(value: str | None) -> str | None:
    value = empty_to_none(value)
    if value is None:
        return None
    parts = split_url("REDIS_URL", value)
    if parts.scheme not in _REDIS_SCHEMES:
        raise SettingsError(
            "REDIS_URL",
            f"scheme {parts.scheme or '(none)'!r} is not Redis; expected redis://host:port/db, rediss://... or unix:///path.sock "
            f"(got {mask_url(value)})",
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise SettingsError("REDIS_URL", f"names no host (got {mask_url(value)})")
    databases = [db for name, _, db in (pair.partition("=") for pair in parts.query.split("&")) if name == "db"]
    if parts.scheme != "unix" and parts.path.strip("/"):
        databases.append(parts.path.strip("/"))
    for db in databases:
        if not _REDIS_DB.fullmatch(db):
            raise SettingsError("REDIS_URL", f"database {db!r} is not a number written in ASCII digits "
                                             f"(got {mask_url(value)})")
    import redis  # imported here: only settings validation needs redis-py's own reading of the URL

    try:  # redis-py turns unknown ?options into keyword arguments that fail only when a connection is made
        redis.Redis.from_url(value).connection_pool.make_connection()
    except (TypeError, ValueError) as error:
        raise SettingsError("REDIS_URL", f"redis-py cannot read it ({_cause(error, value)}): {mask_url(value)}") from None
    return value


def split_url(variable: str, value: str):
    """The parts of a URL, or SettingsError (with the URL masked) when urllib and libpq could read it differently."""
    masked = mask_url(value)
    try:
        check_text(value)
    except ValueError:
        raise SettingsError(variable, f"is not valid UTF-8 text: {shown(masked)}") from None
    remainder = value.partition("://")[2]
    netloc_end = min((remainder.find(char) for char in "/?#" if char in remainder), default=len(remainder))
    if "@" in remainder and (remainder.count("@") > 1 or remainder.find("@") > netloc_end):
        raise SettingsError(variable, "has an '@' besides the one that ends user:password; an '@', '/', '?' or '#' "
                                      "in a user, password or value must be percent-encoded (%40, %2F, %3F, %23): "
                                      f"{masked}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise SettingsError(variable, f"is not a valid URL ({scrub(str(exc), url_secrets(value))}): {masked}") from None
    return parts


def home(value: str | None) -> Path:
    value = empty_to_none(value)
    home = Path(value or ".crmtasks").expanduser().resolve()
    if home.exists() and not home.is_dir():
        raise SettingsError("CRMTASKS_HOME", f"{home} exists and is not a directory")
    return home


def redis_prefix(value: str | None) -> str:
    value = empty_to_none(value) or "crmtasks"
    if not _PREFIX_PATTERN.match(value):
        raise SettingsError("CRMTASKS_REDIS_PREFIX", f"{value!r} must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    return value


def positive_int(environ: Mapping[str, str], variable: str, *, default: int, most: int, least: int = 1,
                  unit: str = "") -> int:
    """A whole number from ``least`` to ``most`` (``unit`` words the messages: "months", "hours")."""
    value = empty_to_none(environ.get(variable))
    if value is None:
        return default
    if not WHOLE_NUMBER.fullmatch(value):  # int() would also take "１２", "٥", "1_000" and "+5"
        hint = " (ASCII digits 0-9)" if any(char.isdigit() for char in value) else ""  # "１２", "1_000", "+5"
        raise SettingsError(variable, f"{value!r} is not a whole number{' of ' + unit if unit else ''}{hint}")
    number = int(value)
    if not least <= number <= most:
        raise SettingsError(variable, f"{number}{' ' + unit if unit else ''} is out of range ({least} to {most})")
    return number


def seconds(environ: Mapping[str, str], variable: str, *, default: float, least: float, most: float) -> float:
    """A number of seconds from ``least`` to ``most``; decimals allowed (``0.5``)."""
    value = empty_to_none(environ.get(variable))
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(variable, f"{value!r} is not a number of seconds") from None
    if not least <= number <= most:  # also refuses nan
        raise SettingsError(variable, f"{value} seconds is out of range ({least:g} to {most:g})")
    return number


def month_count(environ: Mapping[str, str], variable: str, *, default: int, least: int, most: int) -> int:
    return positive_int(environ, variable, default=default, least=least, most=most, unit="months")


def hours(environ: Mapping[str, str], variable: str, *, default: int) -> int:
    """A whole number of hours from 0 (never) to one year."""
    return positive_int(environ, variable, default=default, least=0, most=8760, unit="hours")


def choice(environ: Mapping[str, str], variable: str, choices: tuple[str, ...], *, default: str | None = None) -> str:
    """One of ``choices`` (case-insensitive); the default is ``default`` or the first choice."""
    value = (empty_to_none(environ.get(variable)) or default or choices[0]).lower()
    if value not in choices:
        raise SettingsError(variable, f"{value!r} is not one of {', '.join(choices)}")
    return value


def log_file(value: str | None) -> Path | None:
    value = empty_to_none(value)
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if path.is_dir():
        raise SettingsError("CRMTASKS_LOG_FILE", f"{path} is a directory")
    if not path.parent.is_dir():
        raise SettingsError("CRMTASKS_LOG_FILE", f"directory {path.parent} does not exist")
    return path


def flag(environ: Mapping[str, str], variable: str) -> bool:
    value = (empty_to_none(environ.get(variable)) or "0").lower()
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise SettingsError(variable, f"{value!r} is not a yes/no value (1, 0, true, false, yes, no, on, off)")


def pause_point(value: str | None) -> str | None:
    value = empty_to_none(value)
    if value is not None and value not in AUDIT_PAUSE_POINTS:
        raise SettingsError("CRMTASKS_AUDIT_PAUSE_AT", f"{value!r} is not one of {', '.join(AUDIT_PAUSE_POINTS)}")
    return value


def log_level(value: str | None) -> str:
    typed = empty_to_none(value) or "INFO"
    # ASCII only: "ınfo".upper() is "INFO" (a dotless i), which no one types meaning INFO.
    level = typed.upper() if typed.isascii() else typed
    if level not in _LOG_LEVELS:
        raise SettingsError("CRMTASKS_LOG_LEVEL", f"{typed!r} is not one of {', '.join(_LOG_LEVELS)}")
    return level


def dashboard_credentials(environ: Mapping[str, str]) -> dict[str, str | None]:
    user = empty_to_none(environ.get("CRMTASKS_DASHBOARD_USER"))
    password = environ.get("CRMTASKS_DASHBOARD_PASSWORD")
    if (user is None) != (password is None):
        missing = "CRMTASKS_DASHBOARD_PASSWORD" if password is None else "CRMTASKS_DASHBOARD_USER"
        raise SettingsError(missing, "must be set together with the other dashboard credential")
    if password is not None and len(password) < 8:
        raise SettingsError("CRMTASKS_DASHBOARD_PASSWORD", "must be at least 8 characters")
    for variable, value in (("CRMTASKS_DASHBOARD_USER", user), ("CRMTASKS_DASHBOARD_PASSWORD", password)):
        try:
            check_text(value or "")
        except ValueError:  # the login form compares UTF-8 bytes; the value itself is never shown
            raise SettingsError(variable, "is not valid UTF-8 text (or holds a NUL)") from None
    return {"dashboard_user": user, "dashboard_password": password}


def alert_urls(value: str | None) -> tuple[str, ...]:
    """The Apprise URLs of CRMTASKS_ALERT_URLS, each checked by Apprise itself; () when unset.

    An error names the URL by its position and scheme only: the rest of an
    Apprise URL may be a token (Slack, Telegram, Discord) or a password.
    """
    value = empty_to_none(value)
    if value is None:
        return ()
    urls = tuple(url for part in _ALERT_URL_SEPARATOR.split(value) if (url := part.strip(",")))
    import apprise  # imported here: only a deployment that sets alert URLs pays for it

    for position, url in enumerate(urls, start=1):
        with _apprise_quiet():  # Apprise logs a URL it cannot parse in full, secrets included
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is None:
            raise SettingsError("CRMTASKS_ALERT_URLS", f"URL {position} of {len(urls)} ({mask_alert_url(url)}) is not "
                                                       "one Apprise can send to; see https://github.com/caronc/apprise/wiki")
    return urls


@contextlib.contextmanager
def _apprise_quiet():
    apprise_logger = logging.getLogger("apprise")
    level = apprise_logger.level
    apprise_logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        apprise_logger.setLevel(level)


def mask_alert_url(url: str) -> str:
    """An Apprise URL fit for output and logs: its scheme only, since anything after it may be a secret."""
    match = _SCHEME.match(url.strip())
    return f"{match.group(1)}://***" if match else "without a scheme://"


# Settings that share the CRMTASKS_SCHEDULE_ prefix with the per-task schedule overrides.
_SCHEDULE_SETTINGS = ("CRMTASKS_SCHEDULE_CATCHUP_S",)


def schedule_overrides(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The tasks whose schedule ``CRMTASKS_SCHEDULE_<TASK>`` sets (validated by ``schedules``), in registry order."""
    return tuple(spec.name for spec in registry.JOBS if f"CRMTASKS_SCHEDULE_{spec.name.upper()}" in environ)


def schedules(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    schedules = {spec.name: spec.cron for spec in registry.JOBS}
    known = {name.upper(): name for name in schedules}
    for variable, value in environ.items():
        if not variable.startswith("CRMTASKS_SCHEDULE_") or variable in _SCHEDULE_SETTINGS:
            continue
        suffix = variable[len("CRMTASKS_SCHEDULE_"):]
        if suffix not in known:
            valid = ", ".join(f"CRMTASKS_SCHEDULE_{name}" for name in sorted(known)) or "(no tasks registered)"
            raise SettingsError(variable, f"names no task; valid: {valid}")
        problem = cron_problem(value)
        if problem:
            raise SettingsError(variable, problem)
        schedules[known[suffix]] = " ".join(value.split())
    return tuple(schedules.items())


def cron_problem(expression: str, *, now: datetime.datetime | None = None) -> str | None:
    """Return why ``expression`` is not a usable 5-field cron, or None when it is.

    A valid expression that names no real day (``0 0 31 2 *``) is refused
    too: croniter finds no next time for it, so it would never run and
    every listing of schedules would fail on it.
    """
    # imported here: only settings validation needs croniter
    from croniter import CroniterBadDateError, croniter

    if expression.strip() in _CRON_NICKNAMES:
        return None
    fields = expression.split()
    if len(fields) != 5:
        return (f"{expression!r} is not a 5-field cron expression (minute hour day-of-month month day-of-week) "
                f"or one of {', '.join(_CRON_NICKNAMES)}")
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression"
    try:
        croniter(expression, now or datetime.datetime.now(datetime.timezone.utc)).get_next(datetime.datetime)
    except CroniterBadDateError:
        return f"{expression!r} never fires: no date matches it (e.g. the 31st of a month that has 30 days)"
    return None
