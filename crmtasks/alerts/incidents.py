"""Open incidents, kept in Redis, so that each is announced once and its end once, cluster-wide.

An incident is a named condition (``overdue:precompute_facets``,
``no_worker:workflow_cpu``). The process that first notices it opens it
with ``SET NX`` on ``<prefix>:alert:incident:<id>`` and is the only one to
send the alert; every later check (by any process, on any host) finds the
key and sends nothing. When the condition clears, the process whose
``DEL`` removes the key sends the one "resolved" alert. A killed process
leaves at worst an open incident, which the next check that finds the
condition cleared resolves.

Some conditions are normal for a moment (a worker restarting, a scheduler
starting before its workers): ``noticed_for`` remembers, also in Redis,
since when a condition has been seen, so that the sweep opens the
incident only once it has lasted a grace period.
"""

from __future__ import annotations

import json
import logging
import time

from crmtasks.alerts.destinations import AlertSender, Level
from crmtasks.redis_client import get_redis, key
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)


class Incidents:
    """The open incidents of one deployment, and the alerts sent when one opens or resolves.

    Parameters:
      settings(Settings): Redis, the key prefix and the alert destinations.
      sender(AlertSender|None): Where alerts go; default: the settings' destinations.
    """

    def __init__(self, settings: Settings, sender: AlertSender | None = None) -> None:
        self.settings = settings
        self.sender = sender or AlertSender(settings)

    def _key(self, kind: str, incident_id: str) -> str:
        return key(self.settings, "alert", kind, incident_id)

    def open(self, incident_id: str, title: str, body: str) -> bool:
        """Open the incident and send its alert, unless it is open already; True when this call opened it."""
        record = json.dumps({"opened_at": time.time(), "title": title})
        if not get_redis(self.settings).set(self._key("incident", incident_id), record, nx=True):
            return False
        logger.warning("incident %s: %s", incident_id, title)
        self.sender.send(title, body, Level.PROBLEM)
        return True

    def resolve(self, incident_id: str, title: str, body: str) -> bool:
        """Close the incident and send the "resolved" alert, if it was open; True when this call closed it."""
        client = get_redis(self.settings)
        client.delete(self._key("noticed", incident_id))
        if not client.delete(self._key("incident", incident_id)):
            return False
        logger.info("incident %s resolved: %s", incident_id, title)
        self.sender.send(title, body, Level.RESOLVED)
        return True

    def opened_at(self, incident_id: str) -> float | None:
        """Unix time the incident was opened, or None when it is not open."""
        record = get_redis(self.settings).get(self._key("incident", incident_id))
        return json.loads(record)["opened_at"] if record else None

    def open_ids(self) -> list[str]:
        """The ids of every open incident."""
        prefix = self._key("incident", "")
        return sorted(name.decode()[len(prefix):] for name in
                      get_redis(self.settings).scan_iter(match=prefix + "*", count=500))

    def noticed_for(self, incident_id: str, now: float | None = None) -> float:
        """Seconds since any process first noticed the condition (0 the first time); see ``resolve``."""
        now = time.time() if now is None else now
        client = get_redis(self.settings)
        name = self._key("noticed", incident_id)
        client.set(name, now, nx=True)
        since = client.get(name)
        return max(0.0, now - float(since)) if since is not None else 0.0
