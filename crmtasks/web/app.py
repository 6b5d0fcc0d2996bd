"""Building and serving the dashboard WSGI application.

It binds 127.0.0.1 by default. Bound to any other address it refuses to
start without credentials (CRMTASKS_DASHBOARD_USER / _PASSWORD): a queue
console with delete and requeue buttons must not be open to the network.
waitress serves it: a pure-Python production WSGI server, no compiler needed.
"""

from __future__ import annotations

import ipaddress

from crmtasks.settings import Settings
from crmtasks.web.auth import BasicAuth


class UnsafeBinding(ValueError):
    """Serving on a non-loopback address without credentials."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(settings: Settings):
    """The dashboard WSGI app for ``settings`` (imports the actors so every queue is listed)."""
    from dramatiq_dashboard import DashboardApp

    from crmtasks import tasks

    app = DashboardApp(broker=tasks.broker, prefix="")
    if settings.dashboard_user:
        app = BasicAuth(app, settings.dashboard_user, settings.dashboard_password)
    return app


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve the dashboard until interrupted; UnsafeBinding when exposed without a login."""
    if not settings.dashboard_user and not is_loopback(host):
        raise UnsafeBinding(
            f"refusing to serve the dashboard on {host} without a login; set CRMTASKS_DASHBOARD_USER and "
            "CRMTASKS_DASHBOARD_PASSWORD, or bind 127.0.0.1")
    import waitress

    waitress.serve(build_app(settings), host=host, port=port, threads=4, ident="crmtasks")
