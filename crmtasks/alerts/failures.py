"""The "failed for good" incident of a job: opened by its final failure, resolved by its next success.

A run that fails and will be retried is not an incident: the retry may
cure it. One whose message fails for good (no retry left, or an error a
retry cannot cure: it goes to the dead letters) is. Further final failures
while the incident is open send nothing; the job's next successful run
resolves it, whether a worker or ``crmtasks run`` ran it.
"""

from __future__ import annotations

from crmtasks.alerts.incidents import Incidents


def incident_id(job: str) -> str:
    return f"job_failed:{job}"


def failed_for_good(incidents: Incidents, job: str, *, actor: str, message_id: str, error: BaseException) -> bool:
    """Open the job's failure incident (alerting once); True when this call opened it.

    Parameters:
      incidents(Incidents): Where incidents live and alerts go.
      job(str): The job's name; actor(str), message_id(str): Dramatiq's names for the failed message.
      error(BaseException): What the last attempt raised.
    """
    last_line = (str(error).strip().splitlines() or [""])[-1][:500]
    body = (f"Job {job} ({actor}) failed and will not be retried; its message {message_id} went to the dead "
            f"letters.\nError: {type(error).__name__}: {last_line}\n"
            f"See `crmtasks tasks`, the dashboard's runs, or `crmtasks check`. A later successful run resolves this.")
    return incidents.open(incident_id(job), f"job {job} failed for good", body)


def succeeded(incidents: Incidents, job: str) -> bool:
    """Resolve the job's failure incident, if open; True when this call resolved it."""
    return incidents.resolve(incident_id(job), f"job {job} succeeded again",
                             f"Job {job} ran successfully after failing for good.")
