"""The job page's duration chart and the Host/Origin rules of the dashboard (no services needed)."""

from __future__ import annotations

import datetime
import re

import pytest

from crmtasks.models import TaskRun
from crmtasks.web.charts import _nice_ceiling, duration_chart
from crmtasks.web.guard import host_name, loopback_names, post_from_elsewhere

UTC = datetime.timezone.utc
START = datetime.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def run(number: int, seconds: float | None, status: str = "succeeded", task: str = "tally_users") -> TaskRun:
    started = START + datetime.timedelta(minutes=number)
    return TaskRun(id=number, task=task, trigger="schedule", status=status, started_at=started,
                   finished_at=None if seconds is None else started + datetime.timedelta(seconds=seconds))


def bars(svg: str) -> list[tuple[str, float, int]]:
    """(status, height, run id) of each bar, left to right."""
    return [(status, float(height), int(number)) for status, height, number in
            re.findall(r'<rect class="bar bar-(\w+)"[^>]*height="([\d.]+)"[^>]*><title>run (\d+) ', svg)]


def test_one_bar_per_run_oldest_first_heights_in_proportion():
    svg = str(duration_chart([run(3, 40.0), run(1, 10.0), run(2, 20.0, "failed"), run(4, None, "running")]))
    drawn = bars(svg)
    assert [(status, number) for status, _, number in drawn] == \
        [("succeeded", 1), ("failed", 2), ("succeeded", 3), ("running", 4)]
    heights = [height for _, height, _ in drawn]
    assert heights[1] == pytest.approx(2 * heights[0], rel=0.01) and heights[2] == pytest.approx(4 * heights[0], rel=0.01)
    assert heights[3] == 0
    assert "50.0 s" in svg  # the axis tops at a round value above the longest run (40 s)


def test_the_chart_escapes_what_it_shows_and_says_when_there_is_nothing_to_draw():
    hostile = run(1, 1.0, status="<script>x</script>")
    svg = str(duration_chart([hostile]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'id="duration-chart-empty"' in str(duration_chart([]))
    assert 'id="duration-chart-empty"' in str(duration_chart([run(1, None, "running")]))


def test_a_hundred_runs_fit_the_width():
    svg = str(duration_chart([run(number, number / 10) for number in range(1, 101)]))
    xs = [float(x) for x in re.findall(r'<rect class="bar[^"]*" x="([\d.]+)"', svg)]
    assert len(xs) == 100 and xs == sorted(xs) and xs[-1] < 760


@pytest.mark.parametrize("value, ceiling", [(0, 1), (0.04, 0.05), (0.3, 0.5), (1, 1), (1.2, 2), (2.2, 2.5),
                                            (40, 50), (99, 100), (3600, 5000)])
def test_the_axis_tops_at_a_round_value(value, ceiling):
    assert _nice_ceiling(value) == pytest.approx(ceiling)


def test_loopback_names_are_the_bound_address_and_localhost():
    assert loopback_names("127.0.0.1") == {"127.0.0.1", "localhost"}
    assert loopback_names("localhost") == {"localhost", "127.0.0.1", "::1"}
    assert loopback_names("[::1]") == {"::1", "localhost"}


@pytest.mark.parametrize("header, name", [("127.0.0.1:8080", "127.0.0.1"), ("LOCALHOST", "localhost"),
                                          ("[::1]:8080", "::1"), ("rebind.evil.example:8080", "rebind.evil.example"),
                                          ("localhost:port", None), ("", None), (None, None)])
def test_host_name_reads_a_host_header(header, name):
    assert host_name(header) == name


@pytest.mark.parametrize("origin, referer, elsewhere", [
    ("http://127.0.0.1:8080", None, False),
    (None, "http://127.0.0.1:8080/runs", False),
    (None, None, False),                                   # curl: the CSRF token still decides
    ("https://127.0.0.1:8080", None, False),               # behind a TLS proxy
    ("http://evil.example", None, True),
    ("null", None, True),
    ("http://127.0.0.1:8080.evil.example", None, True),
    ("http://127.0.0.1:9090", None, True),
    (None, "https://evil.example/page", True),
    ("http://127.0.0.1:8080", "https://evil.example/", False),  # Origin wins over Referer
    ("file://", None, True),
])
def test_a_post_from_another_site_is_told_apart(origin, referer, elsewhere):
    assert post_from_elsewhere(origin, referer, "127.0.0.1:8080", "http") is elsewhere


def test_default_ports_do_not_make_a_site_another():
    assert not post_from_elsewhere("https://crm.example", None, "crm.example:443", "https")
    assert not post_from_elsewhere("http://crm.example", None, "crm.example", "http")
