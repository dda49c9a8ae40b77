"""Problem reports in the store: "this should not be blocked" (from a block page) and "this should
be blocked" (from the small form), each with who sent it, until a technician approves or denies
it with `schoolgate requests`.

Writers are the gateway (one short transaction per report, in a thread, off the event loop) and
the CLI; readers use read-only connections. The table comes from migration 6.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from . import StoreError, _iso
from .connections import connect

__all__ = [
    "KINDS",
    "NewReport",
    "ProblemReport",
    "STATUSES",
    "add_report",
    "decide_report",
    "read_report",
    "read_reports",
    "reopen_report",
]

KINDS = ("unblock", "block")
STATUSES = ("open", "approved", "denied")

_COLUMNS = ("ts", "kind", "url", "host", "reference", "reason", "user", "device", "client_ip",
            "group_name", "status", "decided_ts", "decided_by", "decision_note", "override_scope")


@dataclass(frozen=True, slots=True)
class NewReport:
    """A report as the gateway received it, before it has a number."""

    kind: str
    """`unblock` (this should not be blocked) or `block` (this should be blocked)."""
    url: str
    host: str
    reason: str
    client_ip: str
    group: str
    reference: str | None = None
    """The block page's reference, for an unblock report."""
    user: str | None = None
    device: str | None = None
    ts: float | None = None
    """Unix time; None means now."""


@dataclass(frozen=True, slots=True)
class ProblemReport:
    """One stored report. `id` is the request number the person was given."""

    id: int
    ts: str
    """UTC, ISO 8601 with milliseconds and Z."""
    kind: str
    url: str | None
    """None once redacted: the URL was found on an illegal-content list after it was sent."""
    host: str
    reference: str | None
    reason: str
    user: str | None
    device: str | None
    client_ip: str
    group_name: str
    status: str
    """`open`, `approved` or `denied`."""
    decided_ts: str | None
    decided_by: str | None
    decision_note: str | None
    override_scope: str | None
    """`all groups` or the groups the allow or block was made for, once approved."""

    def as_dict(self) -> dict:
        return {"number": self.id, **{c: getattr(self, c) for c in _COLUMNS}}


def add_report(path: Path, report: NewReport) -> tuple[int, bool]:
    """Store `report` (blocking: call it in a thread from the gateway); return its number and
    whether it is new. A second unblock report for the same block page (a double click, or the
    page sent again) returns the first one's number instead of storing a copy."""
    conn = connect(path, "write")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if report.reference is not None:
                row = conn.execute(
                    "SELECT id FROM problem_reports WHERE reference = ? AND kind = ? "
                    "ORDER BY id LIMIT 1",
                    (report.reference, report.kind),
                ).fetchone()
                if row is not None:
                    conn.execute("COMMIT")
                    return int(row[0]), False
            cur = conn.execute(
                "INSERT INTO problem_reports (ts, kind, url, host, reference, reason, user, "
                "device, client_ip, group_name, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "'open')",
                (_iso(time.time() if report.ts is None else report.ts), report.kind, report.url,
                 report.host, report.reference, report.reason, report.user, report.device,
                 report.client_ip, report.group),
            )
            conn.execute("COMMIT")
            return int(cur.lastrowid or 0), True
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as e:
        raise StoreError(f"cannot store a problem report in {path}: {e}") from None
    finally:
        conn.close()


def read_reports(path: Path, status: str | None = "open") -> list[ProblemReport]:
    """Reports with `status` (None: every one), oldest first. [] before migration 6."""
    if not path.exists():
        return []
    sql = f"SELECT id, {', '.join(_COLUMNS)} FROM problem_reports"  # noqa: S608 - column constants; values bound
    args: tuple = ()
    if status is not None:
        sql += " WHERE status = ?"
        args = (status,)
    return _read(path, sql + " ORDER BY id", args)


def read_report(path: Path, number: int) -> ProblemReport | None:
    if not path.exists():
        return None
    rows = _read(path, f"SELECT id, {', '.join(_COLUMNS)} FROM problem_reports WHERE id = ?",  # noqa: S608 - column constants; values bound
                 (number,))
    return rows[0] if rows else None


def _read(path: Path, sql: str, args: tuple) -> list[ProblemReport]:
    conn = connect(path, "read")
    try:
        rows = conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []  # a store from before problem reports: none sent yet
        raise StoreError(f"cannot read the problem reports in {path}: {e}") from None
    finally:
        conn.close()
    return [ProblemReport(*r) for r in rows]


def decide_report(path: Path, number: int, *, status: str, by: str, note: str | None = None,
                  scope: str | None = None, redact_url: bool = False,
                  ts: float | None = None) -> bool:
    """Mark an open report `approved` or `denied`. False when it is not open (any more): two
    technicians acting on one report at once cannot both decide it. `redact_url` forgets the
    URL (it is on an illegal-content list)."""
    if status not in ("approved", "denied"):
        raise ValueError(f"status {status!r}")
    conn = connect(path, "write")
    try:
        cur = conn.execute(
            "UPDATE problem_reports SET status = ?, decided_ts = ?, decided_by = ?, "  # noqa: S608 - constant text; values bound
            "decision_note = ?, override_scope = ?"
            + (", url = NULL" if redact_url else "")
            + " WHERE id = ? AND status = 'open'",
            (status, _iso(time.time() if ts is None else ts), by, note, scope, number),
        )
        return cur.rowcount == 1
    except sqlite3.Error as e:
        raise StoreError(f"cannot update problem report {number} in {path}: {e}") from None
    finally:
        conn.close()


def reopen_report(path: Path, number: int) -> None:
    """Undo `decide_report` when the change it stood for could not be made."""
    conn = connect(path, "write")
    try:
        conn.execute(
            "UPDATE problem_reports SET status = 'open', decided_ts = NULL, decided_by = NULL, "
            "decision_note = NULL, override_scope = NULL WHERE id = ?",
            (number,),
        )
    except sqlite3.Error as e:
        raise StoreError(f"cannot reopen problem report {number} in {path}: {e}") from None
    finally:
        conn.close()
