"""Runs: the history of every run in ``task_runs``, running jobs in this process, and what operators see of them.

``history`` records runs, ``runner`` runs jobs now in this process (under
the same lock as workers), ``overview`` and ``health`` answer "how are the
jobs doing?", ``status`` names the states a run and a slot can be in, and
``pruning`` keeps the history to CRMTASKS_HISTORY_DAYS.
"""

from crmtasks.runs.status import JobState, RunStatus, SkipReason, SlotState, Trigger

__all__ = ["JobState", "RunStatus", "SkipReason", "SlotState", "Trigger"]
