"""Settings: read from the environment once, validated in one place.

Nothing else in crmtasks reads ``os.environ``; ``crmtasks.settings.values``
checks each variable. Every value is checked when
the settings are loaded, so that a typo fails at start with one line naming
the variable (``SettingsError``), not hours later inside a job.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from pathlib import Path

from crmtasks.errors import SettingsError
from crmtasks.logging_setup import install_handlers
from crmtasks.settings import archive, values
from crmtasks.settings.secrets import mask_url, scrub, url_secrets
from crmtasks.settings.values import AUDIT_PAUSE_POINTS, cron_problem, mask_alert_url

AUDIT_RETENTION_POLICIES = ("archive", "delete")
# How sharing checks stay current: the first is the default (crmtasks.sharing.checker).
SHARING_CONSISTENCIES = ("exact", "notify")


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
        A schedule stored at runtime (``crmtasks schedule set``) replaces the
        default but never an override (crmtasks.scheduler.runtime).
      schedule_overrides(tuple[str]): The tasks whose schedule ``CRMTASKS_SCHEDULE_<TASK>`` sets in this
        process's environment (in UTC); they win over a stored schedule.
      db_pool_size(int): Most PostgreSQL connections one process keeps open.
      db_pool_timeout_s(float): Seconds a caller waits for a free pooled
        connection (callers wait in turn) before crmtasks.pg.pool.PoolExhausted.
      sharing_checks_at_once(int): Most sharing checks one process runs at
        once on pooled connections (the others wait in turn); 0: 1 per CPU core, at least 2.
      searches_at_once(int): Most searches one process runs at once on pooled
        connections (the others wait in turn, crmtasks.pg.admission); 0: 2 per CPU core.
      api_processes(int): Processes of the application that call crmtasks'
        library API (web server processes): ``crmtasks check`` counts each at
        ``db_pool_size`` connections, as it cannot see them.
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
      archive_dir(Path|None): The directory audit archives go to (``file://`` URL or
        CRMTASKS_ARCHIVE_DIR); None with no bucket = ``home/archive``.
      archive_bucket(str|None): S3 bucket of ``CRMTASKS_ARCHIVE_URL=s3://bucket/prefix``; None: a directory.
      archive_prefix(str): Key prefix in that bucket ("" for its root).
      s3_endpoint_url(str|None): The S3-compatible server (None: AWS's own endpoints).
      s3_part_mb(int): MiB per part of a multipart upload to S3 (5..5120).
      audit_hold(bool): Legal hold: no audit row leaves the database (no drop, no delete).
      audit_pause_at(str|None): Test-only: the maintenance step to pause at (AUDIT_PAUSE_POINTS).
      audit_maintenance_niceness(int): CPU niceness (0 normal .. 19 lowest) of the audit
        maintenance's own work: its thread (and the archive's threads) and, where the
        PostgreSQL server runs on this host and allows it, its server process, so the
        application's writers get a core first (crmtasks.audit.priority).
      audit_maintenance_idle(bool): Also put those threads and that process in Linux's
        SCHED_IDLE class, so a writer waking up takes the core at once instead of after
        the pass's time slice (crmtasks.audit.priority).
      archive_duty_percent(int): Share of the time (10..100) the archive's COPY may run; it
        rests the remainder, in slices of a tenth of a second, leaving the cores to writers
        (70: the archive had ~1.8x of throughput over its target, the writers' p99 none).
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
      alert_urls(tuple[str]): Apprise URLs alerts are sent to (CRMTASKS_ALERT_URLS);
        () sends none. They may carry tokens: repr hides them, mask_alert_url shows them.
      history_days(int): Days of run history (task_runs, schedule_slots) and of
        dead processes' metrics files the daily maintenance keeps (1..36500).
      sharing_consistency(str): ``exact`` (every check sees every change
        committed before it began; one round trip) or ``notify`` (warm checks
        answered from memory kept current by PostgreSQL LISTEN/NOTIFY; exact
        again after ``crmtasks.sharing.sync()``).
      sharing_local_cache_records(int): In ``notify`` mode, the records whose
        sharing fields (owner, account, criteria fields) each process keeps
        in memory (least recently used evicted); 0 keeps none.
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
    archive_bucket: str | None = None
    archive_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_part_mb: int = 8
    audit_hold: bool = False
    audit_pause_at: str | None = None
    audit_maintenance_niceness: int = 10
    audit_maintenance_idle: bool = False
    archive_duty_percent: int = 70
    aggregates_rebuild_hours: int = 24
    search_timeout_ms: int = 5_000
    sharing_cache_ttl_s: int = 2 * 86400
    sharing_local_cache_users: int = 10_000
    alert_urls: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    history_days: int = 90
    sharing_consistency: str = "exact"
    sharing_local_cache_records: int = 100_000
    db_pool_timeout_s: float = 30.0
    sharing_checks_at_once: int = 0
    searches_at_once: int = 0
    api_processes: int = 0
    schedule_overrides: tuple[str, ...] = ()

    @property
    def audit_archive_dir(self) -> Path:
        """The directory audit archives are written to when the store is a directory (default CRMTASKS_HOME/archive)."""
        return self.archive_dir or self.home / "archive"

    @property
    def archive_url(self) -> str:
        """Where audit archives go, as a URL: ``s3://bucket/prefix`` or ``file:///dir``."""
        if self.archive_bucket is not None:
            return f"s3://{self.archive_bucket}/{self.archive_prefix}".rstrip("/")
        return self.audit_archive_dir.as_uri()

    @property
    def exporter(self) -> ExporterSettings:
        """Where this process's worker group serves Prometheus metrics, and the directory they are kept in."""
        return ExporterSettings(self.metrics_host, self.metrics_port, _metrics_dir(self.home, self.metrics_port))

    @property
    def metrics_root(self) -> Path:
        """The directory holding every worker group's metrics directory on this host (one per port)."""
        return _metrics_dir(self.home, self.metrics_port).parent

    @property
    def secrets(self) -> frozenset[str]:
        """Every password in these settings (the URLs' in each form they may be echoed in, the dashboard's)."""
        found = url_secrets(self.database_url) | url_secrets(self.redis_url)
        if self.dashboard_password:
            found.add(self.dashboard_password)
        return frozenset(found)

    def scrub(self, text: str) -> str:
        """``text`` (a library's error message, a traceback) with every password of these settings masked."""
        return scrub(text, self.secrets)

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
    values.refuse_blank(environ, ("CRMTASKS_HOME", "CRMTASKS_METRICS_HOST", "CRMTASKS_METRICS_PORT"))
    home = values.home(environ.get("CRMTASKS_HOME"))
    port = _metrics_port(environ)
    return ExporterSettings(_metrics_host(environ), port, _metrics_dir(home, port))


def _metrics_host(environ: Mapping[str, str]) -> str:
    return values.empty_to_none(environ.get("CRMTASKS_METRICS_HOST")) or "127.0.0.1"


def _metrics_port(environ: Mapping[str, str]) -> int:
    return values.positive_int(environ, "CRMTASKS_METRICS_PORT", default=9191, most=65535)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping; raise SettingsError on the first bad value."""
    values.refuse_blank(environ)
    return Settings(
        database_url=values.database_url(environ.get("DATABASE_URL")),
        redis_url=values.redis_url(environ.get("REDIS_URL")),
        home=values.home(environ.get("CRMTASKS_HOME")),
        redis_prefix=values.redis_prefix(environ.get("CRMTASKS_REDIS_PREFIX")),
        schedules=values.schedules(environ),
        schedule_overrides=values.schedule_overrides(environ),
        db_pool_size=values.positive_int(environ, "CRMTASKS_DB_POOL_SIZE", default=20, most=500),
        log_level=values.log_level(environ.get("CRMTASKS_LOG_LEVEL")),
        catch_up_s=values.positive_int(environ, "CRMTASKS_SCHEDULE_CATCHUP_S", default=3600, most=7 * 86400, least=0),
        metrics_host=_metrics_host(environ),
        metrics_port=_metrics_port(environ),
        log_format=values.choice(environ, "CRMTASKS_LOG_FORMAT", ("text", "json"), default="text"),
        log_file=values.log_file(environ.get("CRMTASKS_LOG_FILE")),
        worker_heartbeat_timeout_ms=values.positive_int(environ, "CRMTASKS_WORKER_HEARTBEAT_TIMEOUT_MS", default=60_000,
                                                  most=3_600_000, least=1000),
        broker_maintenance_chance=values.positive_int(environ, "CRMTASKS_BROKER_MAINTENANCE_CHANCE", default=1000,
                                                most=1_000_000),
        **values.dashboard_credentials(environ),
        audit_premake_months=values.month_count(environ, "CRMTASKS_AUDIT_PREMAKE_MONTHS", default=3, least=0, most=120),
        audit_retention_months=values.month_count(environ, "CRMTASKS_AUDIT_RETENTION_MONTHS", default=12, least=1, most=1200),
        audit_retention_policy=values.choice(environ, "CRMTASKS_AUDIT_RETENTION_POLICY", AUDIT_RETENTION_POLICIES),
        **archive.archive_target(environ),
        s3_endpoint_url=archive.endpoint_url(environ.get("CRMTASKS_S3_ENDPOINT_URL")),
        s3_part_mb=values.positive_int(environ, "CRMTASKS_S3_PART_MB", default=8, least=5, most=5120),
        audit_hold=values.flag(environ, "CRMTASKS_AUDIT_HOLD"),
        audit_pause_at=values.pause_point(environ.get("CRMTASKS_AUDIT_PAUSE_AT")),
        audit_maintenance_niceness=values.positive_int(environ, "CRMTASKS_AUDIT_MAINTENANCE_NICENESS", default=10,
                                                       least=0, most=19),
        audit_maintenance_idle=values.flag(environ, "CRMTASKS_AUDIT_MAINTENANCE_IDLE"),
        archive_duty_percent=values.positive_int(environ, "CRMTASKS_ARCHIVE_DUTY_PERCENT", default=70, least=10,
                                                 most=100, unit="percent"),
        aggregates_rebuild_hours=values.hours(environ, "CRMTASKS_AGGREGATES_REBUILD_HOURS", default=24),
        search_timeout_ms=values.positive_int(environ, "CRMTASKS_SEARCH_TIMEOUT_MS", default=5_000, most=600_000),
        sharing_cache_ttl_s=values.positive_int(environ, "CRMTASKS_SHARING_CACHE_TTL_S", default=2 * 86400,
                                          most=30 * 86400, least=60),
        sharing_local_cache_users=values.positive_int(environ, "CRMTASKS_SHARING_LOCAL_CACHE_USERS", default=10_000,
                                                most=1_000_000, least=0),
        alert_urls=values.alert_urls(environ.get("CRMTASKS_ALERT_URLS")),
        history_days=values.positive_int(environ, "CRMTASKS_HISTORY_DAYS", default=90, most=36_500, unit="days"),
        sharing_consistency=values.choice(environ, "CRMTASKS_SHARING_CONSISTENCY", SHARING_CONSISTENCIES),
        sharing_local_cache_records=values.positive_int(environ, "CRMTASKS_SHARING_LOCAL_CACHE_RECORDS",
                                                        default=100_000, most=10_000_000, least=0),
        db_pool_timeout_s=values.seconds(environ, "CRMTASKS_DB_POOL_TIMEOUT_S", default=30.0, least=0.01, most=3600),
        sharing_checks_at_once=values.positive_int(environ, "CRMTASKS_SHARING_CHECKS_AT_ONCE", default=0, least=0,
                                                   most=500),
        searches_at_once=values.positive_int(environ, "CRMTASKS_SEARCHES_AT_ONCE", default=0, least=0, most=500),
        api_processes=values.positive_int(environ, "CRMTASKS_API_PROCESSES", default=0, least=0, most=10_000),
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from os.environ on first use."""
    return load_settings(os.environ)


def get_exporter_settings() -> ExporterSettings:
    """The Prometheus exporter's settings, read from os.environ."""
    return load_exporter_settings(os.environ)


def configure_logging(settings: Settings, *, libraries_level: str | None = None) -> None:
    """Send the process's log records to stderr (and the log file, if set) as text or JSON.

    Idempotent. Every record is scrubbed of the settings' passwords (a
    library's message or traceback may echo a URL). The handlers replace the stderr handler Dramatiq and periodiq
    put on the root logger, so their records (a failed job's traceback) are
    formatted like ours and reach the log file too (crmtasks.logging_setup).
    ``libraries_level`` sets the level of everyone else's records (workers
    and the scheduler want Dramatiq's INFO lines, the CLI only warnings).
    SettingsError naming CRMTASKS_LOG_FILE when the file cannot be opened
    (its directory exists but is not writable, ``/proc``).
    """
    try:
        install_handlers(settings.log_level, settings.log_format, settings.log_file, libraries_level,
                         secrets=settings.secrets)
    except OSError as error:
        raise SettingsError("CRMTASKS_LOG_FILE", f"cannot write {settings.log_file}: {error.strerror or error}") from None


__all__ = ["AUDIT_PAUSE_POINTS", "AUDIT_RETENTION_POLICIES", "SHARING_CONSISTENCIES", "ExporterSettings", "Settings",
           "SettingsError", "configure_logging", "cron_problem", "get_exporter_settings", "get_settings",
           "load_exporter_settings", "load_settings", "mask_alert_url", "mask_url", "scrub"]
