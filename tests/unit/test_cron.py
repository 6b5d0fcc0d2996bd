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
        assert plan_catch_up(self.cron, last, self.now, 3600) == (self.now.replace(minute=0, second=0), [], None)

    def test_slot_outside_the_window_is_recorded_missed(self):
        last = datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
        assert plan_catch_up(self.cron, last, self.now, 1800) == (None, [self.now.replace(minute=0, second=0)], None)

    def test_a_long_outage_runs_the_latest_slot_once_and_records_the_rest(self):
        last = datetime.datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
        run, missed, current = plan_catch_up(self.cron, last, self.now, 3600)
        assert current is None
        assert run == datetime.datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
        assert missed == [datetime.datetime(2026, 11, d, 2, 0, tzinfo=UTC) for d in (26, 27, 28)]

    def test_nothing_owed_when_the_latest_slot_was_recorded(self):
        last = datetime.datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
        assert plan_catch_up(self.cron, last, self.now, 3600) == (None, [], None)

    def test_a_slot_firing_now_is_sent_now_and_nothing_older_is_owed(self):
        at_slot = datetime.datetime(2026, 11, 29, 2, 0, 20, tzinfo=UTC)
        last = datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
        assert plan_catch_up(self.cron, last, at_slot, 3600) == (None, [], at_slot.replace(second=0))

    def test_catch_up_disabled(self):
        last = datetime.datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
        assert plan_catch_up(self.cron, last, self.now, 0) == (None, [self.now.replace(minute=0, second=0)], None)


class TestCatchUpPlanEveryMinute:
    """The double run of issue 16: schedulers starting at 20:22:09 ran 20:22 and caught up 20:21 too."""

    cron = UtcCron("* * * * *")
    now = datetime.datetime(2026, 11, 29, 20, 22, 9, tzinfo=UTC)
    minute = now.replace(second=0)

    def test_fresh_database_runs_only_the_current_slot(self):
        plan = plan_catch_up(self.cron, None, self.now, 3600)
        assert plan == (None, [], self.minute)
        assert (plan.catch_up, plan.missed, plan.current) == (None, [], self.minute)

    def test_after_an_outage_the_current_slot_is_the_latest_and_the_older_ones_are_missed(self):
        last = self.minute - datetime.timedelta(minutes=4)
        assert plan_catch_up(self.cron, last, self.now, 3600) == (
            None, [self.minute - datetime.timedelta(minutes=m) for m in (3, 2, 1)], self.minute)

    def test_a_restart_within_the_minute_owes_nothing(self):
        assert plan_catch_up(self.cron, self.minute, self.now, 3600) == (None, [], None)

    def test_a_restart_a_minute_later_owes_the_current_slot_only(self):
        last = self.minute - datetime.timedelta(minutes=1)
        assert plan_catch_up(self.cron, last, self.now, 3600) == (None, [], self.minute)

    def test_a_schedule_not_firing_now_catches_up_its_latest_slot(self):
        hourly = UtcCron("0 * * * *")
        assert plan_catch_up(hourly, None, self.now, 3600) == (self.now.replace(minute=0, second=0), [], None)

    @pytest.mark.parametrize("expression", EXPRESSIONS + ["* * * * *", "*/2 * * * *"])
    @pytest.mark.parametrize("second", [0, 9, 55])
    def test_at_most_one_slot_runs_and_it_is_the_latest(self, expression, second):
        cron = UtcCron(expression)
        for minutes_down in (0, 1, 2, 7, 61, 1500):
            now = self.now.replace(second=second)
            last = to_utc_minute(now) - datetime.timedelta(minutes=minutes_down)
            last = cron.slot_at_or_before(last) if minutes_down else None
            plan = plan_catch_up(cron, last, now, 3600)
            ran = [slot for slot in (plan.catch_up, plan.current) if slot is not None]
            assert len(ran) <= 1
            assert not ran or ran[0] == cron.slot_at_or_before(now)
            assert all(last < slot <= cron.slot_at_or_before(now) and slot not in ran for slot in plan.missed)
            assert plan.current in (None, to_utc_minute(now))
