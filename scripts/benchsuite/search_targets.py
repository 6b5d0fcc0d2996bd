"""Issue 12's search targets, per column of its table: 1M leads (``--scale large``) and 10M (``--scale xlarge``).

A run uses the 1M column up to 1M leads (so small and medium runs are
judged as strictly as large) and the 10M column above it. The column's
name goes into every row's target text, so results.md says which it was.
"""

from __future__ import annotations

import dataclasses

SEED_REDUCTION = 0.80  # the seed: 80% less query time
SEED_P95_MS = 100.0     # and p95 under 100 ms


@dataclasses.dataclass(frozen=True)
class Targets:
    """One column of the target table.

    Parameters:
      column(str): Its name, as the rows show it ("issue 12, 1M leads").
      p95_ms(dict): Search p95 limit per shape group: fast (no filter, one filter), filters (two or
        three facet filters, facet + range), text (company, surname), user (as a user).
      reduction(float): Every shape's p95 at least this much below the best single live statement.
      delta_share(float|None): A facet run after 1% of leads changed takes at most this share of a full build.
      delta_s(float|None): ... or at most this many seconds (the 10M column).
      full_build_s(float): Full build of the four entities' index, seconds.
      memory_mib(float): Resident memory of a searching process with four entities' index loaded.
    """

    column: str
    p95_ms: dict[str, float]
    reduction: float
    delta_share: float | None
    delta_s: float | None
    full_build_s: float
    memory_mib: float


ONE_MILLION = Targets("issue 12, 1M leads", {"fast": 2.0, "filters": 5.0, "text": 15.0, "user": 5.0}, 0.95,
                      delta_share=0.10, delta_s=None, full_build_s=10.0, memory_mib=150.0)
TEN_MILLION = Targets("issue 12, 10M leads", {"fast": 10.0, "filters": 25.0, "text": 50.0, "user": 25.0}, 0.95,
                      delta_share=None, delta_s=30.0, full_build_s=120.0, memory_mib=1024.0)


def targets_for(leads: int) -> Targets:
    """The column a run of ``leads`` leads is judged by."""
    return ONE_MILLION if leads <= 1_000_000 else TEN_MILLION
