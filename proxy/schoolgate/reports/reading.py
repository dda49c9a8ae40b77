"""Reading the event store for reports: read-only connections, the school's day as a UTC range,
who a "person" is, and what may be shown of an event (never an illegal-list entry).

Everything that decides which rows a report, the context view, an export or the purge touches is
here, so the SQL fragments the indexes of migration 5 were built for are written once.
"""

from __future__ import annotations

import shlex
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ..events import THEME_TITLES as _LIBRARY_THEME_TITLES
from ..store import StoreError, connect

__all__ = [
    "ILLEGAL_SQL",
    "SAFEGUARDING_SQL",
    "THEME_TITLES",
    "Person",
    "ShownEvent",
    "illegal_list_of",
    "iso_utc",
    "local_day_range",
    "parse_iso",
    "printable",
    "read_only",
    "recorded_before",
]

SAFEGUARDING_SQL = "((theme IS NOT NULL AND severity IS NOT NULL) OR reason LIKE 'illegal:%')"
"""A safeguarding event: a flagged search (or page) with a theme and severity, or an illegal-list
hit. Written exactly as the partial index `events_safeguarding_ts` (migration 5) is, because
SQLite only uses a partial index when the query repeats its condition term for term."""

ILLEGAL_SQL = "reason LIKE 'illegal:%'"

THEME_TITLES: dict[str, str] = {**_LIBRARY_THEME_TITLES, "illegal": "Illegal-content list"}
"""Headings for people, as in the keyword libraries' `title:`; an unknown theme shows its code."""

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}

def read_only(db_path: Path) -> sqlite3.Connection:
    """A connection that cannot write, so a report never holds a lock the gateway's writer
    needs (WAL readers never block the writer)."""
    if not db_path.exists():
        raise StoreError(f"no event store at {db_path}: has the gateway run with this config?")
    return connect(db_path, "read", what="the event store")


def recorded_before(db_path: Path, when: datetime) -> bool:
    """The store holds an event from before `when`: the gateway was recording by then. Raises
    `StoreError` when the store cannot be read."""
    conn = read_only(db_path)
    try:
        return conn.execute("SELECT 1 FROM events WHERE ts < ? LIMIT 1",
                            (iso_utc(when),)).fetchone() is not None
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the event store {db_path}: {e}") from None
    finally:
        conn.close()


def iso_utc(when: datetime) -> str:
    """`when` as the store writes times: UTC, milliseconds, `Z`. Text in this form sorts in time
    order, so ranges are plain string comparisons that use the `ts` indexes."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """A stored `ts` (`...Z`) as an aware UTC datetime."""
    return datetime.fromisoformat(text)


def illegal_list_of(reason: str | None) -> str | None:
    """The illegal-content list named by an event's reason (`illegal:<list>`), else None.
    Case-blind, as SQL's LIKE is, so Python never shows what a query treated as a hit."""
    if reason is not None and reason[:8].lower() == "illegal:":
        return reason[8:] or "unnamed"
    return None


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of `day` in `tz`. Where a zone skips midnight (some change their clocks
    at 00:00), the day starts when the clock reads the first time that exists."""
    # fold=0 reads a wall time in a gap with the offset before it, which for the gap's first
    # moment is exactly the instant the clocks change.
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def local_day_range(day: date, tz: str | ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of the school's local `day`: 23 hours on the day the clocks go
    forward, 25 on the day they go back."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)


@dataclass(frozen=True, slots=True, order=True)
class Person:
    """Who an event is about: the signed-in user, else the device, else the client IP address.
    Reports say which, because an IP address on guest Wi-Fi may be several people in a day."""

    kind: str
    """`user`, `device` or `ip`."""
    name: str

    @classmethod
    def of(cls, user: str | None, device: str | None, client_ip: str) -> Person:
        if user:
            return cls("user", user)
        if device:
            return cls("device", device)
        return cls("ip", client_ip)

    @property
    def kind_text(self) -> str:
        return {
            "user": "user",
            "device": "device (no user signed in)",
            "ip": "IP address (no user or device known)",
        }[self.kind]

    def condition(self) -> tuple[str, tuple[str, ...]]:
        """SQL selecting this person's events, written so one index serves it: (user, ts),
        the partial (device, ts) of migration 5, or (client_ip, ts)."""
        if self.kind == "user":
            return "user = ?", (self.name,)
        if self.kind == "device":
            return "user IS NULL AND device = ?", (self.name,)
        return "user IS NULL AND device IS NULL AND client_ip = ?", (self.name,)

    def option(self) -> str:
        """The `schoolgate report context` option that names this person."""
        return f"--{self.kind} {_shell_quote(self.name)}"


def _shell_quote(text: str) -> str:
    return shlex.quote(text)


def printable(text: str) -> str:
    """`text` with every control character escaped. Terms are typed by anyone: no terminal
    escape sequence reaches a technician's terminal, and no line break forges an e-mail line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


@dataclass(frozen=True, slots=True)
class ShownEvent:
    """An event as a report may show it. For an illegal-list hit only the host and the list's
    name survive: the URL, search term and matched text may be the list's confidential entry."""

    id: int
    ts: datetime
    """UTC."""
    user: str | None
    device: str | None
    client_ip: str
    group: str
    action: str
    host: str | None
    url: str | None
    method: str | None
    search_term: str | None
    search_normalised: str | None
    matched_phrase: str | None
    engine: str | None
    categories: str | None
    matched_rule: str | None
    theme: str | None
    severity: str | None
    reason: str | None
    reference: str | None
    illegal_list: str | None
    """The illegal-content list's name when this is an illegal-list hit."""
    page_score: float | None = None
    """For a page judged by its text: its keyword score."""
    page_phrases: str | None = None
    """For a page judged by its text: the library's phrases that weighed most, comma-separated."""

    @property
    def person(self) -> Person:
        return Person.of(self.user, self.device, self.client_ip)

    @property
    def is_search(self) -> bool:
        """A search: the event has a search term. An illegal-list hit never is one (its term is
        withheld, and it was a visit to a listed site, not a search)."""
        return self.illegal_list is None and self.search_term is not None

    @property
    def flagged(self) -> bool:
        if self.illegal_list is not None:
            return True
        return self.theme is not None and self.severity is not None

    @classmethod
    def from_row(cls, row: tuple) -> ShownEvent:
        """An event from a row of `SELECT_SHOWN`."""
        (id_, ts, user, device, client_ip, group, action, host, url, method, term, normalised,
         phrase, engine, categories, rule, theme, severity, reason, reference, page_score,
         page_phrases) = row
        illegal = illegal_list_of(reason)
        if illegal is not None:
            url = term = normalised = phrase = rule = None
            theme, severity = theme or "illegal", severity or "high"
        return cls(id_, datetime.fromisoformat(ts), user, device, client_ip, group, action, host,
                   url, method, term, normalised, phrase, engine, categories, rule, theme,
                   severity, reason, reference, illegal, page_score, page_phrases)

    def what(self) -> str:
        """One line saying what was asked for, for tables and plain-text views."""
        if self.illegal_list is not None:
            return f"{self.host or 'a site'} (on the illegal-content list {self.illegal_list})"
        if self.search_term is not None:
            engine = f" on {self.engine}" if self.engine else ""
            return f"search{engine}: {self.search_term}"
        if self.page_phrases:
            return f"page {self.url or self.host or ''} (words: {self.page_phrases})"
        return self.url or self.host or ""


SELECT_SHOWN = (
    "SELECT id, ts, user, device, client_ip, group_name, action, host, url, method, search_term, "
    "search_normalised, matched_phrase, engine, categories, matched_rule, theme, severity, "
    "reason, reference, page_score, page_phrases FROM events"
)
"""The columns `ShownEvent.from_row` reads, in its field order."""
