"""Opening the store's SQLite file: the one place that knows how a read-only or a write connection
is made (the `mode=ro` URI, autocommit, busy timeout, WAL, synchronous), so every module that
reads or writes the store gets the same settings, and the same `StoreError` when it cannot."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Literal

__all__ = ["BUSY_TIMEOUT", "JOURNAL_WAL", "Mode", "StoreError", "Synchronous", "connect",
           "connect_arguments", "setup_statements"]

Mode = Literal["read", "write"]
"""`read`: cannot write (a report or the metrics never hold a lock the writer needs); `write`:
autocommit, so each caller opens its own short transactions with BEGIN IMMEDIATE."""
Synchronous = Literal["FULL", "NORMAL"]

BUSY_TIMEOUT = 5.0
"""Seconds a connection waits for another's lock before it gives up (SQLite's busy timeout)."""

JOURNAL_WAL = "PRAGMA journal_mode = WAL"
"""Persistent in the file: run by the writers that create it (`open_for_writing`, the event
writer), so that readers never block the writer nor it them."""


class StoreError(Exception):
    """The database cannot be opened or brought up to date; the message says which file and why.
    Fix the file's permissions or disk space, or restore a backup, and start again."""


def connect_arguments(path: Path, mode: Mode, *,
                      timeout: float = BUSY_TIMEOUT) -> tuple[str | Path, dict[str, Any]]:
    """What `sqlite3.connect` (or `aiosqlite.connect`, which passes them on) is given for `mode`:
    the database and its keyword arguments. `timeout` is the busy timeout."""
    if mode == "read":
        # as_uri() percent-escapes the path, so '?' or '#' in a folder name cannot break it.
        return f"{path.absolute().as_uri()}?mode=ro", {"uri": True, "timeout": timeout}
    return path, {"isolation_level": None, "timeout": timeout}


def setup_statements(mode: Mode, *, wal: bool = False,
                     synchronous: Synchronous | None = None) -> list[str]:
    """The PRAGMAs a new connection runs before anything else."""
    if mode == "read":
        # Belt and braces beside mode=ro: even a statement SQLite would allow a read-only file
        # (a temporary table, say) is refused.
        return ["PRAGMA query_only = ON"]
    pragmas = [JOURNAL_WAL] if wal else []
    if synchronous is not None:
        # NORMAL in WAL mode: a power cut may lose the last transaction, never corrupt the file.
        pragmas.append(f"PRAGMA synchronous = {synchronous}")
    return pragmas


def connect(path: Path, mode: Mode, *, timeout: float = BUSY_TIMEOUT, what: str = "the store",
            synchronous: Synchronous | None = None) -> sqlite3.Connection:
    """A connection to the store at `path`, in `mode`, waiting up to `timeout` seconds for a lock.
    Raises `StoreError` naming the file (`cannot open <what> <path>[ to read]: <why>`) when it
    cannot be opened; reading a file that does not exist is such an error (a read never creates
    the file). `synchronous` is a write connection's durability (default: SQLite's, FULL)."""
    if mode not in ("read", "write"):
        raise ValueError(f"mode must be 'read' or 'write', not {mode!r}")
    if mode == "read" and synchronous is not None:
        raise ValueError("synchronous is a setting of a write connection")
    database, options = connect_arguments(path, mode, timeout=timeout)
    try:
        conn = sqlite3.connect(database, **options)
    except sqlite3.Error as e:
        raise StoreError(_cannot_open(path, mode, what, e)) from None
    try:
        for statement in setup_statements(mode, synchronous=synchronous):
            conn.execute(statement)
    except sqlite3.Error as e:
        conn.close()
        raise StoreError(_cannot_open(path, mode, what, e)) from None
    return conn


def _cannot_open(path: Path, mode: Mode, what: str, error: sqlite3.Error) -> str:
    return f"cannot open {what} {path}{' to read' if mode == 'read' else ''}: {error}"
