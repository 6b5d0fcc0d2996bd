"""CRMTASKS_ALERT_URLS and CRMTASKS_HISTORY_DAYS: checked at load, one line naming the variable, no secret shown."""

from __future__ import annotations

import pytest

from crmtasks.alerts import AlertSender
from crmtasks.settings import SettingsError, load_settings, mask_alert_url


def test_unset_means_no_alerts_and_ninety_days_of_history():
    settings = load_settings({})
    assert settings.alert_urls == ()
    assert settings.history_days == 90
    assert not AlertSender(settings).enabled


def test_several_destinations_by_spaces_or_commas_and_a_comma_inside_a_url_is_kept():
    value = ("json://127.0.0.1:8000/hook, slack://TokenA/TokenB/TokenC/#ops\n"
             "mailtos://alerts:pw@mail.example.com?to=a@x.example,b@y.example")
    assert load_settings({"CRMTASKS_ALERT_URLS": value}).alert_urls == (
        "json://127.0.0.1:8000/hook", "slack://TokenA/TokenB/TokenC/#ops",
        "mailtos://alerts:pw@mail.example.com?to=a@x.example,b@y.example")


@pytest.mark.parametrize("value, shown", [
    ("tgram://SECRETtoken", "URL 1 of 1 (tgram://***)"),
    ("json://127.0.0.1/ok nosuchservice://user:SECRETtoken@host", "URL 2 of 2 (nosuchservice://***)"),
    ("SECRETtoken@hooks.example", "URL 1 of 1 (without a scheme://)"),
])
def test_a_bad_url_is_one_line_naming_the_variable_and_never_its_secret(value, shown, capsys, caplog):
    with pytest.raises(SettingsError) as error:
        load_settings({"CRMTASKS_ALERT_URLS": value})
    message = str(error.value)
    assert message.startswith("CRMTASKS_ALERT_URLS: ") and shown in message and "\n" not in message
    captured = capsys.readouterr()
    assert "SECRET" not in message + captured.out + captured.err + caplog.text


def test_alert_urls_stay_out_of_the_settings_repr_and_masked_forms():
    settings = load_settings({"CRMTASKS_ALERT_URLS": "discord://1234/SECRETtoken mailto://me:SECRETpw@gmail.com"})
    assert "SECRET" not in repr(settings)
    assert "SECRET" not in " ".join(AlertSender(settings).masked_destinations())
    assert mask_alert_url("slack://SECRET/x/y") == "slack://***"


@pytest.mark.parametrize("value, problem", [
    ("0", r"0 days is out of range \(1 to 36500\)"),
    ("ninety", "'ninety' is not a whole number of days"),
    ("36501", "out of range"),
])
def test_history_days_is_checked(value, problem):
    with pytest.raises(SettingsError, match=problem) as error:
        load_settings({"CRMTASKS_HISTORY_DAYS": value})
    assert str(error.value).startswith("CRMTASKS_HISTORY_DAYS: ")
    assert load_settings({"CRMTASKS_HISTORY_DAYS": "7"}).history_days == 7
