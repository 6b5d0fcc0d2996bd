"""``Rows``: a report's columns as the database sent them, read as the list of dicts the API always returned."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from crmtasks.reports.rows import Rows

NAMES = ("period", "period_start", "owner_id", "owner_name", "owner_active", "deal_count", "revenue")
KINDS = ("period", "date", "int", "text", "bool", "int", "decimal")
RAW = (None, "2024-01-01,2024-02-01,2024-02-01", "7,,8", ["Ann, \"A\"", None, ""], "true,,false", "3,0,12",
       "10.50,,0.0001")
EXPECTED = [
    {"period": "2024-Q1", "period_start": datetime.date(2024, 1, 1), "owner_id": 7, "owner_name": 'Ann, "A"',
     "owner_active": True, "deal_count": 3, "revenue": Decimal("10.50")},
    {"period": "2024-Q1", "period_start": datetime.date(2024, 2, 1), "owner_id": None, "owner_name": None,
     "owner_active": None, "deal_count": 0, "revenue": None},
    {"period": "2024-Q1", "period_start": datetime.date(2024, 2, 1), "owner_id": 8, "owner_name": "",
     "owner_active": False, "deal_count": 12, "revenue": Decimal("0.0001")},
]


def _rows() -> Rows:
    return Rows(NAMES, KINDS, RAW, 3, "quarter")


def test_rows_read_as_the_list_of_dicts_they_stand_for():
    rows = _rows()
    assert rows == EXPECTED and EXPECTED == rows and list(rows) == EXPECTED
    assert len(rows) == 3 and rows[0] == EXPECTED[0] and rows[-1] == EXPECTED[-1] and rows[1:] == EXPECTED[1:]
    assert [type(row["revenue"]) for row in rows] == [Decimal, type(None), Decimal]
    assert rows != EXPECTED[:2] and rows != EXPECTED[:2] + [dict(EXPECTED[2], deal_count=13)]
    with pytest.raises(IndexError):
        rows[3]


def test_a_column_is_decoded_once_and_whole():
    rows = _rows()
    assert rows.column("owner_id") == [7, None, 8]
    assert rows.column("owner_id") is rows.column("owner_id")
    assert rows.column("period") == ["2024-Q1"] * 3


def test_no_rows():
    rows = Rows(NAMES, KINDS, (None, None, None, None, None, None, None), 0, "month")
    assert rows == [] and not rows and list(rows) == [] and rows.column("revenue") == []
