"""Sending one alert to every destination of CRMTASKS_ALERT_URLS, through Apprise.

Apprise knows Slack, e-mail, Teams, generic JSON webhooks and some hundred
other services by URL; crmtasks only hands it a title, a body and a level.
A destination that is down, refuses or times out is logged with its URL
masked (Apprise's own privacy form) and never raised: an alert must not
break the job or the heartbeat that sends it.
"""

from __future__ import annotations

import enum
import logging

import apprise

from crmtasks.settings import Settings

logger = logging.getLogger(__name__)


class Level(str, enum.Enum):
    """How an alert is marked at its destinations (Apprise's notify types).

    Members:
      PROBLEM: An incident started (a failed or overdue job, a missing process).
      RESOLVED: The incident ended.
    """

    PROBLEM = "failure"
    RESOLVED = "success"


class AlertSender:
    """Sends alerts to the destinations of one deployment.

    Parameters:
      settings(Settings): ``alert_urls`` (none: nothing is sent) and
        ``redis_prefix``, which names the deployment in every title.
    """

    def __init__(self, settings: Settings) -> None:
        self.urls = settings.alert_urls
        self.deployment = settings.redis_prefix

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def send(self, title: str, body: str, level: Level) -> bool:
        """Send to every destination; True when all of them took it. Never raises.

        Parameters:
          title(str): One line, without the deployment (added here).
          body(str): What happened and what to do, plain text.
          level(Level): PROBLEM or RESOLVED.
        """
        if not self.urls:
            return False
        full_title = f"[{self.deployment}] {title}"
        try:
            destinations = apprise.Apprise()
            for url in self.urls:
                destinations.add(url)
            delivered = bool(destinations.notify(body=body, title=full_title, notify_type=level.value))
        except Exception:  # a plugin bug must not reach the job or the heartbeat
            logger.exception("alert %r could not be sent", full_title)
            return False
        if not delivered:
            logger.error("alert %r was not delivered to every destination (%s)", full_title,
                         ", ".join(self.masked_destinations()))
        return delivered

    def masked_destinations(self) -> list[str]:
        """The destinations as Apprise shows them with secrets hidden, e.g. ``slack://T...A/T...B/...``."""
        shown = []
        for url in self.urls:
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
            shown.append(plugin.url(privacy=True).split("?")[0] if plugin is not None else "(invalid)")
        return shown
