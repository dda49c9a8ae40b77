"""A person's browsing either side of a moment: what the DSL reads around a flagged search or a
block (`schoolgate report context`, and each incident of the daily report).

Every query selects one person's events in a time range through an index that starts with that
person (user, device or IP) and then `ts`, so it costs the rows it returns, not the table.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ..store import StoreError, events_by_reference
from ..wording import counted
from .reading import SELECT_SHOWN, Person, ShownEvent, iso_utc, parse_iso, printable, read_only

__all__ = ["Around", "context_around", "context_for_reference", "format_context", "nearest"]


@dataclass(frozen=True, slots=True)
class Around:
    """Every event of one person within `minutes` either side of `at`."""

    person: Person
    at: datetime
    """The moment asked about (UTC)."""
    minutes: int
    events: tuple[ShownEvent, ...]
    """Oldest first."""
    incident_ids: frozenset[int] = frozenset()
    """Events that are the incident itself (marked in the table)."""


def person_events(
    conn: sqlite3.Connection, person: Person, start: datetime, end: datetime
) -> list[ShownEvent]:
    """One person's events with start <= ts <= end, oldest first."""
    where, params = person.condition()
    rows = conn.execute(
        f"{SELECT_SHOWN} WHERE {where} AND ts >= ? AND ts <= ? ORDER BY ts, id",
        (*params, iso_utc(start), iso_utc(end)),
    ).fetchall()
    return [ShownEvent.from_row(r) for r in rows]


def count_events(conn: sqlite3.Connection, person: Person, start: datetime, end: datetime) -> int:
    """How many events one person has with start <= ts <= end (answered from the index alone)."""
    where, params = person.condition()
    return conn.execute(
        f"SELECT count(*) FROM events WHERE {where} AND ts >= ? AND ts <= ?",  # noqa: S608 - condition from Person; values bound
        (*params, iso_utc(start), iso_utc(end)),
    ).fetchone()[0]


def nearest(
    conn: sqlite3.Connection, person: Person, at: datetime, start: datetime, end: datetime, n: int
) -> list[ShownEvent]:
    """Up to `n` of the person's events before `at` and `n` from `at` on, within [start, end]:
    a bounded view of a busy hour. Two index walks outward from `at`; oldest first."""
    where, params = person.condition()
    moment = iso_utc(at)
    before = conn.execute(
        f"{SELECT_SHOWN} WHERE {where} AND ts >= ? AND ts < ? ORDER BY ts DESC, id DESC LIMIT ?",
        (*params, iso_utc(start), moment, n),
    ).fetchall()
    after = conn.execute(
        f"{SELECT_SHOWN} WHERE {where} AND ts >= ? AND ts <= ? ORDER BY ts, id LIMIT ?",
        (*params, moment, iso_utc(end), n + 1),
    ).fetchall()
    return [ShownEvent.from_row(r) for r in (*reversed(before), *after)]


def context_around(
    db_path: Path, person: Person, at: datetime, minutes: int = 60
) -> Around:
    """Every event of `person` from `minutes` before `at` to `minutes` after (`at` aware)."""
    span = timedelta(minutes=minutes)
    conn = read_only(db_path)
    try:
        events = person_events(conn, person, at - span, at + span)
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the event store {db_path}: {e}") from None
    finally:
        conn.close()
    return Around(person, at, minutes, tuple(events))


def context_for_reference(db_path: Path, reference: str, minutes: int = 60) -> Around | None:
    """The context around the event a block page or alert reference points to; None if no event
    carries it. When several do (references are random, not unique), the newest is used."""
    rows = events_by_reference(db_path, reference)
    if not rows:
        return None
    row = rows[0]
    person = Person.of(row["user"], row["device"], row["client_ip"])
    around = context_around(db_path, person, parse_iso(row["ts"]), minutes)
    ids = frozenset(r["id"] for r in rows)
    return Around(around.person, around.at, minutes, around.events, ids)


def format_context(around: Around, tz: str) -> str:
    """A plain-text table for a terminal: one line per event, in the school's time zone."""
    zone = ZoneInfo(tz)
    at = around.at.astimezone(zone)
    lines = [
        f"{around.person.kind_text} {printable(around.person.name)}: "
        f"{counted(len(around.events), 'event')} from "
        f"{counted(around.minutes, 'minute')} before to {counted(around.minutes, 'minute')} after "
        f"{at:%Y-%m-%d %H:%M:%S %Z}",
        "",
    ]
    if not around.events:
        lines.append("no events in this period")
        return "\n".join(lines) + "\n"
    header = f"  {'time':19} {'action':6} {'group':12} {'concern':24} what"
    lines.append(header)
    for e in around.events:
        mark = ">" if e.id in around.incident_ids else " "
        concern = f"{e.theme} ({e.severity})" if e.flagged else (e.categories or "")
        local = e.ts.astimezone(zone)
        lines.append(
            f"{mark} {local:%Y-%m-%d %H:%M:%S} {e.action:6} {_cut(printable(e.group), 12):12} "
            f"{_cut(concern, 24):24} {printable(e.what())}"
        )
    return "\n".join(lines) + "\n"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
