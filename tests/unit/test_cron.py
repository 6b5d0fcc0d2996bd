"""Schedules fire in UTC exactly when cron says, whatever the host's zone.

croniter is the reference. periodiq's own parser is shown to get Sundays
wrong, which is why crmtasks hands periodiq a UtcCron instead.
"""

from __future__ import annotations

import datetime

import pendulum
import pytest
from croniter import croniter
from periodiq import cron as periodiq_cron

from crmtasks.scheduler.cron import UtcCron, to_utc_minute
from crmtasks.scheduler.slots import plan_catch_up

UTC = datetime.timezone.utc
EXPRESSIONS = [
    "*/5 * * * *", "*/10 * * * *", "0 2 * * *", "0 3 * * *", "30 2 * * *", "0 0 * * 0", "0 0 * * 7",
    "0 0 * * sun", "15 4 * * mon-fri", "0 12 1 * *", "0 0 1,15 * 1", "@weekly", "@daily", "@hourly",
    "0 */6 * * *", "59 23 31 12 *", "0 9 * * 0,6", "5 4 29 2 *",
]
# Nine days with both 2026 fall-back nights (Europe 25 Oct, US 1 Nov), two Sundays and a month end.
START = datetime.datetime(2026, 10, 24, 0, 0, tzinfo=UTC)
END = datetime.datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _reference_fires(expression, start, end):
    iterator, fires = croniter(expression, start - datetime.timedelta(minutes=1)), []
    while (moment := iterator.get_next(datetime.datetime)) < end:
        fires.append(moment)
    return fires


def _fires_as_periodiq_drives_them(spec, start, end):
    """periodiq's scheduler loop: send when validate(now), then sleep until next_valid_date(now)."""
    now, fires = pendulum.instance(start), []
    while now < end:
        if spec.validate(now):
            fires.append(to_utc_minute(now))
        now = spec.next_valid_date(now)
    return fires


@pytest.fixture(params=["Europe/Paris", "America/New_York"])
def host_zone(request):
    pendulum.set_local_timezone(pendulum.timezone(request.param))
    yield request.param
    pendulum.set_local_timezone()


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_fires_exactly_when_croniter_says_in_utc(expression, host_zone):
    start = pendulum.instance(START).in_timezone(pendulum.local_timezone())
    assert _fires_as_periodiq_drives_them(UtcCron(expression), start, END) == _reference_fires(expression, START, END)


@pytest.mark.parametrize("expression", ["0 0 * * 0", "0 0 * * sun", "@weekly"])
def test_periodiqs_own_parser_never_fires_on_sunday(expression):
    sunday_midnight = pendulum.datetime(2026, 11, 29, 0, 0, tz="UTC")
    assert not periodiq_cron(expression).validate(sunday_midnight)  # the bug we route around
    assert UtcCron(expression).validate(sunday_midnight)


def test_invalid_expression_is_refused():
    with pytest.raises(ValueError, match="not a valid cron"):
        UtcCron("61 * * * *")


def test_slot_helpers():
    cron = UtcCron("*/5 * * * *")
    at = datetime.datetime(2026, 11, 29, 10, 7, 31, tzinfo=UTC)
    assert cron.slot_at_or_before(at) == datetime.datetime(2026, 11, 29, 10, 5, tzinfo=UTC)
    assert cron.slot_at_or_before(at.replace(minute=10, second=0)) == at.replace(minute=10, second=0)
    assert cron.next_slots(at, 3) == [at.replace(minute=m, second=0) for m in (10, 15, 20)]
    assert cron.interval(at) == datetime.timedelta(minutes=5)
    assert cron.slots_between(at.replace(minute=0, second=0), at, 10) == [at.replace(minute=5, second=0)]


class TestCatchUpPlan:
    cron = UtcCron("0 2 * * *")
    now = datetime.datetime(2026, 11, 29, 2, 40, 10, tzinfo=UTC)

    def test_recent_missed_slot_runs_once(self):
        last = datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
        assert plan_catch_up(self.cron, last, self.now, 3600) == (self.now.replace(minute=0, second=0), [])

    def test_slot_outside_the_window_is_recorded_missed(self):
        last = datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
        assert plan_catch_up(self.cron, last, self.now, 1800) == (None, [self.now.replace(minute=0, second=0)])

    def test_a_long_outage_runs_the_latest_slot_once_and_records_the_rest(self):
        last = datetime.datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
        run, missed = plan_catch_up(self.cron, last, self.now, 3600)
        assert run == datetime.datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
        assert missed == [datetime.datetime(2026, 11, d, 2, 0, tzinfo=UTC) for d in (26, 27, 28)]

    def test_nothing_owed_when_the_latest_slot_was_recorded(self):
        last = datetime.datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
        assert plan_catch_up(self.cron, last, self.now, 3600) == (None, [])

    def test_the_current_minute_is_left_to_periodiq(self):
        at_slot = datetime.datetime(2026, 11, 29, 2, 0, 20, tzinfo=UTC)
        last = datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
        assert plan_catch_up(self.cron, last, at_slot, 3600) == (None, [])

    def test_catch_up_disabled(self):
        last = datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
        assert plan_catch_up(self.cron, last, self.now, 0) == (None, [self.now.replace(minute=0, second=0)])
