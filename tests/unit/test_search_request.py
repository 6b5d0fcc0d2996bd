"""Search input is checked before any SQL exists: names only from the registry, values of the right type."""

from __future__ import annotations

import datetime
import decimal

import pytest

from crmtasks.jobs import registry
from crmtasks.search import facets, kinds
from crmtasks.search.request import MAX_LIST_VALUES, build_request, filters_from_text


@pytest.mark.parametrize("arguments, message", [
    ({"entity": "opportunities"}, "unknown entity 'opportunities'; expected one of: accounts, contacts, deals, leads"),
    ({"entity": "leads; DROP TABLE leads"}, "unknown entity"),
    ({"entity": None}, "unknown entity"),
    ({"entity": "leads", "filters": {"colour": "red"}}, "leads has no filter field 'colour'; facet fields: status"),
    ({"entity": "leads", "filters": {"status = 'x' OR 1=1 --": "x"}}, "has no filter field"),
    ({"entity": "leads", "filters": {'status" = status; DROP TABLE leads; --': "x"}}, "has no filter field"),
    ({"entity": "leads", "filters": {1: "x"}}, "has no filter field '1'"),
    ({"entity": "leads", "filters": {"amount": {"gte": 1}}}, "leads has no filter field 'amount'"),
    ({"entity": "leads", "filters": [("status", "new")]}, "filters must be a dict"),
    ({"entity": "leads", "filters": {"status": 5}}, "filter status: expected text (str), got int 5"),
    ({"entity": "leads", "filters": {"status": True}}, "filter status: expected text (str), got bool"),
    ({"entity": "leads", "filters": {"status": ["new", 3]}}, "filter status: expected text"),
    ({"entity": "leads", "filters": {"status": {"gte": "a"}}}, "filter status: expected text"),
    ({"entity": "leads", "filters": {"status": "x" * 201}}, "at most 200"),
    ({"entity": "leads", "filters": {"status": "new\x00"}}, "NUL"),
    ({"entity": "leads", "filters": {"owner": "7"}}, "filter owner: expected a user id (int), got str '7'"),
    ({"entity": "leads", "filters": {"owner": True}}, "filter owner: expected a user id (int), got bool"),
    ({"entity": "leads", "filters": {"owner": 2**63}}, "out of range"),
    ({"entity": "leads", "filters": {"owner": list(range(MAX_LIST_VALUES + 1))}}, "filter owner: at most 100 values, got 101"),
    ({"entity": "leads", "filters": {"owner": []}}, "the list is empty"),
    ({"entity": "deals", "filters": {"close_quarter": "2024-Q5"}}, "expected a quarter written YYYY-Qn"),
    ({"entity": "deals", "filters": {"amount_band": "huge"}}, "expected one of 'under 1k'"),
    ({"entity": "deals", "filters": {"amount": 5}}, "filter amount: expected a range"),
    ({"entity": "deals", "filters": {"amount": {"between": 5}}}, "unknown range operator 'between'"),
    ({"entity": "deals", "filters": {"amount": {"gte": "lots"}}}, "filter amount gte: expected a number"),
    ({"entity": "deals", "filters": {"amount": {"gte": float("nan")}}}, "not a finite number"),
    ({"entity": "deals", "filters": {"amount": {"gte": True}}}, "expected a number"),
    ({"entity": "deals", "filters": {"close_date": {"gte": datetime.datetime(2024, 1, 1)}}}, "expected a date"),
    ({"entity": "leads", "filters": {"created_at": {"gte": datetime.datetime(2024, 1, 1)}}}, "has no time zone"),
    ({"entity": "leads", "filters": {"created_at": {"lt": "yesterday"}}}, "filter created_at lt: expected a datetime"),
    ({"entity": "leads", "filters": {"created_at": {"lt": "2024-01-01'; DROP TABLE leads; --"}}}, "expected a datetime"),
    ({"entity": "leads", "q": 42}, "q must be text"),
    ({"entity": "leads", "q": "ab"}, "q must be at least 3 characters"),
    ({"entity": "leads", "q": "x" * 201}, "q must be at most 200 characters"),
    ({"entity": "leads", "q": "abc\x00def"}, "control characters"),
    ({"entity": "leads", "page": 0}, "page must be at least 1"),
    ({"entity": "leads", "page": "2"}, "page must be a whole number"),
    ({"entity": "leads", "per_page": 101}, "per_page must be between 1 and 100"),
    ({"entity": "leads", "page": 500, "per_page": 25}, "reaches past record 10,000"),
    ({"entity": "leads", "order_by": "email"}, "leads cannot be ordered by 'email'"),
    ({"entity": "leads", "order_by": "id; DROP TABLE leads"}, "cannot be ordered by"),
    ({"entity": "leads", "order_by": ["id"]}, "order_by must be text"),
])
def test_bad_input_is_a_value_error_with_a_clear_message(arguments, message):
    with pytest.raises(ValueError) as caught:
        build_request(**arguments)
    assert message in str(caught.value)


def test_checked_values_are_normalised():
    request = build_request("deals", {
        "owner": [3, 3, None, 4],
        "close_quarter": "2024-Q3",
        "amount": {"gte": "1000.50", "lt": 5000},
        "created_at": {"gte": "2024-02-01"},
    }, q="  Acme  ", page=2, per_page=10, order_by="-amount")
    owner, quarter = request.facet_filters
    assert owner.keys == ("3", "4") and owner.null_included  # duplicates dropped, so counts are not summed twice
    assert quarter.keys == ("20243",)
    amount, created = request.range_filters
    assert amount.bounds == (("gte", decimal.Decimal("1000.50")), ("lt", decimal.Decimal(5000)))
    assert created.bounds == (("gte", datetime.datetime(2024, 2, 1, tzinfo=datetime.timezone.utc)),)
    assert request.q == "Acme" and request.offset == 10 and request.order == ("amount", True)


def test_filters_from_command_line_text():
    assert filters_from_text("deals", ["owner=3", "owner=4", "stage=closed won", "amount>=1000", "amount<5000.5",
                                       "close_quarter="]) == {
        "owner": [3, 4], "stage": "closed won", "amount": {"gte": "1000", "lt": "5000.5"}, "close_quarter": None}
    for bad, message in [("owner=me", "expected a user id"), ("stage>=a", "takes field=value"),
                         ("amount=5", "takes >=, >, <= or <"), ("colour=red", "has no filter field"),
                         ("no operator", "is not field=value")]:
        with pytest.raises(ValueError, match=message):
            filters_from_text("deals", [bad])


def test_facet_kinds_round_trip_their_values():
    quarter = kinds.QuarterOfDate("close_date")
    assert quarter.decode(quarter.check("2024-Q4")) == "2024-Q4"
    assert quarter.quarter_range(quarter.check("2024-Q4")) == (datetime.date(2024, 10, 1), datetime.date(2025, 1, 1))
    band = facets.AMOUNT_BANDS
    assert [band.decode(band.check(label)) for label in band.labels] == list(band.labels)
    owner = kinds.UserColumn("owner_id")
    assert owner.decode(owner.check(42)) == 42


def test_every_entity_declares_what_search_needs():
    for entity in facets.ENTITIES.values():
        assert len(entity.facets) >= 2
        assert set(entity.sortable) <= set(entity.columns)
        assert len(set(entity.facet_names)) == len(entity.facets)
        assert not set(entity.facet_names) & set(entity.ranges)


def test_precompute_facets_is_registered():
    spec = registry.get("analytics.precompute_facets")
    assert (spec.name, spec.cron, spec.queue, spec.max_retries) == ("precompute_facets", "*/5 * * * *", "workflow_cpu", 3)
    assert spec.time_limit_s < 300  # shorter than the period: runs never pile up
    assert spec.load().__module__ == "crmtasks.jobs.precompute_facets"


# ------------------------------------------------------------ hardening (issue 16)

@pytest.mark.parametrize("bound", ["1e-999999999", "1e-20000", "0.0000000000000000000000000000001",
                                   decimal.Decimal("1E-20000"), 1e-300])
def test_an_amount_bound_with_absurd_precision_is_a_value_error_naming_it(bound):
    with pytest.raises(ValueError, match=r"^filter amount gte: amount .* has more than 30 decimal places"):
        build_request("deals", {"amount": {"gte": bound}})


def test_amount_bounds_that_are_exact_enough_are_kept():
    bounds = dict(build_request("deals", {"amount": {"gte": "0e-20000", "lt": "1.50000000000000000000000000000000000"}})
                  .range_filters[0].bounds)
    assert bounds == {"gte": decimal.Decimal(0), "lt": decimal.Decimal("1.5")}
    assert dict(build_request("deals", {"amount": {"gte": 0.1 + 0.2}}).range_filters[0].bounds)["gte"] == \
        decimal.Decimal("0.30000000000000004")


def test_a_time_zone_offset_postgresql_refuses_is_taken_as_the_same_instant_in_utc():
    (created,) = build_request("leads", {"created_at": {"gte": "2024-01-01T00:00:00+20:00"}}).range_filters
    assert created.bounds == (("gte", datetime.datetime(2023, 12, 31, 4, 0, tzinfo=datetime.timezone.utc)),)
    assert created.bounds[0][1].utcoffset() == datetime.timedelta(0)
    with pytest.raises(ValueError, match="filter created_at gte: .*'0001-01-01T00:00:00\\+20:00' is out of range"):
        build_request("leads", {"created_at": {"gte": "0001-01-01T00:00:00+20:00"}})


def test_the_last_quarter_python_dates_reach_is_a_filter_like_any_other():
    quarter = kinds.QuarterOfDate("close_date")
    assert quarter.quarter_range(quarter.check("9999-Q4")) == (datetime.date(9999, 10, 1), "10000-01-01")
    (quarter_filter,) = build_request("deals", {"close_quarter": ["9999-Q4", "2024-Q1"]}).facet_filters
    condition = quarter.condition(quarter_filter.keys, quarter_filter.null_included)
    assert "10000-01-01" in repr(condition)


@pytest.mark.parametrize("arguments, message", [
    ({"entity": "leads", "filters": {"status": "\udcff\udcfe"}}, "filter status: the value '\\xff\\xfe' is not valid UTF-8"),
    ({"entity": "leads", "filters": {"status": ["new", "a\ud800b"]}}, "is not valid UTF-8"),
    ({"entity": "leads", "q": "abc\udcff"}, "q 'abc\\xff' is not valid UTF-8 text"),
    ({"entity": "deals", "filters": {"amount": {"gte": "１２"}}}, "filter amount gte: expected a number"),
    ({"entity": "deals", "filters": {"amount": {"gte": "٥"}}}, "filter amount gte: expected a number"),
    ({"entity": "deals", "filters": {"close_quarter": "٢٠٢٤-Q1"}}, "expected a quarter written YYYY-Qn"),
    ({"entity": "deals", "filters": {"close_quarter": "2024-Q1\n"}}, "expected a quarter written YYYY-Qn"),
])
def test_text_that_is_not_utf8_and_digits_of_other_scripts_are_refused(arguments, message):
    with pytest.raises(ValueError) as caught:
        build_request(**arguments)
    assert not isinstance(caught.value, UnicodeError)
    assert message in str(caught.value), str(caught.value)


@pytest.mark.parametrize("text", ["owner=１", "owner=٥", "owner=1_0", "owner=+1"])
def test_ids_on_the_command_line_are_ascii_digits(text):
    with pytest.raises(ValueError, match="filter owner: expected a user id"):
        filters_from_text("leads", [text])
    assert filters_from_text("leads", ["owner= 12 "]) == {"owner": 12}
