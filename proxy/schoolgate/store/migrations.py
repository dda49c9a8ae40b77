"""The store's schema as numbered migrations, applied in order and recorded in the database.

Each migration runs in one transaction together with the row that records it, so a crash leaves
the database either before or after a migration, never half-way. Never edit a released migration:
add the next number.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["MIGRATIONS", "Migration", "apply_migrations"]


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events",
        (
            # The DfE fields from the start: time, user, device, IP, group, what was asked for,
            # what decided, what was done. Unknown values are NULL, never '' or 'unknown'.
            """
            CREATE TABLE events (
                id            INTEGER PRIMARY KEY,
                ts            TEXT NOT NULL,      -- UTC, ISO 8601 with milliseconds and Z
                user          TEXT,
                device        TEXT,
                client_ip     TEXT NOT NULL,
                group_name    TEXT NOT NULL,
                method        TEXT,
                scheme        TEXT,
                host          TEXT,
                url           TEXT,
                search_term   TEXT,
                categories    TEXT,               -- comma-separated category names
                matched_rule  TEXT,
                action        TEXT NOT NULL,      -- allow | block | error
                severity      TEXT,
                reference     TEXT
            )
            """,
            "CREATE INDEX events_ts ON events (ts)",
            "CREATE INDEX events_reference ON events (reference)",
            "CREATE INDEX events_user_ts ON events (user, ts) WHERE user IS NOT NULL",
            "CREATE INDEX events_ip_ts ON events (client_ip, ts)",
        ),
    ),
)


def apply_migrations(conn: sqlite3.Connection) -> list[Migration]:
    """Bring the database at `conn` up to date; return the migrations applied now.

    `conn` must be in autocommit mode (``isolation_level=None``) so the explicit transactions
    here are the only ones.
    """
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"""
    )
    done = {row[0] for row in conn.execute("SELECT number FROM schema_migrations")}
    known = {m.number for m in MIGRATIONS}
    if unknown := done - known:
        raise sqlite3.DatabaseError(
            f"the database has migrations {sorted(unknown)} that this version of Schoolgate does "
            "not know; it was written by a newer version. Upgrade Schoolgate, or restore a backup."
        )
    applied = []
    for m in MIGRATIONS:
        if m.number in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in m.statements:
                conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_migrations (number, name, applied_at) VALUES (?, ?, ?)",
                (m.number, m.name, datetime.now(UTC).isoformat(timespec="seconds")),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(m)
    return applied
