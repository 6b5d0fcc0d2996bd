"""Checking each environment variable's value: one function per kind of setting.

Each function takes the raw text (or the environment and the variable's
name) and returns the typed value, or raises ``SettingsError`` naming the
variable and what is wrong, in words a user can act on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from crmtasks.errors import SettingsError
from crmtasks.jobs import registry

_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DATABASE_SCHEMES = ("postgres", "postgresql")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_CRON_NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Test-only pause points of the audit maintenance job (CRMTASKS_AUDIT_PAUSE_AT):
# the job prints "paused at <step>" and sleeps there, so a test can kill -9 it.
AUDIT_PAUSE_POINTS = (
    "after_premake",     # the first missing month was created and committed
    "before_detach",     # the ledger says 'detaching'; DETACH ... CONCURRENTLY not sent yet
    "after_detach",      # the partition is detached; the ledger still says 'detaching'
    "mid_write",         # half of the archive's rows are in the temporary file
    "after_data_file",   # the archive file is renamed into place; no manifest yet
    "after_manifest",    # the manifest is written; the ledger still says 'detached'
    "before_drop",       # the ledger says 'archived' (or 'detached' for delete); table not dropped
)
_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")



def empty_to_none(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip()


def database_url(value: str | None) -> str | None:
    value = empty_to_none(value)
    if value is None:
        return None
    parts = split_url("DATABASE_URL", value)
    if parts.scheme not in _DATABASE_SCHEMES:
        raise SettingsError(
            "DATABASE_URL",
            f"scheme {parts.scheme or '(none)'!r} is not PostgreSQL; expected postgresql://user@host:port/dbname "
            f"(got {mask_url(value)})",
        )
    if not parts.path.strip("/"):
        raise SettingsError("DATABASE_URL", f"names no database; expected postgresql://user@host:port/dbname (got {mask_url(value)})")
    return value


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
    return value


def split_url(variable: str, value: str):
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise SettingsError(variable, f"is not a valid URL ({exc}): {mask_url(value)}") from None
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
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(variable, f"{value!r} is not a whole number{' of ' + unit if unit else ''}") from None
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


def archive_dir(value: str | None) -> Path | None:
    value = empty_to_none(value)
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise SettingsError("CRMTASKS_ARCHIVE_DIR", f"{path} exists and is not a directory")
    return path


def pause_point(value: str | None) -> str | None:
    value = empty_to_none(value)
    if value is not None and value not in AUDIT_PAUSE_POINTS:
        raise SettingsError("CRMTASKS_AUDIT_PAUSE_AT", f"{value!r} is not one of {', '.join(AUDIT_PAUSE_POINTS)}")
    return value


def log_level(value: str | None) -> str:
    value = (empty_to_none(value) or "INFO").upper()
    if value not in _LOG_LEVELS:
        raise SettingsError("CRMTASKS_LOG_LEVEL", f"{value!r} is not one of {', '.join(_LOG_LEVELS)}")
    return value


def dashboard_credentials(environ: Mapping[str, str]) -> dict[str, str | None]:
    user = empty_to_none(environ.get("CRMTASKS_DASHBOARD_USER"))
    password = environ.get("CRMTASKS_DASHBOARD_PASSWORD") or None
    if (user is None) != (password is None):
        missing = "CRMTASKS_DASHBOARD_PASSWORD" if password is None else "CRMTASKS_DASHBOARD_USER"
        raise SettingsError(missing, "must be set together with the other dashboard credential")
    if password is not None and len(password) < 8:
        raise SettingsError("CRMTASKS_DASHBOARD_PASSWORD", "must be at least 8 characters")
    return {"dashboard_user": user, "dashboard_password": password}


# Settings that share the CRMTASKS_SCHEDULE_ prefix with the per-task schedule overrides.
_SCHEDULE_SETTINGS = ("CRMTASKS_SCHEDULE_CATCHUP_S",)


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


def cron_problem(expression: str) -> str | None:
    """Return why ``expression`` is not a usable 5-field cron, or None when it is."""
    from croniter import croniter  # imported here: only settings validation needs it

    if expression.strip() in _CRON_NICKNAMES:
        return None
    fields = expression.split()
    if len(fields) != 5:
        return (f"{expression!r} is not a 5-field cron expression (minute hour day-of-month month day-of-week) "
                f"or one of {', '.join(_CRON_NICKNAMES)}")
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression"
    return None


def mask_url(url: str | None) -> str:
    """Return ``url`` with any password replaced by ``***``, fit for output and logs."""
    if not url:
        return "(embedded)"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:***"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))
