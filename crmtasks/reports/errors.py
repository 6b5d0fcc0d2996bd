"""What can go wrong when asking for a report, in words a user can act on (one line each)."""

from __future__ import annotations

from crmtasks.errors import CrmtasksError


class ReportError(CrmtasksError, ValueError):
    """A report was asked for with a bad name, filter, date or range."""


class AggregatesNotReady(CrmtasksError):
    """The aggregates have never been computed in this database."""

    def __init__(self) -> None:
        super().__init__("report aggregates have not been computed yet; run "
                         "`python -m crmtasks.run --task precompute_aggregates`")
