"""scripts/benchsuite without services: rows and claim verdicts, the Markdown and the chart, timing helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchsuite import report, timing
from benchsuite.dataset import SCALES, Scale
from benchsuite.jobs import what_it_did
from benchsuite.rows import SEED_CLAIMS, Row, claim_rows


def _row(**overrides) -> Row:
    values = {"suite": "search", "metric": "p95, no filter", "unit": "ms", "baseline": 50.0, "ours": 1.0,
              "target": "p95 <= 2 ms", "met": True}
    return Row(**{**values, **overrides})


def _results(rows: list[Row]) -> report.Results:
    machine = {"date": "2026-01-01T00:00:00+00:00", "cores": 2, "cpu": "test cpu", "memory_gib": 4.0, "os": "Linux",
               "python": "3.11", "postgresql": {"server_version": "15.0"}, "load_average_1_5_15": [0.1, 0.2, 0.3],
               "calibration_ms": 60.0, "commit": "abc123"}
    return report.Results(
        run_id="0123abcd", command="scripts/bench --scale small", scale="small",
        sizes={"description": SCALES["small"].describe()}, machine=machine,
        machine_after={"load_average_1_5_15": [0.2, 0.2, 0.3], "calibration_ms": 61.0},
        seeding={"seconds": {"crm_s": 1.0}, "rows": {}}, duration_s=12.0, rows=rows,
        jobs=[{"task": "precompute_facets", "status": "succeeded", "duration_s": 0.5, "rss_peak_mb": 50.0,
               "rss_before_job_mb": 48.0, "temp_bytes": 0, "summary": "rows_scanned 40,000"}],
        growth=[{"leads": leads, "facets_rows": 2 * leads, "facets_first_s": 0.2, "facets_s": 0.1,
                 "facets_s_per_100k": 0.5, "aggregates_s": 0.1, "aggregates_s_per_100k": 0.5, "archive_rows": leads,
                 "archive_s": 0.05, "archive_s_per_100k": 0.5, "rss_peak_mb": 45.0, "temp_bytes": 0}
                for leads in (1_000, 3_000, 10_000)],
        raw={})


def test_ratio_is_ours_over_baseline_and_none_without_both():
    assert _row(baseline=50.0, ours=1.0).ratio == pytest.approx(0.02)
    assert _row(baseline=None, ours=1.0).ratio is None
    assert _row(baseline=0.0, ours=1.0).ratio is None


def test_a_row_refuses_an_unknown_unit_or_claim():
    with pytest.raises(ValueError, match="unit"):
        _row(unit="parsecs")
    with pytest.raises(ValueError, match="claim"):
        _row(claim="teleportation")


def test_every_seed_claim_gets_exactly_one_verdict_in_seed_order():
    rows = [_row(claim="audit", suite="audit"), _row(), _row(claim="search")]
    verdicts = claim_rows(rows)
    assert [row.claim for row in verdicts] == list(SEED_CLAIMS)
    assert verdicts[0] is rows[2] and verdicts[3] is rows[0]
    missing = verdicts[1]
    assert missing.met is None and missing.ours is None and missing.metric == "not measured in this run"


def test_two_verdicts_for_one_claim_is_an_error():
    with pytest.raises(ValueError, match="two verdict rows"):
        claim_rows([_row(claim="search"), _row(claim="search")])


def test_results_json_keeps_nan_out_and_has_every_required_key():
    data = _results([_row(ours=float("nan")), _row(claim="search")]).as_dict()
    assert set(report.REQUIRED_KEYS) <= set(data)
    assert data["rows"][0]["ours"] is None
    json.dumps(data, allow_nan=False)
    assert len(data["claims"]) == len(SEED_CLAIMS)


def test_markdown_has_a_row_per_claim_with_verdicts_and_escaped_cells():
    rows = [_row(claim="search", met=False), _row(metric="a | b", detail="x|y")]
    text = report.markdown(_results(rows))
    claims_section = text.split("## The seed's claims")[1].split("## Every measurement")[0]
    for claim in SEED_CLAIMS.values():
        assert claim in claims_section
    assert "**NO**" in claims_section and "n/a" in claims_section
    assert "a \\| b" in text and "x\\|y" in text
    assert "0.020 (98.0% less)" in text
    assert "## Each job at this scale" in text and "## How cost grows" in text
    assert "rows x10.0" in text


def test_write_produces_the_three_files(tmp_path):
    rows = [_row(claim="search", target_ratio=0.2), _row(met=False), _row(baseline=None, unit="rows/s")]
    paths = report.write(_results(rows), tmp_path / "out")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["ratios.png", "results.json", "results.md"]
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["json"].read_text())["claims"][0]["ratio"] == pytest.approx(0.02)


def test_percentile_is_nearest_rank():
    samples = list(range(1, 101))
    assert timing.percentile(samples, 0.5) == 50
    assert timing.percentile(samples, 0.95) == 95
    assert timing.percentile(samples, 1.0) == 100
    assert timing.percentile([7.0], 0.99) == 7.0


def test_interleaved_calls_every_side_with_the_same_argument_each_round():
    calls = []
    sides = {name: (lambda argument, name=name: calls.append((name, argument))) for name in ("live", "ours")}
    samples = timing.interleaved(sides, ["a", "b"], repeat=4, warmup=0)
    assert [len(values) for values in samples.values()] == [4, 4]
    assert calls == [("live", "a"), ("ours", "a"), ("ours", "b"), ("live", "b"),
                     ("live", "a"), ("ours", "a"), ("ours", "b"), ("live", "b")]


def test_scales_grow_and_growth_sizes_scale_rows_but_not_users():
    small, medium, large = SCALES["small"], SCALES["medium"], SCALES["large"]
    assert small.crm.leads < medium.crm.leads < large.crm.leads == 1_000_000
    assert (large.crm.deals, large.crm.contacts, large.crm.accounts, large.crm.users) == (300_000, 500_000, 200_000, 1_000)
    assert large.audit_rows == 5_000_000
    tenth = large.crm_at(0.1)
    assert (tenth.leads, tenth.deals, tenth.users) == (100_000, 30_000, 1_000)
    assert isinstance(small, Scale) and small.month_rows == small.audit_rows // 12


def test_job_summary_puts_key_figures_first():
    summary = what_it_did({"as_of": "2026-01-01", "generation": 3, "rows_scanned": 40_000, "mode": "full",
                           "entities": {"leads": {}}})
    assert summary.startswith("mode full, rows_scanned 40,000")
    assert "entities" not in summary and "as_of" not in summary
