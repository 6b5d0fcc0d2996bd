"""The search knob is validated with the other settings, one line naming the variable."""

from __future__ import annotations

import pytest

from crmtasks.settings import SettingsError, load_settings


def test_search_timeout_setting():
    assert load_settings({}).search_timeout_ms == 5_000
    assert load_settings({"CRMTASKS_SEARCH_TIMEOUT_MS": "250"}).search_timeout_ms == 250
    for bad, message in [("soon", "is not a whole number"), ("0", "out of range"), ("600001", "out of range")]:
        with pytest.raises(SettingsError, match=message) as caught:
            load_settings({"CRMTASKS_SEARCH_TIMEOUT_MS": bad})
        assert caught.value.variable == "CRMTASKS_SEARCH_TIMEOUT_MS"
