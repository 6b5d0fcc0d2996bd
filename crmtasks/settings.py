"""Settings: read from the environment once, validated in one place.

Nothing else in crmtasks reads ``os.environ``. Every value is checked when
the settings are loaded, so that a typo fails at start with one line naming
the variable (``SettingsError``), not hours later inside a job.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit, urlunsplit

from crmtasks import registry

_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DATABASE_SCHEMES = ("postgres", "postgresql")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


class SettingsError(ValueError):
    """A setting has a bad value.

    Parameters:
      variable(str): The environment variable at fault.
      problem(str): What is wrong with it, in words a user can act on.
    """

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Settings:
    """The validated settings of one process.

    Parameters:
      database_url(str|None): libpq URL of the CRM database; None means the
        embedded PostgreSQL under ``home``.
      redis_url(str|None): URL of the Redis used as broker and cache; None
        means the embedded Redis under ``home``.
      home(Path): State directory (embedded servers, archives, locks).
      redis_prefix(str): Prefix of every Redis key crmtasks writes, and the
        Dramatiq namespace, so several deployments can share one Redis.
      schedules(tuple): ``(task name, cron)`` pairs, the registry's defaults
        overridden by ``CRMTASKS_SCHEDULE_<TASK>``; a tuple keeps Settings hashable.
      db_pool_size(int): Most PostgreSQL connections one process keeps open.
      log_level(str): Level of crmtasks' log records.
      search_timeout_ms(int): PostgreSQL statement_timeout of each search's
        statements, in milliseconds: a search that would count too many rows
        live fails instead of holding a connection and a CPU.
    """

    database_url: str | None
    redis_url: str | None
    home: Path
    redis_prefix: str
    schedules: tuple[tuple[str, str], ...]
    db_pool_size: int
    log_level: str
    search_timeout_ms: int = 5_000

    @property
    def embedded_database(self) -> bool:
        """True when no DATABASE_URL is set and the embedded server is used."""
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    def schedule(self, task_name: str) -> str:
        """The cron expression in force for ``task_name``."""
        return dict(self.schedules)[task_name]


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping; raise SettingsError on the first bad value."""
    return Settings(
        database_url=_database_url(environ.get("DATABASE_URL")),
        redis_url=_redis_url(environ.get("REDIS_URL")),
        home=_home(environ.get("CRMTASKS_HOME")),
        redis_prefix=_redis_prefix(environ.get("CRMTASKS_REDIS_PREFIX")),
        schedules=_schedules(environ),
        db_pool_size=_positive_int(environ, "CRMTASKS_DB_POOL_SIZE", default=20, most=500),
        log_level=_log_level(environ.get("CRMTASKS_LOG_LEVEL")),
        search_timeout_ms=_positive_int(environ, "CRMTASKS_SEARCH_TIMEOUT_MS", default=5_000, most=600_000),
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from os.environ on first use."""
    return load_settings(os.environ)


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


def _empty_to_none(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip()


def _database_url(value: str | None) -> str | None:
    value = _empty_to_none(value)
    if value is None:
        return None
    parts = _split_url("DATABASE_URL", value)
    if parts.scheme not in _DATABASE_SCHEMES:
        raise SettingsError(
            "DATABASE_URL",
            f"scheme {parts.scheme or '(none)'!r} is not PostgreSQL; expected postgresql://user@host:port/dbname "
            f"(got {mask_url(value)})",
        )
    if not parts.path.strip("/"):
        raise SettingsError("DATABASE_URL", f"names no database; expected postgresql://user@host:port/dbname (got {mask_url(value)})")
    return value


def _redis_url(value: str | None) -> str | None:
    value = _empty_to_none(value)
    if value is None:
        return None
    parts = _split_url("REDIS_URL", value)
    if parts.scheme not in _REDIS_SCHEMES:
        raise SettingsError(
            "REDIS_URL",
            f"scheme {parts.scheme or '(none)'!r} is not Redis; expected redis://host:port/db, rediss://... or unix:///path.sock "
            f"(got {mask_url(value)})",
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise SettingsError("REDIS_URL", f"names no host (got {mask_url(value)})")
    return value


def _split_url(variable: str, value: str):
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise SettingsError(variable, f"is not a valid URL ({exc}): {mask_url(value)}") from None
    return parts


def _home(value: str | None) -> Path:
    value = _empty_to_none(value)
    home = Path(value or ".crmtasks").expanduser().resolve()
    if home.exists() and not home.is_dir():
        raise SettingsError("CRMTASKS_HOME", f"{home} exists and is not a directory")
    return home


def _redis_prefix(value: str | None) -> str:
    value = _empty_to_none(value) or "crmtasks"
    if not _PREFIX_PATTERN.match(value):
        raise SettingsError("CRMTASKS_REDIS_PREFIX", f"{value!r} must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    return value


def _positive_int(environ: Mapping[str, str], variable: str, *, default: int, most: int) -> int:
    value = _empty_to_none(environ.get(variable))
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(variable, f"{value!r} is not a whole number") from None
    if not 1 <= number <= most:
        raise SettingsError(variable, f"{number} is out of range (1 to {most})")
    return number


def _log_level(value: str | None) -> str:
    value = (_empty_to_none(value) or "INFO").upper()
    if value not in _LOG_LEVELS:
        raise SettingsError("CRMTASKS_LOG_LEVEL", f"{value!r} is not one of {', '.join(_LOG_LEVELS)}")
    return value


def _schedules(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    schedules = {spec.name: spec.cron for spec in registry.TASKS}
    known = {name.upper(): name for name in schedules}
    for variable, value in environ.items():
        if not variable.startswith("CRMTASKS_SCHEDULE_"):
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

    fields = expression.split()
    if len(fields) != 5:
        return f"{expression!r} is not a 5-field cron expression (minute hour day-of-month month day-of-week)"
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression"
    return None


def configure_logging(settings: Settings) -> None:
    """Send crmtasks' log records to stderr at the configured level."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("crmtasks").setLevel(settings.log_level)
