"""Alerts: an operator is told when a job fails for good, is overdue, or has no live scheduler or worker.

``destinations`` sends to the Apprise URLs of CRMTASKS_ALERT_URLS,
``incidents`` keeps one Redis key per open incident so that however many
processes notice a problem, one alert goes out when it starts and one when
it ends, ``failures`` opens and resolves the "failed for good" incident of
a job, and ``sweep`` is what the scheduler's and workers' heartbeats run to
notice the rest. Nothing here may break a job or a heartbeat: a destination
that fails is logged.
"""

from crmtasks.alerts.destinations import AlertSender
from crmtasks.alerts.incidents import Incidents
from crmtasks.alerts.sweep import AlertSweep

__all__ = ["AlertSender", "AlertSweep", "Incidents"]
