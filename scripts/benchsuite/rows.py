"""What one benchmark result is, and the seed's claims every run must answer.

A ``Row`` compares a baseline (what the CRM does without our jobs: a live
query, a materialized view, an uncached check, the writer before
maintenance) with ours, against a target. ``ratio`` is always ours divided
by the baseline, so for every row of these suites lower is better: 0.05
means "95% less time" (or bytes, or latency growth).

Rows with ``claim`` set are the verdicts on the seed's claims (one per
claim in ``SEED_CLAIMS``); the others are the detailed measurements and our
own, stricter targets from the issues.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# The seed's promises, word for word from its "Performance Impact" section (and its p95 figure for search).
SEED_CLAIMS: dict[str, str] = {
    "search": "Search: 80% reduction in query time; p95 latency < 100 ms for faceted search",
    "reports": "Reports: 60% faster report generation",
    "sharing": "Caching: 95% reduction in sharing rule lookup time",
    "audit": "Audit Logs: Optimized storage and query performance",
}

UNITS = ("ms", "s", "rows/s", "bytes/row", "count", "rows", "MiB", "calls/s")


@dataclasses.dataclass
class Row:
    """One measurement, baseline against ours.

    Parameters:
      suite(str): search, reports, sharing, audit, load.
      metric(str): What was measured, in words ("p95, one filter").
      unit(str): Unit of baseline and ours, one of UNITS.
      baseline(float|None): The baseline's figure; None when there is no baseline (a throughput).
      ours(float|None): Our figure; None when it could not be measured in this build.
      target(str): The target in words ("p95 <= 2 ms and >= 95% below live"); "" for information.
      met(bool|None): Whether the target is met; None for information or not measured.
      detail(str): Context a reader needs (p50s, rows matched, the source of counts...).
      claim(str|None): Key of SEED_CLAIMS when this row is the verdict on that claim.
      target_ratio(float|None): When the target bounds the ratio, the largest ratio that meets it (for the chart).
    """

    suite: str
    metric: str
    unit: str
    baseline: float | None
    ours: float | None
    target: str = ""
    met: bool | None = None
    detail: str = ""
    claim: str | None = None
    target_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit {self.unit!r} is not one of {UNITS}")
        if self.claim is not None and self.claim not in SEED_CLAIMS:
            raise ValueError(f"claim {self.claim!r} is not one of {tuple(SEED_CLAIMS)}")

    @property
    def ratio(self) -> float | None:
        """ours / baseline (lower is better), None without both figures or with a zero baseline."""
        if self.baseline is None or self.ours is None or self.baseline == 0:
            return None
        return self.ours / self.baseline

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ratio"] = self.ratio
        if self.target_ratio is not None:
            data["target_ratio"] = round(self.target_ratio, 6)  # 1 - 0.95 is 0.050000000000000044
        data["claim_text"] = SEED_CLAIMS.get(self.claim) if self.claim else None
        return {key: _plain(value) for key, value in data.items()}


def _plain(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def unavailable_claim(claim: str, suite: str, why: str, metric: str = "not available in this build") -> Row:
    """The verdict row of a claim this run could not measure (met is None: neither met nor missed)."""
    return Row(suite=suite, metric=metric, unit="ms", baseline=None, ours=None, target="", met=None, detail=why,
               claim=claim)


def claim_rows(rows: list[Row]) -> list[Row]:
    """Exactly one verdict row per seed claim, in SEED_CLAIMS order.

    A claim no suite answered gets a row saying so (never silently dropped);
    two verdicts for one claim is a bug in a suite.
    """
    by_claim: dict[str, Row] = {}
    for row in rows:
        if row.claim is None:
            continue
        if row.claim in by_claim:
            raise ValueError(f"two verdict rows for the seed claim {row.claim!r}")
        by_claim[row.claim] = row
    return [by_claim.get(claim) or unavailable_claim(claim, claim, "its suite was not run (--suites)",
                                                     metric="not measured in this run")
            for claim in SEED_CLAIMS]


def all_met(rows: list[Row]) -> bool | None:
    """True when every row with a target met it; False when one missed; None when none had a verdict."""
    verdicts = [row.met for row in rows if row.met is not None]
    if not verdicts:
        return None
    return all(verdicts)
