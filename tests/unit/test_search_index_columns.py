"""The index's columns without services: exact range bounds on whole units, bitmaps per code, ids to positions."""

from __future__ import annotations

import datetime
import decimal

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from crmtasks.search.index import CodedColumn, EntityIndex, NumberColumn, range_mask
from crmtasks.search.kinds import Amount, Date, Timestamp

CENTS = st.integers(-10**14 + 1, 10**14 - 1)
OPERATORS = {"gte": lambda a, b: a >= b, "gt": lambda a, b: a > b, "lte": lambda a, b: a <= b,
             "lt": lambda a, b: a < b}


@given(st.lists(st.one_of(st.none(), CENTS), max_size=30), st.sampled_from(sorted(OPERATORS)),
       st.decimals(min_value=-10**13, max_value=10**13, places=5, allow_nan=False))
def test_an_amount_bound_compares_exactly_with_whole_cents(cents, operator, bound):
    values = np.array([c or 0 for c in cents], dtype=np.int64)
    present = np.array([c is not None for c in cents], dtype=bool)
    mask = range_mask(NumberColumn(values, present), Amount(), ((operator, Amount().check(bound)),))
    expected = [c is not None and OPERATORS[operator](decimal.Decimal(c) / 100, bound) for c in cents]
    assert mask.tolist() == expected


@given(st.lists(st.datetimes(timezones=st.just(datetime.timezone.utc)), max_size=20),
       st.datetimes(timezones=st.just(datetime.timezone.utc)), st.sampled_from(sorted(OPERATORS)))
def test_a_timestamp_bound_compares_exactly_with_microseconds(moments, bound, operator):
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    values = np.array([(m - epoch) // datetime.timedelta(microseconds=1) for m in moments], dtype=np.int64)
    mask = range_mask(NumberColumn(values, None), Timestamp(), ((operator, Timestamp().check(bound)),))
    assert mask.tolist() == [OPERATORS[operator](m, bound) for m in moments]


def test_a_date_bound_and_infinite_dates():
    days = np.array([np.iinfo(np.int64).min, 0, 19_800, np.iinfo(np.int64).max], dtype=np.int64)
    mask = range_mask(NumberColumn(days, None), Date(), (("gte", datetime.date(1970, 1, 1)),
                                                         ("lt", datetime.date(9999, 12, 31))))
    assert mask.tolist() == [False, True, True, False]


@given(st.lists(st.integers(0, 5), max_size=200))
def test_bitmaps_hold_the_positions_of_each_code(codes):
    column = CodedColumn.from_codes(np.array(codes, dtype=np.uint8), tuple(str(k) for k in range(6)))
    for code, bitmap in enumerate(column.bitmaps):
        assert list(bitmap) == [p for p, c in enumerate(codes) if c == code]


@given(st.sets(st.integers(1, 500)), st.lists(st.integers(-5, 600), max_size=40))
def test_positions_of_ids_finds_exactly_the_held_ids(held, wanted):
    ids = np.array(sorted(held), dtype=np.int64)
    index = EntityIndex("leads", ids, {}, {}, {})
    assert list(index.positions_of_ids(np.array(wanted, dtype=np.int64))) == sorted(
        {int(np.searchsorted(ids, w)) for w in wanted if w in held})
