"""Retention: how long each kind of record is kept, and the purge that enforces it.

The purge runs beside the live gateway, so it deletes in small batches, each its own short write
transaction: the gateway's writer waits at most one batch (milliseconds), never the whole purge.
The audit log is never purged (its rows cannot be deleted by design).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from ..config.model import RETENTION_KINDS, RetentionPolicy
from ..store import StoreError, connect
from ..wording import counted
from .reading import iso_utc

__all__ = ["purge"]

log = logging.getLogger("schoolgate.reports.retention")


_SAFEGUARDING = "(theme IS NOT NULL OR coalesce(reason, '') LIKE 'illegal:%')"
# Every event is exactly one kind: a safeguarding event is kept for its own period whatever
# its action, so a flagged search that was allowed is not purged with ordinary browsing.
_EVENT_KINDS = {
    "allowed": f"action = 'allow' AND NOT {_SAFEGUARDING}",
    "blocked": f"action <> 'allow' AND NOT {_SAFEGUARDING}",
    "safeguarding": _SAFEGUARDING,
}

# The alert outbox (migration 4): the purge skips alerts in a store that has no such table.
ALERT_TABLE, ALERT_TIME = "alert_outbox", "created"


def purge(
    db_path: Path,
    policy: RetentionPolicy,
    now: datetime,
    *,
    dry_run: bool = False,
    batch_size: int = 2000,
    pause: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """Delete every record older than its kind's period at `now`; return rows deleted (or, with
    `dry_run`, that would be) per kind, in `RETENTION_KINDS` order. `pause` seconds between batches
    give the gateway's writer room on a slow disk."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not db_path.exists():
        raise StoreError(f"no event store at {db_path}: has the gateway run with this config?")
    # A long busy timeout: the purge can wait for the writer, the writer waits one batch at most.
    conn = connect(db_path, "write", timeout=30.0, what="the event store")
    counts: dict[str, int] = {}
    try:
        for kind, condition in _EVENT_KINDS.items():
            cutoff = iso_utc(now - policy.period(kind))
            counts[kind] = _purge_table(
                conn, "events", "ts", cutoff, condition, dry_run, batch_size, pause, sleep
            )
        if _has_table(conn, ALERT_TABLE):
            counts["alerts"] = _purge_table(
                conn, ALERT_TABLE, ALERT_TIME, iso_utc(now - policy.alerts), "1", dry_run,
                batch_size, pause, sleep,
            )
        else:
            counts["alerts"] = 0
        # Reports from the block page hold a name and a reason: kept as long as blocks are, and
        # never while still waiting for the technician's decision.
        counts["requests"] = (
            _purge_table(conn, "problem_reports", "ts", iso_utc(now - policy.blocked),
                         "status != 'open'", dry_run, batch_size, pause, sleep)
            if _has_table(conn, "problem_reports") else 0
        )
    except sqlite3.Error as e:
        raise StoreError(f"purging the event store {db_path} failed: {e}") from None
    finally:
        conn.close()
    for kind in RETENTION_KINDS:
        if counts[kind] and not dry_run:
            log.info("retention: deleted %s older than %s",
                     counted(counts[kind], f"{kind} record"), _days(policy.period(kind)))
    return counts


def _purge_table(
    conn: sqlite3.Connection,
    table: str,
    column: str,
    cutoff: str,
    condition: str,
    dry_run: bool,
    batch_size: int,
    pause: float,
    sleep: Callable[[float], None],
) -> int:
    if dry_run:
        return conn.execute(
            f"SELECT count(*) FROM {table} WHERE {column} < ? AND {condition}", (cutoff,)  # noqa: S608 - table rules are constants
        ).fetchone()[0]
    deleted = 0
    # Walk forward through time from the oldest record; rows kept (another kind) are stepped
    # over once, and each batch's DELETE is a short transaction of its own.
    since: str | None = None
    while True:
        rows = conn.execute(
            f"SELECT rowid, {column} FROM {table} WHERE {column} < ? AND {condition}"  # noqa: S608 - table rules are constants
            + ("" if since is None else f" AND {column} >= ?")
            + f" ORDER BY {column} LIMIT ?",
            (cutoff, batch_size) if since is None else (cutoff, since, batch_size),
        ).fetchall()
        if not rows:
            return deleted
        ids = [r[0] for r in rows]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                f"DELETE FROM {table} WHERE rowid IN ({', '.join('?' * len(ids))})", ids  # noqa: S608 - table rules are constants
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        deleted += len(ids)
        since = rows[-1][1]
        if len(rows) < batch_size:
            return deleted
        if pause:
            sleep(pause)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone() is not None


def _days(period: timedelta) -> str:
    return counted(period.days, "day")
