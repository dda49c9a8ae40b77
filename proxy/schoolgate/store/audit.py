"""The audit log: every policy change with who, when, what and why, refused ones included.

Rows are only ever inserted (the schema's triggers refuse UPDATE and DELETE). Writers are the CLI
(a separate short-lived process) and the gateway at reload; SQLite's WAL lets both write beside
the event writer, each in its own short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import StoreError, _iso, open_for_writing
from .connections import connect

__all__ = ["AuditEntry", "read_audit", "record_change"]

_COLUMNS = ("ts", "actor", "action", "target", "scope", "reason", "detail", "outcome")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log."""

    id: int
    ts: str
    """UTC, ISO 8601 with milliseconds and Z."""
    actor: str
    """Who: the name given with `--by`, or `reload` for a change found in the config files."""
    action: str
    """`block`, `allow`, `unblock`, `unallow`, `config`, `lists-import`, ..."""
    target: str | None
    scope: str | None
    """`all groups` or a group name."""
    reason: str | None
    detail: dict[str, Any] | None
    outcome: str
    """`done` or `refused`."""


def record_change(
    path: Path,
    *,
    actor: str,
    action: str,
    outcome: str = "done",
    target: str | None = None,
    scope: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    ts: float | None = None,
) -> int:
    """Append one row; return its id. Creates and migrates the store if needed (blocking)."""
    open_for_writing(path)
    row = (
        _iso(time.time() if ts is None else ts), actor, action, target, scope, reason,
        json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail is not None else None,
        outcome,
    )
    conn = connect(path, "write", timeout=10)
    try:
        cur = conn.execute(
            f"INSERT INTO audit ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",  # noqa: S608 - column constants
            row,
        )
        return int(cur.lastrowid or 0)
    except sqlite3.Error as e:
        raise StoreError(f"cannot write the audit log in {path}: {e}") from None
    finally:
        conn.close()


def read_audit(path: Path, since: datetime | None = None) -> list[AuditEntry]:
    """Audit rows, oldest first; with `since`, only those at or after it."""
    if not path.exists():
        return []
    conn = connect(path, "read")
    try:
        sql = f"SELECT id, {', '.join(_COLUMNS)} FROM audit"  # noqa: S608 - column constants; values bound
        args: tuple = ()
        if since is not None:
            sql += " WHERE ts >= ?"
            args = (_iso(since.astimezone(UTC).timestamp()),)
        rows = conn.execute(sql + " ORDER BY id", args).fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []  # a store from before the audit log: nothing recorded yet
        raise StoreError(f"cannot read the audit log in {path}: {e}") from None
    finally:
        conn.close()
    return [
        AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6],
                   json.loads(r[7]) if r[7] else None, r[8])
        for r in rows
    ]
