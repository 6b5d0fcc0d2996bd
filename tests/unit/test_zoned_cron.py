"""Schedules in a job's own IANA zone across both 2026 DST transitions, with a controlled clock.

The documented rules (crmtasks.scheduler.cron): a fixed-hour job (``30 2 * *
*``) runs once on a spring-forward night, at the first valid minute after
the gap when its time was skipped, and once on a fall-back night, at the
first pass of the repeated hour; a job whose hour field is ``*`` follows
elapsed time through both passes. Zones: New York and Berlin (northern),
Sydney (southern hemisphere, the other way round in the calendar), Lord
Howe (a 30-minute shift). The clock is the test's: periodiq's loop is
driven minute by minute, nothing sleeps.
"""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pendulum
import pytest

from crmtasks.scheduler.cron import ZonedCron, to_utc_minute
from crmtasks.scheduler.slots import plan_catch_up

UTC = datetime.timezone.utc
MINUTE = datetime.timedelta(minutes=1)

# (zone, local date of the 2026 night, the wall-clock minutes that do not exist or repeat, kind)
SPRING_FORWARD = [
    ("America/New_York", datetime.date(2026, 3, 8), "03:00"),     # 02:00-02:59 skipped
    ("Europe/Berlin", datetime.date(2026, 3, 29), "03:00"),       # 02:00-02:59 skipped
    ("Australia/Sydney", datetime.date(2026, 10, 4), "03:00"),    # 02:00-02:59 skipped (southern spring)
]
FALL_BACK = [
    ("America/New_York", datetime.date(2026, 11, 1), "01:30"),   # 01:00-01:59 twice
    ("Europe/Berlin", datetime.date(2026, 10, 25), "02:30"),      # 02:00-02:59 twice
    ("Australia/Sydney", datetime.date(2026, 4, 5), "02:30"),     # 02:00-02:59 twice (southern autumn)
    ("Australia/Lord_Howe", datetime.date(2026, 4, 5), "01:45"),  # 01:30-01:59 twice (30-minute shift)
]


def _night(zone: str, day: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
    """Local noon the day before to local noon of the night's day, as UTC instants."""
    tz = ZoneInfo(zone)
    start = datetime.datetime.combine(day - datetime.timedelta(days=1), datetime.time(12), tz)
    end = datetime.datetime.combine(day, datetime.time(12), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def _fires_as_periodiq_drives_them(spec, start, end):
    """periodiq's scheduler loop on a controlled clock: send when validate(now), then jump to next_valid_date(now)."""
    now, fires = pendulum.instance(start), []
    while now < end:
        if spec.validate(now):
            fires.append(to_utc_minute(now))
        now = spec.next_valid_date(now)
    return fires


def _every_minute(spec, start, end):
    """The definition: each UTC minute that validates (what a scheduler waking every minute sends)."""
    fires, minute = [], start
    while minute < end:
        if spec.validate(minute):
            fires.append(minute)
        minute += MINUTE
    return fires


def _local(moments, zone):
    return [moment.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M %Z") for moment in moments]


def test_the_2026_transitions_are_where_the_tests_expect_them():
    for zone, day, _ in SPRING_FORWARD + FALL_BACK:
        start, end = _night(zone, day)
        assert start.astimezone(ZoneInfo(zone)).utcoffset() != end.astimezone(ZoneInfo(zone)).utcoffset(), (zone, day)


@pytest.mark.parametrize(("zone", "day", "first_valid"), SPRING_FORWARD, ids=[z for z, _, _ in SPRING_FORWARD])
def test_a_0230_job_on_a_spring_forward_night_runs_once_at_the_first_valid_minute_after(zone, day, first_valid):
    cron = ZonedCron("30 2 * * *", zone)
    start, end = _night(zone, day)
    fires = _fires_as_periodiq_drives_them(cron, start, end)
    assert len(fires) == 1
    local = fires[0].astimezone(ZoneInfo(zone))
    assert (local.date(), local.strftime("%H:%M")) == (day, first_valid)
    assert _every_minute(cron, start, end) == fires


def test_lord_howe_s_30_minute_gap_moves_a_0215_job_to_0230():
    zone, day = "Australia/Lord_Howe", datetime.date(2026, 10, 4)  # 02:00-02:29 skipped
    start, end = _night(zone, day)
    fires = _fires_as_periodiq_drives_them(ZonedCron("15 2 * * *", zone), start, end)
    assert _local(fires, zone) == ["10-04 02:30 +11"]
    # 02:30 exists that night: a 02:30 job runs at 02:30, once.
    assert _local(_fires_as_periodiq_drives_them(ZonedCron("30 2 * * *", zone), start, end), zone) == ["10-04 02:30 +11"]


@pytest.mark.parametrize(("zone", "day", "repeated"), FALL_BACK, ids=[z for z, _, _ in FALL_BACK])
def test_a_job_at_a_repeated_time_on_a_fall_back_night_runs_once_at_the_first_pass(zone, day, repeated):
    hour, minute = repeated.split(":")
    cron = ZonedCron(f"{int(minute)} {int(hour)} * * *", zone)
    start, end = _night(zone, day)
    fires = _fires_as_periodiq_drives_them(cron, start, end)
    assert len(fires) == 1
    local = fires[0].astimezone(ZoneInfo(zone))
    assert (local.date(), local.strftime("%H:%M"), local.fold) == (day, repeated, 0)
    # The first pass is the one with the summer offset, an hour (Lord Howe: 30 minutes) before the second.
    later = (local.replace(fold=1)).astimezone(UTC)
    assert later - fires[0] == (datetime.timedelta(minutes=30) if zone == "Australia/Lord_Howe"
                                else datetime.timedelta(hours=1))


def test_an_every_hour_schedule_runs_through_both_passes_and_skips_missing_minutes():
    zone = "America/New_York"
    start, end = _night(zone, datetime.date(2026, 11, 1))
    fires = [f for f in _fires_as_periodiq_drives_them(ZonedCron("*/30 * * * *", zone), start, end)
             if "11-01 00:00" <= _local([f], zone)[0][:11] <= "11-01 02:30"]
    assert _local(fires, zone) == ["11-01 00:00 EDT", "11-01 00:30 EDT", "11-01 01:00 EDT", "11-01 01:30 EDT",
                                   "11-01 01:00 EST", "11-01 01:30 EST", "11-01 02:00 EST", "11-01 02:30 EST"]
    start, end = _night(zone, datetime.date(2026, 3, 8))
    fires = _fires_as_periodiq_drives_them(ZonedCron("30 * * * *", zone), start, end)
    gaps = {b - a for a, b in zip(fires, fires[1:])}
    assert gaps == {datetime.timedelta(hours=1)}  # hourly in real time: 01:30 EST, then 03:30 EDT


EXPRESSIONS = ["30 2 * * *", "15 2 * * *", "0 2,3 * * *", "*/5 * * * *", "45 1 * * *", "0 */2 * * *", "@daily",
               "30 2 * * 0"]


@pytest.mark.parametrize("expression", EXPRESSIONS)
@pytest.mark.parametrize(("zone", "day"), [(z, d) for z, d, _ in SPRING_FORWARD + FALL_BACK]
                         + [("Australia/Lord_Howe", datetime.date(2026, 10, 4)), ("UTC", datetime.date(2026, 3, 8))])
def test_listed_slots_are_exactly_the_minutes_that_fire(expression, zone, day):
    """next_slots, slot_at_or_before and slots_between (listings, catch-up, staleness) agree with validate."""
    cron = ZonedCron(expression, zone)
    tz = ZoneInfo(zone)  # 20:00 to 08:00 local around the transition
    start = datetime.datetime.combine(day - datetime.timedelta(days=1), datetime.time(20), tz).astimezone(UTC)
    end = datetime.datetime.combine(day, datetime.time(8), tz).astimezone(UTC)
    fires = _every_minute(cron, start, end)
    listed = cron.next_slots(start - MINUTE, len(fires) + 1)
    assert listed[:len(fires)] == fires and listed[len(fires)] >= end
    assert cron.slots_between(start - MINUTE, end - MINUTE, 10_000) == fires
    for probe in fires[::max(1, len(fires) // 20)]:
        assert cron.slot_at_or_before(probe + datetime.timedelta(seconds=59)) == probe
        assert cron.next_slot(probe) == (fires + [listed[len(fires)]])[fires.index(probe) + 1]


def test_an_unknown_zone_is_refused():
    with pytest.raises(KeyError):
        ZonedCron("0 2 * * *", "Mars/Olympus_Mons")


def test_a_scheduler_starting_after_a_zoned_slot_catches_it_up():
    cron = ZonedCron("30 2 * * *", "Europe/Berlin")
    slot = datetime.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST: the skipped 02:30's run
    day_before = datetime.datetime(2026, 3, 28, 1, 30, tzinfo=UTC)  # 02:30 CET
    plan = plan_catch_up(cron, day_before, slot + datetime.timedelta(minutes=10), 3600)
    assert plan.catch_up == slot and plan.missed == []
