"""When the gateway runs the filter check itself: the next instant one of the config's
`check.schedule` times (`DAYS HH:MM`, school time) falls, by the reports' own clock arithmetic."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from ..config.model import RunTime
from ..reports.scheduler import next_at

__all__ = ["next_run"]


def next_run(after: datetime, times: Sequence[RunTime], timezone: str) -> datetime | None:
    """The first instant (UTC) strictly after `after` at which one of `times` falls, or None
    when there are none."""
    zone = ZoneInfo(timezone)
    best: datetime | None = None
    for t in times:
        for day in t.days:
            when = next_at(after, t.at, zone, day)
            if best is None or when < best:
                best = when
    return best
