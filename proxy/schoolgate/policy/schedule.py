"""Named time windows in the school's time zone ("Mon-Fri 08:30-15:30"), for policies that
change with the school day: social networks blocked for pupils in lessons, allowed for staff after
16:00. Pure code: the caller passes the time, so tests and `why --at` can choose it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["DAYS", "Schedule", "ScheduleError", "Window", "parse_window"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ALIASES = {
    "daily": frozenset(range(7)),
    "weekdays": frozenset(range(5)),
    "weekends": frozenset((5, 6)),
}
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


class ScheduleError(ValueError):
    """A window that cannot be read; the message says what is wrong and shows the right form."""


@dataclass(frozen=True, slots=True)
class Window:
    """Some days of the week and a time of day range, start included and end excluded."""

    days: frozenset[int]
    """Days the window starts on, Monday 0 to Sunday 6."""
    start: int
    """Seconds after local midnight."""
    end: int
    """Seconds after local midnight (86400 for 24:00). Before `start`, the window runs past
    midnight into the next day: "Fri 22:00-06:00" covers Saturday until 06:00."""
    text: str
    """The window as written in the config."""

    def covers(self, weekday: int, second: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= second < self.end
        # Overnight: the evening part on a listed day, the morning part on the day after one.
        return (weekday in self.days and second >= self.start) or (
            (weekday - 1) % 7 in self.days and second < self.end
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    """A named set of windows, such as `school_day`."""

    name: str
    title: str
    windows: tuple[Window, ...]
    timezone: str = "Europe/London"
    """IANA zone the windows are read in: the school's, so lessons start at 08:30 on the clock
    on the wall in winter and in summer alike."""

    def active(self, when: float) -> bool:
        """Whether `when` (a Unix time) falls in one of the windows."""
        local = datetime.fromtimestamp(when, _zone(self.timezone))
        second = local.hour * 3600 + local.minute * 60 + local.second
        weekday = local.weekday()
        return any(w.covers(weekday, second) for w in self.windows)


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)  # ZoneInfo caches instances by key itself


def parse_window(text: str) -> Window:
    """Read `DAYS HH:MM-HH:MM`, where DAYS is a day (`Mon`), a range (`Mon-Fri`, `Sat-Sun`), a
    comma list (`Mon,Wed,Fri`) or `daily`, `weekdays`, `weekends`; `24:00` ends at midnight."""
    parts = text.split()
    if len(parts) != 2:
        raise ScheduleError(f"{text!r} is not DAYS HH:MM-HH:MM, such as 'Mon-Fri 08:30-15:30'")
    days = _days(parts[0])
    start_text, dash, end_text = parts[1].partition("-")
    if not dash:
        raise ScheduleError(f"{parts[1]!r} is not a time range HH:MM-HH:MM, such as 08:30-15:30")
    start, end = _seconds(start_text), _seconds(end_text)
    if start == end:
        raise ScheduleError(f"{parts[1]!r} is empty: the start and end are the same time")
    if start == 86400:
        raise ScheduleError("a window cannot start at 24:00; use 00:00 on the next day")
    return Window(days, start, end, text)


def _days(text: str) -> frozenset[int]:
    t = text.lower()
    if t in _ALIASES:
        return _ALIASES[t]
    out: set[int] = set()
    for item in t.split(","):
        first, dash, last = item.partition("-")
        a = _day(first, text)
        if not dash:
            out.add(a)
            continue
        b = _day(last, text)
        # Fri-Mon wraps round the weekend.
        out.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(out)


def _day(name: str, whole: str) -> int:
    if name in DAYS:
        return DAYS.index(name)
    if name in _FULL_DAYS:
        return _FULL_DAYS.index(name)
    raise ScheduleError(
        f"{whole!r}: {name!r} is not a day (use Mon, Tue, Wed, Thu, Fri, Sat, Sun, ranges such "
        "as Mon-Fri, or daily, weekdays, weekends)"
    )


def _seconds(text: str) -> int:
    m = _TIME.match(text)
    if not m or (m[1] == "24" and m[2] != "00"):
        raise ScheduleError(f"{text!r} is not a time of day HH:MM (00:00 to 24:00)")
    return int(m[1]) * 3600 + int(m[2]) * 60


def any_active(schedules: Iterable[Schedule], when: float) -> bool:
    return any(s.active(when) for s in schedules)
