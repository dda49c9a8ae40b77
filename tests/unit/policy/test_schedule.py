"""Time windows in the school's time zone: days, ranges, overnight windows, exact boundaries and
the clock change."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from schoolgate.config.model import Schedule
from schoolgate.config.times import ScheduleError, parse_window

LONDON = ZoneInfo("Europe/London")


def at(text: str, tz: ZoneInfo = LONDON) -> float:
    """Unix time of a local wall-clock time such as '2026-11-23 08:30:00' (a Monday)."""
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def school_day(*windows: str, tz: str = "Europe/London") -> Schedule:
    return Schedule("school_day", "School day", tuple(parse_window(w) for w in windows), tz)


@pytest.mark.parametrize(
    ("when", "active"),
    [
        # The boundaries of Mon-Fri 08:30-15:30: start included, end excluded, to the second.
        ("2026-11-23 08:29:59", False),
        ("2026-11-23 08:30:00", True),
        ("2026-11-23 12:00:00", True),
        ("2026-11-23 15:29:59", True),
        ("2026-11-23 15:30:00", False),
        # Friday in, Saturday and Sunday out.
        ("2026-11-27 10:00:00", True),
        ("2026-11-28 10:00:00", False),
        ("2026-11-29 10:00:00", False),
        # Summer time: the window is on the wall clock, not UTC (BST is UTC+1).
        ("2026-06-15 08:30:00", True),
        ("2026-06-15 08:29:59", False),
    ],
)
def test_school_day_boundaries(when, active):
    assert school_day("Mon-Fri 08:30-15:30").active(at(when)) is active


def test_the_same_instant_differs_by_time_zone():
    # 08:30 in London is 09:30 in Warsaw: a school's zone decides, never the server's.
    instant = at("2026-11-23 08:30:00")
    assert school_day("Mon-Fri 08:30-15:30").active(instant)
    assert not school_day("Mon-Fri 09:31-15:30", tz="Europe/Warsaw").active(instant)
    assert school_day("Mon-Fri 09:30-15:30", tz="Europe/Warsaw").active(instant)


@pytest.mark.parametrize(
    ("when", "active"),
    [
        # Fri 22:00-06:00 runs into Saturday morning, and not into Friday morning.
        ("2026-11-27 21:59:59", False),
        ("2026-11-27 22:00:00", True),
        ("2026-11-28 05:59:59", True),
        ("2026-11-28 06:00:00", False),
        ("2026-11-27 05:00:00", False),
    ],
)
def test_overnight_window(when, active):
    assert school_day("Fri 22:00-06:00").active(at(when)) is active


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("Mon-Fri 08:30-15:30", {0, 1, 2, 3, 4}),
        ("sat-sun 00:00-24:00", {5, 6}),
        ("Mon,Wed,Fri 09:00-10:00", {0, 2, 4}),
        ("Fri-Mon 09:00-10:00", {4, 5, 6, 0}),  # wraps round the weekend
        ("weekdays 09:00-10:00", {0, 1, 2, 3, 4}),
        ("weekends 09:00-10:00", {5, 6}),
        ("daily 09:00-10:00", set(range(7))),
        ("Tuesday 09:00-10:00", {1}),
    ],
)
def test_day_forms(text, days):
    assert parse_window(text).days == days


def test_24_00_ends_at_midnight():
    s = school_day("Sat 16:00-24:00")
    assert s.active(at("2026-11-28 23:59:59"))
    assert not s.active(at("2026-11-29 00:00:00"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Mon-Fri", "is not DAYS HH:MM-HH:MM"),
        ("Mon-Fri 08:30", "is not a time range"),
        ("Mun-Fri 08:30-15:30", "'mun' is not a day"),
        ("Mon-Fri 8:75-15:30", "'8:75' is not a time of day"),
        ("Mon-Fri 08:30-24:30", "'24:30' is not a time of day"),
        ("Mon 09:00-09:00", "is empty"),
        ("Mon 24:00-06:00", "cannot start at 24:00"),
    ],
)
def test_bad_windows_say_what_is_wrong(text, message):
    with pytest.raises(ScheduleError, match=message):
        parse_window(text)
