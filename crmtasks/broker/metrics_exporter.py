"""Serve a worker group's Prometheus metrics where the settings say: 127.0.0.1:9191 by default.

Dramatiq's Prometheus middleware serves metrics from a process that the
``dramatiq`` master forks. The master never imports crmtasks, so Dramatiq's
exporter binds the address of its own environment variables (all
interfaces by default) and reads its own directory, not the one our workers
write to: our per-job series never showed and the port was open to the
network. ``Prometheus`` keeps Dramatiq's metrics and hooks but forks
``serve`` instead, which binds ``CRMTASKS_METRICS_HOST:CRMTASKS_METRICS_PORT``
and reads the directory the workers write (``CRMTASKS_HOME/metrics/<port>``).
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from http.server import HTTPServer

from dramatiq.middleware import prometheus as dramatiq_prometheus

from crmtasks.settings import ExporterSettings, SettingsError, get_exporter_settings

logger = logging.getLogger(__name__)


class Prometheus(dramatiq_prometheus.Prometheus):
    """Dramatiq's Prometheus middleware with crmtasks' exporter (``serve``) forked instead of Dramatiq's."""

    @property
    def forks(self):
        return [serve]


def point_workers_at(exporter: ExporterSettings) -> None:
    """Make this worker process write its metrics where the exporter of its group reads them.

    Call before ``process_boot``: Dramatiq's middleware reads the directory then.
    SettingsError naming CRMTASKS_HOME when the directory cannot be made.
    """
    try:
        exporter.directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SettingsError("CRMTASKS_HOME", f"cannot create {exporter.directory} for the metrics: "
                                             f"{error.strerror or error}") from None
    dramatiq_prometheus.DB_PATH = str(exporter.directory)


class _Server(HTTPServer):
    def __init__(self, exporter: ExporterSettings, handler) -> None:
        if ":" in exporter.host:
            self.address_family = socket.AF_INET6
        super().__init__((exporter.host, exporter.port), handler)


def build_server(exporter: ExporterSettings) -> HTTPServer:
    """An HTTP server answering every GET with the metrics of every process of the group."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import MetricsHandler
    from prometheus_client.multiprocess import MultiProcessCollector

    exporter.directory.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(exporter.directory))
    return _Server(exporter, MetricsHandler.factory(registry))


def _stop_once(signum, frame):
    """Exit 0 on the first stop signal and ignore its repeats.

    A stop sent to the whole process group reaches this process twice (once
    directly, once relayed by the master); Dramatiq's own handler would
    answer the second with "Killing fork process..." and exit code 1.
    """
    for repeated in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(repeated, signal.SIG_IGN)
    raise SystemExit(0)


def serve() -> int:
    """Run the exporter until the master stops it (Dramatiq fork entry point); returns an exit code."""
    try:
        exporter = get_exporter_settings()
    except SettingsError as error:
        print(f"crmtasks: {error}", file=sys.stderr)
        return 2
    try:
        server = build_server(exporter)
    except OSError as error:
        # Workers keep running without metrics; say why on stderr even when logging is off.
        print(f"crmtasks: Prometheus exporter cannot listen on {exporter.host}:{exporter.port}: {error}",
              file=sys.stderr, flush=True)
        return 1
    logger.info("Prometheus exporter listening on %s:%d", exporter.host, exporter.port)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_once)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
