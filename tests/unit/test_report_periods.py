"""Report periods: grains, labels, range bounds, and the one-line refusals of ranges aggregates cannot answer."""

from __future__ import annotations

import datetime

import pytest

from crmtasks.reports import ReportError, periods

D = datetime.date


@pytest.mark.parametrize("day, grain, start, end, label", [
    (D(2024, 2, 29), "month", D(2024, 2, 1), D(2024, 2, 29), "2024-02"),
    (D(2023, 2, 10), "month", D(2023, 2, 1), D(2023, 2, 28), "2023-02"),
    (D(2024, 12, 31), "month", D(2024, 12, 1), D(2024, 12, 31), "2024-12"),
    (D(2024, 5, 17), "quarter", D(2024, 4, 1), D(2024, 6, 30), "2024-Q2"),
    (D(2024, 11, 1), "quarter", D(2024, 10, 1), D(2024, 12, 31), "2024-Q4"),
    (D(2024, 7, 4), "year", D(2024, 1, 1), D(2024, 12, 31), "2024"),
])
def test_period_bounds_and_labels(day, grain, start, end, label):
    assert periods.period_start(day, grain) == start
    assert periods.period_end(day, grain) == end
    assert periods.label(start, grain) == label


@pytest.mark.parametrize("text, end, expected", [
    ("2024-03-15", False, D(2024, 3, 15)),
    ("2024-02", False, D(2024, 2, 1)),
    ("2024-02", True, D(2024, 2, 29)),
    ("2024-q3", False, D(2024, 7, 1)),
    ("2024-Q3", True, D(2024, 9, 30)),
    ("2023", True, D(2023, 12, 31)),
    (" 2023 ", False, D(2023, 1, 1)),
])
def test_bounds_parse_days_and_whole_periods(text, end, expected):
    assert periods.parse_bound(text, end=end) == expected


@pytest.mark.parametrize("text", ["2024-13", "2024-02-30", "yesterday", "2024-Q5", "24-01-01", ""])
def test_bad_bounds_are_refused_in_one_line(text):
    with pytest.raises(ReportError, match="is not a date") as caught:
        periods.parse_bound(text, end=False, option="--from")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("date_from, date_to, grain, message", [
    (D(2024, 1, 2), None, "month", "does not start a month"),
    (None, D(2024, 1, 30), "month", "does not end a month"),
    (D(2024, 2, 1), None, "quarter", "does not start a quarter"),
    (None, D(2024, 3, 31), "year", "does not end a year"),
    (D(2024, 4, 1), D(2024, 3, 31), "month", "is after"),
    (datetime.datetime(2024, 1, 1), None, "month", "must be a date"),
    ("2024-01-01", None, "month", "must be a date"),
])
def test_ranges_that_aggregates_cannot_answer_exactly_are_refused(date_from, date_to, grain, message):
    with pytest.raises(ReportError, match=message):
        periods.check_range(date_from, date_to, grain)


def test_whole_period_ranges_are_accepted():
    periods.check_range(D(2024, 1, 1), D(2024, 3, 31), "quarter")
    periods.check_range(D(2024, 2, 1), D(2024, 2, 29), "month")
    periods.check_range(None, None, "year")
    with pytest.raises(ReportError, match="grain 'week'"):
        periods.check_grain("week")


@pytest.mark.parametrize("text, end, grain, expected", [
    ("9999-12", True, "month", D(9999, 12, 31)),
    ("9999-Q4", True, "quarter", D(9999, 12, 31)),
    ("9999", True, "year", D(9999, 12, 31)),
    ("9999-12-31", True, "month", D(9999, 12, 31)),
])
def test_the_last_period_python_dates_reach_is_a_range_like_any_other(text, end, grain, expected):
    day = periods.parse_bound(text, end=end, option="--to")
    assert day == expected
    periods.check_range(periods.period_start(day, grain), day, grain)  # whole periods: accepted
    assert periods.period_end(D(9999, 12, 5), grain) == D(9999, 12, 31)


@pytest.mark.parametrize("text", ["٢٠٢٤-01", "2024-0٣", "２０２４", "٢٠٢٤-Q3"])
def test_bounds_are_written_in_ascii_digits(text):
    with pytest.raises(ReportError, match="is not a date"):
        periods.parse_bound(text, end=False, option="--from")


def test_labels_of_early_years_have_four_digits_as_typed():
    assert [periods.label(D(1, 1, 1), grain) for grain in periods.GRAINS] == ["0001-01", "0001-Q1", "0001"]
