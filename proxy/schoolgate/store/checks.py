"""Filter check runs in the store: each `schoolgate check` run (by command or on the gateway's
timetable) appended to the check_runs table (migration 7), and the last one read back cheaply for
the metrics endpoint."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from . import open_for_writing
from .connections import StoreError, connect

__all__ = ["RecordableRun", "RunSummary", "latest_run", "record_run"]


class RecordableRun(Protocol):
    """A check run as the store keeps it: `schoolgate.check.run.CheckRun` is one (the store sits
    below check, so it knows the run only by the record it gives)."""

    def as_dict(self) -> Mapping[str, Any]:
        """The run as JSON: `ts` (UTC, ISO 8601 with milliseconds and Z), the counts `passed`,
        `failed`, `warnings` and `skipped`, and every result."""
        ...


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One check_runs row, without its detail."""

    id: int
    ts: float
    passed: int
    failed: int
    skipped: int


def record_run(path: Path, run: RecordableRun) -> int:
    """Append the run to the store's check_runs table; return its id. Creates and migrates the
    store if needed (blocking). Warnings and skipped rows count as skipped."""
    open_for_writing(path)
    detail = dict(run.as_dict())
    detail.pop("id", None)  # the row's own id, which it has only once inserted
    row = (detail["ts"], detail["passed"], detail["failed"],
           detail["warnings"] + detail["skipped"], json.dumps(detail, ensure_ascii=False))
    conn = connect(path, "write", timeout=10)
    try:
        cur = conn.execute(
            "INSERT INTO check_runs (ts, passed, failed, skipped, detail) VALUES (?, ?, ?, ?, ?)",
            row,
        )
        return int(cur.lastrowid or 0)
    except sqlite3.Error as e:
        raise StoreError(f"cannot record the check run in {path}: {e}") from None
    finally:
        conn.close()


def latest_run(path: Path) -> RunSummary | None:
    """The most recent check run in the store, or None (no store, no run yet). Read-only and
    cheap: the metrics endpoint calls it at each scrape."""
    if not path.exists():
        return None
    try:
        conn = connect(path, "read", timeout=1)
        try:
            row = conn.execute("SELECT id, ts, passed, failed, skipped FROM check_runs "
                               "ORDER BY id DESC LIMIT 1").fetchone()
        finally:
            conn.close()
    except (StoreError, sqlite3.Error):
        return None  # a store from before migration 7, or busy: no run to show
    if row is None:
        return None
    ts = datetime.strptime(row[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    return RunSummary(row[0], ts, row[2], row[3], row[4])
