"""The daily suspicious-search report the DSL reads: every flagged search and illegal-list hit of
one school day, grouped by person, most serious first, with each person's browsing either side.

`build_daily` reads the store (read-only) and returns plain data; `render_html`, `render_csv` and
`email_parts` only format it, so tests and the benchmark can check each step apart.
"""

from __future__ import annotations

import csv
import html
import io
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from markupsafe import Markup

from ..files import write_atomically
from ..pages import Page
from ..store import StoreError
from ..wording import counted
from .context import count_events, nearest, person_events
from .reading import (
    SAFEGUARDING_SQL,
    SELECT_SHOWN,
    SEVERITY_RANK,
    THEME_TITLES,
    Person,
    ShownEvent,
    iso_utc,
    local_day_range,
    printable,
    read_only,
)
from .rendering import safe_cell

__all__ = [
    "CSV_COLUMNS",
    "ContextWindow",
    "DailyReport",
    "Incident",
    "PersonSummary",
    "Term",
    "build_daily",
    "daily_paths",
    "email_parts",
    "render_csv",
    "render_html",
    "write_daily",
]

CONTEXT_MINUTES = 60
"""How far either side of an incident the report looks (REQUIREMENTS: an hour either side)."""
CONTEXT_ROWS = 6
"""Events shown on each side of each incident. The page must stay readable on a phone; the
window's total is shown with the command that prints every event in it."""


@dataclass(frozen=True, slots=True)
class Incident:
    """One flagged search (or page), or one illegal-list hit."""

    event: ShownEvent
    at: datetime
    """When, in the school's time zone."""
    repeat: int
    """How many times this person had this same concern that day (same normalised term and
    theme; for an illegal-list hit, the same host and list)."""


@dataclass(frozen=True, slots=True)
class Term:
    """One thing a person searched for (however they typed it), with how often and where."""

    typed: tuple[str, ...]
    """Each spelling as typed, most frequent first; for an illegal-list hit, the host only."""
    normalised: str | None
    matched_phrase: str | None
    theme: str
    severity: str
    """The highest severity among its incidents."""
    count: int
    first: datetime
    last: datetime
    engines: tuple[str, ...]
    illegal_list: str | None = None
    is_search: bool = False
    """Typed into a search engine (else an address or page that matched, or an illegal-list
    hit)."""


@dataclass(frozen=True, slots=True)
class ContextWindow:
    """The person's browsing from an hour before one incident to an hour after (overlapping
    hours of the same person are merged into one window)."""

    start: datetime
    end: datetime
    incidents: tuple[datetime, ...]
    total: int
    """Every event of the person in the window."""
    events: tuple[ShownEvent, ...]
    """The events shown: up to `CONTEXT_ROWS` either side of each incident, oldest first."""
    incident_ids: frozenset[int]
    command: str
    """The `schoolgate report context` command that prints every event in the window."""


@dataclass(frozen=True, slots=True)
class PersonSummary:
    """Everything flagged for one person that day: one section of the page."""

    person: Person
    severity: str
    """The highest severity among the person's incidents."""
    illegal: bool
    """An illegal-list hit is among them (ranks above any severity)."""
    count: int
    first: datetime
    last: datetime
    groups: tuple[str, ...]
    devices: tuple[str, ...]
    addresses: tuple[str, ...]
    themes: tuple[tuple[str, int], ...]
    """(theme, incidents), most first."""
    engines: tuple[str, ...]
    terms: tuple[Term, ...]
    incidents: tuple[Incident, ...]
    """Oldest first."""
    context: tuple[ContextWindow, ...]


@dataclass(frozen=True, slots=True)
class DailyReport:
    school_name: str
    day: date
    """The school's local day reported on."""
    timezone: str
    start: datetime
    """The day's first instant (UTC)."""
    end: datetime
    """The instant after its last (UTC): 23 or 25 hours after `start` when the clocks change."""
    generated_at: datetime
    events_total: int
    """Every event the store holds for that day, flagged or not (0 suggests the gateway was
    down or not recording)."""
    people: tuple[PersonSummary, ...]
    """Most serious first: an illegal-list hit, then the highest severity, then most incidents."""
    theme_titles: Mapping[str, str] = field(default_factory=lambda: dict(THEME_TITLES))

    @property
    def incidents(self) -> int:
        return sum(p.count for p in self.people)

    @property
    def is_empty(self) -> bool:
        return not self.people

    @property
    def by_severity(self) -> dict[str, int]:
        counts = Counter(i.event.severity for p in self.people for i in p.incidents)
        return {s: counts[s] for s in ("high", "medium", "low")}

    @property
    def by_theme(self) -> list[tuple[str | None, int]]:
        counts = Counter(i.event.theme for p in self.people for i in p.incidents)
        return counts.most_common()

    @property
    def illegal_hits(self) -> int:
        return sum(1 for p in self.people for i in p.incidents if i.event.illegal_list)

    @property
    def searches(self) -> int:
        """Flagged searches: incidents with a search term (an illegal-list hit never is one)."""
        return sum(1 for p in self.people for i in p.incidents if i.event.is_search)

    @property
    def pages(self) -> int:
        """Flagged pages: an address or page text that matched, with no search term."""
        return self.incidents - self.searches - self.illegal_hits

    @property
    def counts_text(self) -> str:
        """What was flagged and by how many people, each count with its unit: "1 flagged search
        and 1 illegal-list hit by 1 person"; "no suspicious searches" on an empty day."""
        if self.is_empty:
            return "no suspicious searches"
        what = [counted(n, unit) for n, unit in ((self.searches, "flagged search"),
                                                  (self.pages, "flagged page"),
                                                  (self.illegal_hits, "illegal-list hit")) if n]
        joined = ", ".join(what[:-1]) + " and " + what[-1] if len(what) > 1 else what[0]
        return f"{joined} by {counted(len(self.people), 'person')}"

    @property
    def clocks_change(self) -> bool:
        """The clocks go forward or back on this day: times then show their zone (GMT/BST)."""
        zone = ZoneInfo(self.timezone)
        return self.start.astimezone(zone).utcoffset() != self.end.astimezone(zone).utcoffset()

    def title(self, theme: str) -> str:
        return self.theme_titles.get(theme, theme)


def build_daily(
    db_path: Path,
    day: date,
    tz: str,
    school_name: str,
    *,
    theme_titles: Mapping[str, str] | None = None,
    context_rows: int = CONTEXT_ROWS,
    now: datetime | None = None,
) -> DailyReport:
    """The report for the school's local `day` in time zone `tz`, read through a read-only
    connection. Raises `StoreError` when the store cannot be read."""
    zone = ZoneInfo(tz)
    start, end = local_day_range(day, zone)
    conn = read_only(db_path)
    try:
        total = conn.execute(
            "SELECT count(*) FROM events WHERE ts >= ? AND ts < ?", (iso_utc(start), iso_utc(end))
        ).fetchone()[0]
        rows = conn.execute(
            f"{SELECT_SHOWN} WHERE {SAFEGUARDING_SQL} AND ts >= ? AND ts < ? ORDER BY ts, id",
            (iso_utc(start), iso_utc(end)),
        ).fetchall()
        by_person: dict[Person, list[ShownEvent]] = {}
        for row in rows:
            event = ShownEvent.from_row(row)
            by_person.setdefault(event.person, []).append(event)
        people = [
            _summarise(conn, person, events, zone, context_rows)
            for person, events in by_person.items()
        ]
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the event store {db_path}: {e}") from None
    finally:
        conn.close()
    people.sort(key=lambda p: (-p.illegal, -SEVERITY_RANK.get(p.severity, -1), -p.count,
                               p.first, p.person))
    return DailyReport(
        school_name=school_name,
        day=day,
        timezone=tz,
        start=start,
        end=end,
        generated_at=(now or datetime.now(UTC)).astimezone(UTC),
        events_total=total,
        people=tuple(people),
        theme_titles=dict(THEME_TITLES) | dict(theme_titles or {}),
    )


def _rank(severity: str | None) -> int:
    return SEVERITY_RANK.get(severity or "", -1)


def _term_key(e: ShownEvent) -> tuple:
    if e.illegal_list is not None:
        return ("illegal", e.illegal_list, e.host)
    text = e.search_normalised or (e.search_term or e.url or e.host or "").casefold()
    return (e.theme, text)


def _summarise(
    conn: sqlite3.Connection, person: Person, events: list[ShownEvent], zone: ZoneInfo, n: int
) -> PersonSummary:
    keys = [_term_key(e) for e in events]
    repeats = Counter(keys)
    incidents = tuple(
        Incident(e, e.ts.astimezone(zone), repeats[k]) for e, k in zip(events, keys, strict=True)
    )
    grouped: dict[tuple, list[Incident]] = {}
    for incident, key in zip(incidents, keys, strict=True):
        grouped.setdefault(key, []).append(incident)
    terms = [_term(items) for items in grouped.values()]
    terms.sort(key=lambda t: (t.illegal_list is None, -_rank(t.severity), -t.count, t.first))
    severity = max((e.severity or "low" for e in events), key=_rank)
    return PersonSummary(
        person=person,
        severity=severity,
        illegal=any(e.illegal_list for e in events),
        count=len(events),
        first=incidents[0].at,
        last=incidents[-1].at,
        groups=_distinct(e.group for e in events),
        devices=_distinct(e.device for e in events if e.device),
        addresses=_distinct(e.client_ip for e in events),
        themes=tuple(Counter(e.theme for e in events if e.theme).most_common()),
        engines=_distinct(e.engine for e in events if e.engine),
        terms=tuple(terms),
        incidents=incidents,
        context=tuple(_windows(conn, person, [i.event.ts for i in incidents],
                               frozenset(e.id for e in events), zone, n)),
    )


def _term(items: list[Incident]) -> Term:
    events = [i.event for i in items]
    first = events[0]
    if first.illegal_list is not None:
        typed: tuple[str, ...] = (first.host or "a site",)
    else:
        spellings = Counter(e.search_term or e.url or e.host or "" for e in events)
        typed = tuple(s for s, _ in spellings.most_common())
    return Term(
        typed=typed,
        normalised=first.search_normalised,
        matched_phrase=Counter(e.matched_phrase for e in events).most_common(1)[0][0],
        theme=first.theme or "",
        severity=max((e.severity or "low" for e in events), key=_rank),
        count=len(items),
        first=items[0].at,
        last=items[-1].at,
        engines=_distinct(e.engine for e in events if e.engine),
        illegal_list=first.illegal_list,
        is_search=first.is_search,
    )


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _windows(
    conn: sqlite3.Connection,
    person: Person,
    moments: list[datetime],
    flagged: frozenset[int],
    zone: ZoneInfo,
    n: int,
) -> list[ContextWindow]:
    span = timedelta(minutes=CONTEXT_MINUTES)
    # Merge overlapping hours: one window per stretch of activity, not one per search.
    merged: list[list[datetime]] = []
    for at in moments:
        if merged and at - span <= merged[-1][-1] + span:
            merged[-1].append(at)
        else:
            merged.append([at])
    windows = []
    for group in merged:
        start, end = group[0] - span, group[-1] + span
        total = count_events(conn, person, start, end)
        if total <= len(group) * (2 * n + 1):
            shown = person_events(conn, person, start, end)
        else:
            seen: dict[int, ShownEvent] = {}
            for at in group:
                for e in nearest(conn, person, at, start, end, n):
                    seen.setdefault(e.id, e)
            shown = sorted(seen.values(), key=lambda e: (e.ts, e.id))
        middle = start + (end - start) / 2
        minutes = math.ceil((end - start).total_seconds() / 120)
        at_text = middle.astimezone(zone).isoformat(timespec="seconds")
        windows.append(ContextWindow(
            start=start.astimezone(zone),
            end=end.astimezone(zone),
            incidents=tuple(at.astimezone(zone) for at in group),
            total=total,
            events=tuple(shown),
            incident_ids=frozenset(e.id for e in shown if e.id in flagged),
            command=f"schoolgate report context {person.option()} --at {at_text}"
            + ("" if minutes == CONTEXT_MINUTES else f" --minutes {minutes}"),
        ))
    return windows


# ---------------------------------------------------------------------------------------------
# Output


def render_html(report: DailyReport, templates: Path | None = None) -> str:
    """One self-contained page (inline CSS, no script, no external resource) that reads on a
    phone and in dark mode, from `daily.html` in `templates` (the school's folder) or the
    package's. Every value from the store is escaped by the template engine."""
    return Page("daily.html", templates).render(r=report, v=_View(report))


CSV_COLUMNS = (
    "person_rank",
    "person",
    "person_kind",
    "person_severity",
    "person_count",
    "time",
    "group",
    "user",
    "device",
    "client_ip",
    "engine",
    "search_term",
    "search_normalised",
    "matched_phrase",
    "theme",
    "severity",
    "action",
    "repeat_count",
    "host",
    "illegal_list",
    "reference",
)


def render_csv(report: DailyReport) -> str:
    """The page's rows, one line per incident, in the page's order. Times are school time with
    their UTC offset. A cell that a spreadsheet would run as a formula starts with an apostrophe."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for rank, p in enumerate(report.people, 1):
        for i in p.incidents:
            e = i.event
            w.writerow(safe_cell(v) for v in (
                rank, p.person.name, p.person.kind, p.severity, p.count,
                i.at.isoformat(timespec="seconds"), e.group, e.user, e.device, e.client_ip,
                e.engine, e.search_term, e.search_normalised, e.matched_phrase, e.theme,
                e.severity, e.action, i.repeat, e.host, e.illegal_list, e.reference,
            ))
    return out.getvalue()


def daily_paths(out_dir: Path, day: date) -> tuple[Path, Path]:
    stem = f"suspicious-searches-{day.isoformat()}"
    return out_dir / f"{stem}.html", out_dir / f"{stem}.csv"


def write_daily(report: DailyReport, out_dir: Path,
                templates: Path | None = None) -> tuple[Path, Path]:
    """Write `<out_dir>/suspicious-searches-YYYY-MM-DD.html` and `.csv`, each replaced whole
    and readable by its owner only (they name children and what they searched for)."""
    html_path, csv_path = daily_paths(out_dir, report.day)
    write_atomically(html_path, render_html(report, templates))
    write_atomically(csv_path, render_csv(report))
    return html_path, csv_path


def email_parts(report: DailyReport, templates: Path | None = None) -> tuple[str, str, str]:
    """(subject, plain text, HTML) for the DSL's e-mail. The subject names nobody: it shows on
    lock screens and in notification previews."""
    day = _day_text(report.day)
    if report.is_empty:
        subject = f"{report.school_name}: no suspicious searches on {day}"
    else:
        sev = report.by_severity
        serious = f", {report.illegal_hits} illegal-list" if report.illegal_hits else ""
        subject = (f"{report.school_name}: suspicious searches on {day}: "
                   f"{counted(len(report.people), 'person')}, {sev['high']} high{serious}")
    return printable(subject), render_text(report), render_html(report, templates)


def render_text(report: DailyReport) -> str:
    """The report as plain text (the e-mail's text part): each person and their terms, without
    the browsing context, which needs the HTML page or `schoolgate report context`."""
    day = _day_text(report.day)
    v = _View(report)
    lines = [f"Suspicious searches - {report.school_name} - {day}", ""]
    if report.is_empty:
        lines.append(v.empty_text)
        return "\n".join(lines) + "\n"
    lines += [v.summary_text, f"Times are school time ({report.timezone}).", ""]
    for rank, p in enumerate(report.people, 1):
        tag = "ILLEGAL-LIST HIT, " if p.illegal else ""
        lines.append(
            f"{rank}. [{tag}{p.severity.upper()}] {printable(p.person.name)} "
            f"({p.person.kind_text}; {', '.join(map(printable, p.groups))}): "
            f"{counted(p.count, 'time')}, {v.span(p.first, p.last)}"
        )
        for t in p.terms:
            lines.append(f"   - {v.term_text(t)}")
        for w in p.context:
            lines.append(f"   browsing {v.time(w.start)}-{v.time(w.end)}: {w.command}")
        lines.append("")
    return "\n".join(lines)


def _day_text(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


class _View:
    """Wording and formatting shared by the page, the text e-mail and the tests."""

    def __init__(self, report: DailyReport):
        self.r = report
        self.zone = ZoneInfo(report.timezone)
        self.day_text = _day_text(report.day)
        self._zoned = report.clocks_change

    def context_row(self, e: ShownEvent, incident: bool) -> Markup:
        """One event of a context window as a list item. The page's bulk (every window's rows),
        so built in one call with every value escaped, not through several template calls."""
        local = e.ts.astimezone(self.zone)
        clock = f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
        if self._zoned:
            clock += f" {local:%Z}"
        if local.date() != self.r.day:
            clock = f"{local:%a} {clock}"
        if e.flagged:
            concern = f"{self.r.title(e.theme or '')}, {e.severity}"
        else:
            concern = e.categories or ""
        esc = html.escape
        return Markup(  # noqa: S704 - every value escaped below
            f'<li class="act-{esc(e.action)}{" incident" if incident else ""}">'
            f'<time>{esc(clock)}</time><span class="act">{esc(e.action)}</span>'
            f'{esc(self.short(e.what()))}'
            + (f'<span class="concern">{esc(concern)}</span>' if concern else "")
            + "</li>"
        )

    @property
    def empty_text(self) -> str:
        return f"No suspicious searches on {self.day_text}. {self.empty_detail}"

    @property
    def empty_detail(self) -> str:
        if self.r.events_total == 0:
            return ("No events at all were recorded that day: check that the gateway was running "
                    "and recording.")
        recorded = counted(self.r.events_total, "event")
        return (f"Schoolgate recorded {recorded} that day; none matched a safeguarding keyword "
                "or an illegal-content list.")

    @property
    def summary_text(self) -> str:
        r = self.r
        sev = r.by_severity
        parts = [f"{sev[s]} {s}" for s in ("high", "medium", "low") if sev[s]]
        text = r.counts_text
        return f"{text[0].upper()}{text[1:]} ({', '.join(parts)})."

    @property
    def footer_count(self) -> str:
        return counted(self.r.events_total, "event")

    @staticmethod
    def terms_heading(p: PersonSummary) -> str:
        """The heading over a person's terms: searches only when every one was a search."""
        if all(t.is_search for t in p.terms):
            return "Searches"
        return "Searches and sites" if any(t.is_search for t in p.terms) else "Sites"

    def time(self, when: datetime, seconds: bool = False) -> str:
        local = when.astimezone(self.zone)
        text = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
        if self._zoned:
            text += f" {local:%Z}"
        if local.date() != self.r.day:
            text = f"{local:%a} {text}"
        return text

    def stamp(self, when: datetime) -> str:
        return f"{when.astimezone(self.zone):%Y-%m-%d %H:%M %Z}"

    def span(self, first: datetime, last: datetime) -> str:
        return self.time(first) if first == last else f"{self.time(first)} to {self.time(last)}"

    def term_text(self, t: Term) -> str:
        if t.illegal_list is not None:
            return (f"{printable(t.typed[0])}: on the illegal-content list {t.illegal_list}, "
                    f"{counted(t.count, 'time')}, {self.span(t.first, t.last)}")
        typed = " / ".join(f'"{printable(s)}"' for s in t.typed)
        engines = f" on {', '.join(t.engines)}" if t.engines else ""
        phrase = f' (matched "{printable(t.matched_phrase)}")' if t.matched_phrase else ""
        return (f"{typed}{phrase}: {self.r.title(t.theme)}, {t.severity}, "
                f"{counted(t.count, 'time')}{engines}, {self.span(t.first, t.last)}")

    @staticmethod
    def short(text: str, limit: int = 160) -> str:
        return text if len(text) <= limit else text[: limit - 1] + "…"

    @staticmethod
    def n(count: int, one: str, many: str | None = None) -> str:
        return counted(count, one, many)
