"""One person's records, for a subject-access request or a meeting with parents: every event the
store holds for a user, as CSV (for a spreadsheet) and JSON (for anything else), each opening
with a block that says what it is, what it covers and what it leaves out.

Illegal-list hits appear with their host and list only, as everywhere else: the lists' entries are
licensed and confidential, and the law on indecent images forbids passing the address on.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from ..files import replacing
from ..store import StoreError
from ..wording import counted
from .reading import SELECT_SHOWN, ShownEvent, iso_utc, read_only
from .rendering import safe_cell

__all__ = ["EXPORT_COLUMNS", "Export", "export_user"]

EXPORT_COLUMNS = (
    ("time_utc", "when, in UTC"),
    ("time_local", "when, in school time"),
    ("user", "the signed-in user"),
    ("device", "the device's name, when known"),
    ("client_ip", "the device's address on the school network"),
    ("group", "the filtering policy group that applied"),
    ("action", "allow, block or error (a filtering error, blocked to be safe)"),
    ("method", "the request's HTTP method"),
    ("host", "the site"),
    ("url", "the address asked for (withheld for illegal-list hits)"),
    ("engine", "the search engine, for a search"),
    ("search_term", "the search as typed"),
    ("search_normalised", "the search as the keyword matcher read it"),
    ("matched_phrase", "the safeguarding keyword it matched"),
    ("page_score", "for a page judged by its text, its keyword score"),
    ("page_phrases", "for a page judged by its text, the keywords that weighed most"),
    ("theme", "the safeguarding theme"),
    ("severity", "high, medium or low"),
    ("categories", "the site's categories"),
    ("matched_rule", "the policy rule that decided"),
    ("reason", "a short code for the decision"),
    ("illegal_list", "the illegal-content list, for a hit on one"),
    ("reference", "the reference shown on the block page"),
)


@dataclass(frozen=True, slots=True)
class Export:
    csv_path: Path
    json_path: Path
    rows: int
    first: datetime | None
    last: datetime | None


def _filename_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "user"


def export_user(
    db_path: Path,
    user: str,
    out_dir: Path,
    *,
    tz: str,
    school_name: str,
    since: datetime | None = None,
    now: datetime | None = None,
    retention: str = "",
) -> Export:
    """Write `<out_dir>/export-<user>-<time>.csv` and `.json` (owner-only) with every event of
    `user` (from `since`, if given), oldest first. `retention` is a sentence saying how long the
    store keeps each kind of record, printed in the header so the reader knows what is gone."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    zone = ZoneInfo(tz)
    stem = f"export-{_filename_part(user)}-{now.astimezone(zone):%Y%m%d-%H%M%S}"
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    params: tuple = (user,) if since is None else (user, iso_utc(since))
    sql = (f"{SELECT_SHOWN} WHERE user = ?" + ("" if since is None else " AND ts >= ?")
           + " ORDER BY ts, id")
    conn = read_only(db_path)
    try:
        # Two passes over an indexed range: the header states the row count and the period
        # before the rows, and nothing the size of two years of one person's browsing is held in
        # memory.
        count, lo, hi = conn.execute(
            "SELECT count(*), min(ts), max(ts) FROM events WHERE user = ?"  # noqa: S608 - constant text; values bound
            + ("" if since is None else " AND ts >= ?"), params
        ).fetchone()
        about = _about(user, school_name, tz, since, now, count, lo, hi, retention)
        # Each file appears whole or not at all: an export cut short leaves nothing behind.
        with _text(csv_path) as c, _text(json_path) as j:
            for line in _header_lines(about):
                c.write(f"# {line}\r\n")
            w = csv.writer(c, lineterminator="\r\n")
            w.writerow(name for name, _ in EXPORT_COLUMNS)
            j.write('{\n"about": ' + json.dumps(about, ensure_ascii=False, indent=1)
                    + ',\n"events": [\n')
            for i, row in enumerate(conn.execute(sql, params)):
                record = _record(ShownEvent.from_row(row), zone)
                w.writerow(safe_cell(v) for v in record.values())
                j.write(("," if i else "") + json.dumps(record, ensure_ascii=False) + "\n")
            j.write("]\n}\n")
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the event store {db_path}: {e}") from None
    finally:
        conn.close()

    def parse(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))

    return Export(csv_path, json_path, count, parse(lo), parse(hi))


def _record(e: ShownEvent, zone: ZoneInfo) -> dict[str, str | None]:
    return {
        "time_utc": iso_utc(e.ts),
        "time_local": e.ts.astimezone(zone).isoformat(timespec="seconds"),
        "user": e.user,
        "device": e.device,
        "client_ip": e.client_ip,
        "group": e.group,
        "action": e.action,
        "method": e.method,
        "host": e.host,
        "url": e.url,
        "engine": e.engine,
        "search_term": e.search_term,
        "search_normalised": e.search_normalised,
        "matched_phrase": e.matched_phrase,
        "page_score": None if e.page_score is None else f"{e.page_score:g}",
        "page_phrases": e.page_phrases,
        "theme": e.theme,
        "severity": e.severity,
        "categories": e.categories,
        "matched_rule": e.matched_rule,
        "reason": e.reason,
        "illegal_list": e.illegal_list,
        "reference": e.reference,
    }


def _about(user: str, school_name: str, tz: str, since: datetime | None, now: datetime,
           count: int, lo: str | None, hi: str | None, retention: str) -> dict:
    return {
        "what": f"Every web filtering record {school_name} holds for the user {user!r}",
        "school": school_name,
        "user": user,
        "generated_at": iso_utc(now),
        "period_requested": f"from {iso_utc(since)}" if since else "everything held",
        "records": count,
        "first_record": lo,
        "last_record": hi,
        "time_zone": tz,
        "not_included": (
            "Records made while the person was not signed in (known only by a device name or "
            "an IP address) cannot be told apart from other people's and are not included. "
            "Records older than the retention periods have already been deleted."
        ),
        "withheld": (
            "For visits to sites on an illegal-content list (IWF, police CTIRU) only the site's "
            "host and the list's name are shown: the lists are licensed and confidential."
        ),
        "retention": retention,
        "columns": dict(EXPORT_COLUMNS),
    }


def _header_lines(about: dict) -> list[str]:
    lines = [
        about["what"],
        f"Generated {about['generated_at']} (UTC); times below are UTC and school time "
        f"({about['time_zone']}).",
        f"Period: {about['period_requested']}; {counted(about['records'], 'record')}"
        + (f", from {about['first_record']} to {about['last_record']}." if about["records"]
           else "."),
        about["not_included"],
        about["withheld"],
    ]
    if about["retention"]:
        lines.append(about["retention"])
    lines.append("Columns: " + "; ".join(f"{k}: {v}" for k, v in about["columns"].items()))
    # A header line is a comment to a person; no value in it may start a new CSV row.
    return [" ".join(line.split()) for line in lines]


@contextlib.contextmanager
def _text(path: Path) -> Iterator[TextIO]:
    """A text file only its owner can read, in place once the block ends without an error."""
    with replacing(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        yield text
