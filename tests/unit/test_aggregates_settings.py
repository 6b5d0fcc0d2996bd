"""CRMTASKS_AGGREGATES_REBUILD_HOURS: how often the report aggregates are rebuilt from scratch."""

from __future__ import annotations

import pytest

from crmtasks.settings import SettingsError, load_settings


def test_the_default_is_a_daily_rebuild():
    assert load_settings({}).aggregates_rebuild_hours == 24


@pytest.mark.parametrize("value, hours", [("0", 0), ("6", 6), (" 168 ", 168)])
def test_valid_values(value, hours):
    assert load_settings({"CRMTASKS_AGGREGATES_REBUILD_HOURS": value}).aggregates_rebuild_hours == hours


@pytest.mark.parametrize("value, message", [("-1", "out of range"), ("9000", "out of range"), ("daily", "whole number"),
                                                   ("", "is set but empty"), ("２４", "whole number")])
def test_bad_values_name_the_variable(value, message):
    with pytest.raises(SettingsError, match=message) as caught:
        load_settings({"CRMTASKS_AGGREGATES_REBUILD_HOURS": value})
    assert str(caught.value).startswith("CRMTASKS_AGGREGATES_REBUILD_HOURS: ")
