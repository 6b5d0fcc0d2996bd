"""Report plots: PNG files from report rows (no database needed), and refusals for what cannot be drawn."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from crmtasks.reports import Report, ReportError
from crmtasks.reports.plots import plot

AS_OF = datetime.datetime(2024, 7, 1, 12, 0, tzinfo=datetime.timezone.utc)


def _report(name, rows, **filters):
    return Report(name, tuple(rows[0]) if rows else (), rows, AS_OF, {"owner": None, "by_owner": False, **filters})


REPORTS = {
    "pipeline": [{"stage": "Proposal", "deal_count": 3, "amount_total": Decimal("1500.00"),
                  "average_amount": Decimal("500.00"), "weighted_amount": Decimal("900.00")}],
    "revenue": [{"period": "2024-01", "period_start": datetime.date(2024, 1, 1), "deal_count": 2,
                 "revenue": Decimal("10.50"), "average_amount": Decimal("5.25")}],
    "win_rate": [{"period": "2024-Q1", "period_start": datetime.date(2024, 1, 1), "won": 1, "lost": 3,
                  "win_rate": Decimal("0.2500")}],
}


@pytest.mark.parametrize("name", sorted(REPORTS))
@pytest.mark.parametrize("empty", [False, True])
def test_plots_write_png_files(tmp_path, name, empty):
    path = plot(_report(name, [] if empty else REPORTS[name]), tmp_path / "chart.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_reports_without_a_chart_or_split_per_owner_are_refused(tmp_path):
    with pytest.raises(ValueError, match="has no plot"):
        plot(_report("accounts", [{"industry": None, "region": None, "account_count": 1}]), tmp_path / "a.png")
    with pytest.raises(ValueError, match="one owner"):
        plot(_report("revenue", REPORTS["revenue"], by_owner=True), tmp_path / "b.png")


def test_a_plot_that_cannot_be_written_is_a_report_error_naming_the_file(tmp_path):
    (tmp_path / "dir.png").mkdir()
    for target in (tmp_path / "dir.png", tmp_path / "missing" / "c.png"):
        with pytest.raises(ReportError, match=f"cannot write the plot to '{target}'") as caught:
            plot(_report("revenue", REPORTS["revenue"]), target)
        assert not isinstance(caught.value, OSError)
