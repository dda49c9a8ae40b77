"""The config's time syntax: schedule windows (`Mon-Fri 08:30-15:30`) and the days and times the
gateway runs the filter check (`Mon 07:00`). Each parser raises `ScheduleError` (a ValueError)
whose message shows the right form; the loader reports it at the file and line.
"""

from __future__ import annotations

import re
from datetime import time

from .model import RunTime, Window

__all__ = ["DAYS", "ScheduleError", "parse_run_time", "parse_window"]

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


def parse_run_time(text: str) -> RunTime:
    """Read `DAYS HH:MM` (DAYS as in schedules: `Mon`, `Mon-Fri`, `Mon,Thu`, `daily`,
    `weekdays`, `weekends`). Raises ValueError saying what is wrong."""
    parts = text.split()
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", parts[1]) if len(parts) == 2 else None
    if m is None:
        raise ValueError(f"{text!r} is not DAYS HH:MM, such as 'Mon 07:00' or 'weekdays 06:45'")
    try:
        days = parse_window(f"{parts[0]} 00:00-24:00").days
    except ScheduleError as e:
        raise ValueError(str(e).replace(" 00:00-24:00", "")) from None
    return RunTime(days, time(int(m[1]), int(m[2])), text)

