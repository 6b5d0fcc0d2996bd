"""Reports over the precomputed aggregates: ``crmtasks.reports.revenue(...)`` and friends.

One function per report, each returning a ``Report`` (rows and ``as_of``).
``REPORTS`` describes them for the CLI: which filters each accepts and which
can be plotted. The numbers come from ``analytics.precompute_aggregates``;
see ``crmtasks.reports.queries`` for the definitions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from crmtasks.reports.errors import AggregatesNotReady, ReportError
from crmtasks.reports.periods import GRAINS
from crmtasks.reports.queries import (
    Report,
    accounts,
    lead_conversion,
    pipeline,
    revenue,
    sales_cycle,
    win_rate,
)


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    """What a report accepts.

    Parameters:
      name(str): CLI name.
      function(callable): The report function.
      periodic(bool): Takes date_from, date_to and grain.
      stage(bool): Takes a stage filter.
      default_grain(str|None): Grain when none is given.
      plot(bool): ``crmtasks report NAME --plot`` draws it.
      description(str): One line for help.
    """

    name: str
    function: Callable[..., Report]
    periodic: bool
    stage: bool
    default_grain: str | None
    plot: bool
    description: str


REPORTS: dict[str, ReportSpec] = {spec.name: spec for spec in (
    ReportSpec("pipeline", pipeline, False, True, None, True, "open deals per stage: count, amounts, weighted"),
    ReportSpec("revenue", revenue, True, False, "month", True, "closed-won revenue and deals per period"),
    ReportSpec("win_rate", win_rate, True, False, "quarter", True, "won / (won + lost) per period"),
    ReportSpec("sales_cycle", sales_cycle, True, True, "month", False, "average days from created to closed"),
    ReportSpec("lead_conversion", lead_conversion, True, False, "month", False,
               "leads per source and period, converted share"),
    ReportSpec("accounts", accounts, False, False, None, False, "accounts per industry and region"),
)}


def get(name: str) -> ReportSpec:
    """The report called ``name``; ReportError naming the valid ones otherwise."""
    try:
        return REPORTS[name]
    except KeyError:
        raise ReportError(f"unknown report {name!r}; valid reports: {', '.join(REPORTS)}") from None


__all__ = ["GRAINS", "REPORTS", "AggregatesNotReady", "Report", "ReportError", "ReportSpec", "accounts", "get",
           "lead_conversion", "pipeline", "revenue", "sales_cycle", "win_rate"]
