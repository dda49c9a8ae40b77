"""The weekly summary for leaders and governors: safeguarding concerns by theme, group and
severity, this week against last, with no names and no addresses.

Only counts leave `build_weekly`; the number of different people is counted inside it and the
identities are dropped there.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ..files import write_atomically
from ..pages import Page
from ..store import StoreError
from ..wording import counted
from .reading import (
    SAFEGUARDING_SQL,
    THEME_TITLES,
    Person,
    illegal_list_of,
    iso_utc,
    local_midnight,
    printable,
    read_only,
)
from .rendering import safe_cell

__all__ = [
    "Trend",
    "WeeklySummary",
    "build_weekly",
    "render_weekly_csv",
    "render_weekly_html",
    "weekly_email_parts",
    "weekly_paths",
    "write_weekly",
]


@dataclass(frozen=True, slots=True)
class Trend:
    key: str
    title: str
    this_week: int
    last_week: int

    @property
    def change(self) -> int:
        return self.this_week - self.last_week

    @property
    def change_text(self) -> str:
        """`+3 (+50%)`, `-2 (-40%)`, `no change`, or `new` when last week had none."""
        if self.change == 0:
            return "no change"
        if self.last_week == 0:
            return f"+{self.this_week} (new)"
        percent = round(100 * self.change / self.last_week)
        return f"{self.change:+d} ({percent:+d}%)"

    @property
    def direction(self) -> str:
        """`up`, `down` or `same` (for the page's colour)."""
        return "up" if self.change > 0 else "down" if self.change < 0 else "same"


@dataclass(frozen=True, slots=True)
class WeeklySummary:
    school_name: str
    week_start: date
    """The Monday the week starts (school time)."""
    timezone: str
    generated_at: datetime
    total: Trend
    people: Trend
    """How many different people (users, else devices, else addresses) had a concern."""
    illegal: Trend
    """Illegal-list hits."""
    themes: tuple[Trend, ...]
    groups: tuple[Trend, ...]
    severities: tuple[Trend, ...]
    days: tuple[tuple[date, int], ...]
    """This week's concerns per day, Monday first."""
    theme_titles: Mapping[str, str] = field(default_factory=lambda: dict(THEME_TITLES))

    @property
    def week_end(self) -> date:
        return self.week_start + timedelta(days=6)

    @property
    def is_empty(self) -> bool:
        return self.total.this_week == 0 and self.total.last_week == 0


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def build_weekly(
    db_path: Path,
    week_of: date,
    tz: str,
    school_name: str,
    *,
    theme_titles: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> WeeklySummary:
    """The summary of the Monday-to-Sunday week holding `week_of`, against the week before."""
    zone = ZoneInfo(tz)
    monday = week_start(week_of)
    starts = [local_midnight(monday + timedelta(days=d), zone) for d in range(-7, 8)]
    begin, middle, end = starts[0], starts[7], starts[14]
    conn = read_only(db_path)
    try:
        rows = conn.execute(
            f"SELECT ts, user, device, client_ip, group_name, theme, severity, reason FROM events "  # noqa: S608 - constant text; values bound
            f"WHERE {SAFEGUARDING_SQL} AND ts >= ? AND ts < ?",
            (iso_utc(begin), iso_utc(end)),
        ).fetchall()
        # Bypass attempts the policy only logs or blocks carry a theme without a severity: they
        # are not in the DSL's daily report, but governors should see them counted.
        rows += conn.execute(
            "SELECT ts, user, device, client_ip, group_name, theme, severity, reason FROM events "
            "WHERE theme = 'circumvention' AND severity IS NULL AND ts >= ? AND ts < ? "
            "AND NOT coalesce(reason, '') LIKE 'illegal:%'",
            (iso_utc(begin), iso_utc(end)),
        ).fetchall()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the event store {db_path}: {e}") from None
    finally:
        conn.close()

    cut, day_starts = iso_utc(middle), [iso_utc(s) for s in starts[7:]]
    # Keys: "total", "illegal", and (kind, value) pairs for each theme, group and severity.
    counts: dict[str, Counter[str | tuple[str, str]]] = {w: Counter() for w in ("this", "last")}
    people: dict[str, set[Person]] = {"this": set(), "last": set()}
    per_day: Counter[int] = Counter()
    for ts, user, device, ip, group, theme, severity, reason in rows:
        week = "this" if ts >= cut else "last"
        illegal = illegal_list_of(reason) is not None
        c = counts[week]
        c["total"] += 1
        c["illegal"] += illegal
        c["theme", theme or ("illegal" if illegal else "unknown")] += 1
        c["group", group] += 1
        c["severity", severity or ("high" if illegal else "none")] += 1
        people[week].add(Person.of(user, device, ip))
        if week == "this":
            per_day[sum(ts >= s for s in day_starts) - 1] += 1
    titles = dict(THEME_TITLES) | dict(theme_titles or {})

    def trends(kind: str, order: list[str] | None = None) -> tuple[Trend, ...]:
        keys = {k[1] for c in counts.values() for k in c if isinstance(k, tuple) and k[0] == kind}
        ordered = [k for k in (order or []) if k in keys] + sorted(keys - set(order or []))
        out = [Trend(k, titles.get(k, k) if kind == "theme" else k,
                     counts["this"][kind, k], counts["last"][kind, k]) for k in ordered]
        if order is None:
            out.sort(key=lambda t: (-t.this_week, -t.last_week, t.key))
        return tuple(out)

    return WeeklySummary(
        school_name=school_name,
        week_start=monday,
        timezone=tz,
        generated_at=(now or datetime.now(UTC)).astimezone(UTC),
        total=Trend("total", "Safeguarding concerns", counts["this"]["total"],
                    counts["last"]["total"]),
        people=Trend("people", "Different people", len(people["this"]), len(people["last"])),
        illegal=Trend("illegal", "Illegal-content list hits", counts["this"]["illegal"],
                      counts["last"]["illegal"]),
        themes=trends("theme"),
        groups=trends("group"),
        severities=trends("severity", ["high", "medium", "low", "none"]),
        days=tuple((monday + timedelta(days=d), per_day[d]) for d in range(7)),
        theme_titles=titles,
    )


def render_weekly_html(summary: WeeklySummary, templates: Path | None = None) -> str:
    """A self-contained page (inline CSS, no script) with no names and no addresses, from
    `weekly.html` in `templates` (the school's folder) or the package's."""
    return Page("weekly.html", templates).render(s=summary, v=_View(summary))


def render_weekly_csv(summary: WeeklySummary) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(("section", "key", "title", "this_week", "last_week", "change"))
    for section, items in (
        ("overall", (summary.total, summary.people, summary.illegal)),
        ("theme", summary.themes),
        ("group", summary.groups),
        ("severity", summary.severities),
    ):
        for t in items:
            w.writerow(safe_cell(v) for v in (section, t.key, t.title, t.this_week, t.last_week,
                                               t.change))
    for day, count in summary.days:
        w.writerow(("day", day.isoformat(), f"{day:%A}", count, "", ""))
    return out.getvalue()


def weekly_paths(out_dir: Path, monday: date) -> tuple[Path, Path]:
    stem = f"weekly-summary-{monday.isoformat()}"
    return out_dir / f"{stem}.html", out_dir / f"{stem}.csv"


def write_weekly(summary: WeeklySummary, out_dir: Path,
                 templates: Path | None = None) -> tuple[Path, Path]:
    """Write `<out_dir>/weekly-summary-YYYY-MM-DD.html` and `.csv` (the Monday), each replaced
    whole and readable by its owner only."""
    html_path, csv_path = weekly_paths(out_dir, summary.week_start)
    write_atomically(html_path, render_weekly_html(summary, templates))
    write_atomically(csv_path, render_weekly_csv(summary))
    return html_path, csv_path


def weekly_email_parts(summary: WeeklySummary,
                       templates: Path | None = None) -> tuple[str, str, str]:
    """(subject, plain text, HTML) for leaders and governors."""
    v = _View(summary)
    subject = printable(f"{summary.school_name}: safeguarding summary, week of {v.week_text}")
    lines = [f"Safeguarding summary - {summary.school_name} - week of {v.week_text}", "",
             v.lead, ""]
    for heading, items in (("By theme", summary.themes), ("By group", summary.groups),
                           ("By severity", summary.severities)):
        if not items:
            continue
        lines.append(heading)
        for t in items:
            lines.append(f"  {printable(t.title)}: {t.this_week} (last week {t.last_week}, "
                         f"{t.change_text})")
        lines.append("")
    return subject, "\n".join(lines), render_weekly_html(summary, templates)


class _View:
    def __init__(self, summary: WeeklySummary):
        self.s = summary
        start, end = summary.week_start, summary.week_end
        self.week_text = f"{start.day} {start:%B %Y}"
        self.range_text = f"Monday {start.day} {start:%B} to Sunday {end.day} {end:%B %Y}"

    @property
    def lead(self) -> str:
        s = self.s
        if s.total.this_week == 0:
            text = "No safeguarding concerns this week"
            return text + (f" (last week {s.total.last_week})." if s.total.last_week else ".")
        text = (f"{counted(s.total.this_week, 'safeguarding concern')} this week involving "
                f"{counted(s.people.this_week, 'different person')}")
        if s.total.last_week == 0:
            return text + "; none the week before."
        return (text + f"; {s.total.last_week} the week before involving "
                f"{counted(s.people.last_week, 'person')} ({s.total.change_text}).")

    def bar(self, count: int) -> int:
        """A day's bar width in percent of the busiest day."""
        top = max((c for _, c in self.s.days), default=0)
        return round(100 * count / top) if top else 0

    def stamp(self, when: datetime) -> str:
        return f"{when.astimezone(ZoneInfo(self.s.timezone)):%Y-%m-%d %H:%M %Z}"
