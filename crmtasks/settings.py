"""Settings: read from the environment once, validated in one place.

Nothing else in crmtasks reads ``os.environ``. Every value is checked when
the settings are loaded, so that a typo fails at start with one line naming
the variable (``SettingsError``), not hours later inside a job.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from crmtasks.jobs import registry
from crmtasks.logging_setup import install_handlers

_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DATABASE_SCHEMES = ("postgres", "postgresql")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_CRON_NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
AUDIT_RETENTION_POLICIES = ("archive", "delete")
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
      catch_up_s(int): After a scheduler outage, a job's latest missed slot runs
        once if it is at most this many seconds old (0: never catch up).
      metrics_host(str): Address of the Prometheus exporter (loopback by default).
      metrics_port(int): Its port.
      log_format(str): ``text`` or ``json``.
      log_file(Path|None): Also write crmtasks' log records to this file.
      worker_heartbeat_timeout_ms(int): Milliseconds without a heartbeat after
        which a worker counts as dead and its messages are redelivered.
      broker_maintenance_chance(int): Out of a million broker commands, how
        many also sweep dead workers' messages back to their queues (Dramatiq's
        maintenance); higher means faster redelivery after a crash.
      dashboard_user(str|None): Login of the dashboard; with dashboard_password.
      dashboard_password(str|None): Its password (never shown: repr hides it).
      audit_premake_months(int): Months after the current one whose audit_log
        partitions the maintenance job creates ahead (0..120).
      audit_retention_months(int): Whole months kept in audit_log besides the
        current one; older partitions are archived or deleted (1..1200).
      audit_retention_policy(str): ``archive`` (verified file, then drop) or ``delete`` (drop).
      archive_dir(Path|None): Where audit archives go; None = ``home/archive``.
      audit_hold(bool): Legal hold: no audit row leaves the database (no drop, no delete).
      audit_pause_at(str|None): Test-only: the maintenance step to pause at (AUDIT_PAUSE_POINTS).
      aggregates_rebuild_hours(int): Hours between full rebuilds of the report
        aggregates (a safety net: runs in between fold only the changes); 0 never.
      search_timeout_ms(int): PostgreSQL statement_timeout of each search's
        statements, in milliseconds: a search that would count too many rows
        live fails instead of holding a connection and a CPU.
      sharing_cache_ttl_s(int): Seconds a compiled visibility lives in Redis
        (memory only: the sharing epoch, not the TTL, keeps entries exact);
        longer than a day so the nightly warm-up's entries last until the next.
      sharing_local_cache_users(int): Compiled visibilities each process keeps
        in memory (one per user, least recently used evicted); 0 turns the
        memory tier off.
    """

    database_url: str | None
    redis_url: str | None
    home: Path
    redis_prefix: str
    schedules: tuple[tuple[str, str], ...]
    db_pool_size: int
    log_level: str
    catch_up_s: int = 3600
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9191
    log_format: str = "text"
    log_file: Path | None = None
    worker_heartbeat_timeout_ms: int = 60_000
    broker_maintenance_chance: int = 1000
    dashboard_user: str | None = None
    dashboard_password: str | None = dataclasses.field(default=None, repr=False)
    audit_premake_months: int = 3
    audit_retention_months: int = 12
    audit_retention_policy: str = "archive"
    archive_dir: Path | None = None
    audit_hold: bool = False
    audit_pause_at: str | None = None
    aggregates_rebuild_hours: int = 24
    search_timeout_ms: int = 5_000
    sharing_cache_ttl_s: int = 2 * 86400
    sharing_local_cache_users: int = 10_000

    @property
    def audit_archive_dir(self) -> Path:
        """The directory audit archives are written to (CRMTASKS_ARCHIVE_DIR, default CRMTASKS_HOME/archive)."""
        return self.archive_dir or self.home / "archive"

    @property
    def exporter(self) -> ExporterSettings:
        """Where this process's worker group serves Prometheus metrics, and the directory they are kept in."""
        return ExporterSettings(self.metrics_host, self.metrics_port, _metrics_dir(self.home, self.metrics_port))

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


@dataclasses.dataclass(frozen=True)
class ExporterSettings:
    """The settings of a worker group's Prometheus exporter (a part of Settings).

    The exporter runs in a process forked off the ``dramatiq`` master, which
    imports no jobs, so it cannot validate job schedules: it loads only these
    with ``load_exporter_settings``.

    Parameters:
      host(str): Address to bind (``CRMTASKS_METRICS_HOST``, loopback by default).
      port(int): TCP port (``CRMTASKS_METRICS_PORT``).
      directory(Path): prometheus_client's multiprocess directory that the
        worker processes write and the exporter reads; one per port, so two
        worker groups on one host never mix their series.
    """

    host: str
    port: int
    directory: Path


def _metrics_dir(home: Path, port: int) -> Path:
    return home / "metrics" / str(port)


def load_exporter_settings(environ: Mapping[str, str]) -> ExporterSettings:
    """The exporter's settings from an environment mapping, validated as load_settings does."""
    home = _home(environ.get("CRMTASKS_HOME"))
    port = _metrics_port(environ)
    return ExporterSettings(_metrics_host(environ), port, _metrics_dir(home, port))


def _metrics_host(environ: Mapping[str, str]) -> str:
    return _empty_to_none(environ.get("CRMTASKS_METRICS_HOST")) or "127.0.0.1"


def _metrics_port(environ: Mapping[str, str]) -> int:
    return _positive_int(environ, "CRMTASKS_METRICS_PORT", default=9191, most=65535)


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
        catch_up_s=_positive_int(environ, "CRMTASKS_SCHEDULE_CATCHUP_S", default=3600, most=7 * 86400, least=0),
        metrics_host=_metrics_host(environ),
        metrics_port=_metrics_port(environ),
        log_format=_choice(environ, "CRMTASKS_LOG_FORMAT", ("text", "json"), default="text"),
        log_file=_log_file(environ.get("CRMTASKS_LOG_FILE")),
        worker_heartbeat_timeout_ms=_positive_int(environ, "CRMTASKS_WORKER_HEARTBEAT_TIMEOUT_MS", default=60_000,
                                                  most=3_600_000, least=1000),
        broker_maintenance_chance=_positive_int(environ, "CRMTASKS_BROKER_MAINTENANCE_CHANCE", default=1000,
                                                most=1_000_000),
        **_dashboard_credentials(environ),
        audit_premake_months=_month_count(environ, "CRMTASKS_AUDIT_PREMAKE_MONTHS", default=3, least=0, most=120),
        audit_retention_months=_month_count(environ, "CRMTASKS_AUDIT_RETENTION_MONTHS", default=12, least=1, most=1200),
        audit_retention_policy=_choice(environ, "CRMTASKS_AUDIT_RETENTION_POLICY", AUDIT_RETENTION_POLICIES),
        archive_dir=_archive_dir(environ.get("CRMTASKS_ARCHIVE_DIR")),
        audit_hold=_flag(environ, "CRMTASKS_AUDIT_HOLD"),
        audit_pause_at=_pause_point(environ.get("CRMTASKS_AUDIT_PAUSE_AT")),
        aggregates_rebuild_hours=_hours(environ, "CRMTASKS_AGGREGATES_REBUILD_HOURS", default=24),
        search_timeout_ms=_positive_int(environ, "CRMTASKS_SEARCH_TIMEOUT_MS", default=5_000, most=600_000),
        sharing_cache_ttl_s=_positive_int(environ, "CRMTASKS_SHARING_CACHE_TTL_S", default=2 * 86400,
                                          most=30 * 86400, least=60),
        sharing_local_cache_users=_positive_int(environ, "CRMTASKS_SHARING_LOCAL_CACHE_USERS", default=10_000,
                                                most=1_000_000, least=0),
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from os.environ on first use."""
    return load_settings(os.environ)


def get_exporter_settings() -> ExporterSettings:
    """The Prometheus exporter's settings, read from os.environ."""
    return load_exporter_settings(os.environ)


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


def _positive_int(environ: Mapping[str, str], variable: str, *, default: int, most: int, least: int = 1,
                  unit: str = "") -> int:
    """A whole number from ``least`` to ``most`` (``unit`` words the messages: "months", "hours")."""
    value = _empty_to_none(environ.get(variable))
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(variable, f"{value!r} is not a whole number{' of ' + unit if unit else ''}") from None
    if not least <= number <= most:
        raise SettingsError(variable, f"{number}{' ' + unit if unit else ''} is out of range ({least} to {most})")
    return number


def _month_count(environ: Mapping[str, str], variable: str, *, default: int, least: int, most: int) -> int:
    return _positive_int(environ, variable, default=default, least=least, most=most, unit="months")


def _hours(environ: Mapping[str, str], variable: str, *, default: int) -> int:
    """A whole number of hours from 0 (never) to one year."""
    return _positive_int(environ, variable, default=default, least=0, most=8760, unit="hours")


def _choice(environ: Mapping[str, str], variable: str, choices: tuple[str, ...], *, default: str | None = None) -> str:
    """One of ``choices`` (case-insensitive); the default is ``default`` or the first choice."""
    value = (_empty_to_none(environ.get(variable)) or default or choices[0]).lower()
    if value not in choices:
        raise SettingsError(variable, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _log_file(value: str | None) -> Path | None:
    value = _empty_to_none(value)
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if path.is_dir():
        raise SettingsError("CRMTASKS_LOG_FILE", f"{path} is a directory")
    if not path.parent.is_dir():
        raise SettingsError("CRMTASKS_LOG_FILE", f"directory {path.parent} does not exist")
    return path


def _flag(environ: Mapping[str, str], variable: str) -> bool:
    value = (_empty_to_none(environ.get(variable)) or "0").lower()
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise SettingsError(variable, f"{value!r} is not a yes/no value (1, 0, true, false, yes, no, on, off)")


def _archive_dir(value: str | None) -> Path | None:
    value = _empty_to_none(value)
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise SettingsError("CRMTASKS_ARCHIVE_DIR", f"{path} exists and is not a directory")
    return path


def _pause_point(value: str | None) -> str | None:
    value = _empty_to_none(value)
    if value is not None and value not in AUDIT_PAUSE_POINTS:
        raise SettingsError("CRMTASKS_AUDIT_PAUSE_AT", f"{value!r} is not one of {', '.join(AUDIT_PAUSE_POINTS)}")
    return value


def _log_level(value: str | None) -> str:
    value = (_empty_to_none(value) or "INFO").upper()
    if value not in _LOG_LEVELS:
        raise SettingsError("CRMTASKS_LOG_LEVEL", f"{value!r} is not one of {', '.join(_LOG_LEVELS)}")
    return value


def _dashboard_credentials(environ: Mapping[str, str]) -> dict[str, str | None]:
    user = _empty_to_none(environ.get("CRMTASKS_DASHBOARD_USER"))
    password = environ.get("CRMTASKS_DASHBOARD_PASSWORD") or None
    if (user is None) != (password is None):
        missing = "CRMTASKS_DASHBOARD_PASSWORD" if password is None else "CRMTASKS_DASHBOARD_USER"
        raise SettingsError(missing, "must be set together with the other dashboard credential")
    if password is not None and len(password) < 8:
        raise SettingsError("CRMTASKS_DASHBOARD_PASSWORD", "must be at least 8 characters")
    return {"dashboard_user": user, "dashboard_password": password}


# Settings that share the CRMTASKS_SCHEDULE_ prefix with the per-task schedule overrides.
_SCHEDULE_SETTINGS = ("CRMTASKS_SCHEDULE_CATCHUP_S",)


def _schedules(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    schedules = {spec.name: spec.cron for spec in registry.TASKS}
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


def configure_logging(settings: Settings, *, libraries_level: str | None = None) -> None:
    """Send the process's log records to stderr (and the log file, if set) as text or JSON.

    Idempotent. The handlers replace the stderr handler Dramatiq and periodiq
    put on the root logger, so their records (a failed job's traceback) are
    formatted like ours and reach the log file too (crmtasks.logging_setup).
    ``libraries_level`` sets the level of everyone else's records (workers
    and the scheduler want Dramatiq's INFO lines, the CLI only warnings).
    """
    install_handlers(settings.log_level, settings.log_format, settings.log_file, libraries_level)
