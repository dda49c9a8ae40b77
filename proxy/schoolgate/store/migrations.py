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
    Migration(
        2,
        "audit",
        (
            # Every policy change with who, when, what and why, refused ones included. Rows are
            # only ever inserted: the triggers make an UPDATE or DELETE fail, so neither a bug
            # nor a careless query can rewrite the record the school shows an inspector.
            """
            CREATE TABLE audit (
                id        INTEGER PRIMARY KEY,
                ts        TEXT NOT NULL,          -- UTC, ISO 8601 with milliseconds and Z
                actor     TEXT NOT NULL,          -- who: a name given with --by, or 'reload'
                action    TEXT NOT NULL,          -- block, allow, unblock, unallow, config, ...
                target    TEXT,                   -- host or URL prefix, when there is one
                scope     TEXT,                   -- 'all groups' or a group name
                reason    TEXT,
                detail    TEXT,                   -- JSON: diff, counts, expiry
                outcome   TEXT NOT NULL           -- done | refused
            )
            """,
            "CREATE INDEX audit_ts ON audit (ts)",
            """
            CREATE TRIGGER audit_rows_are_never_changed BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'audit rows are never changed'); END
            """,
            """
            CREATE TRIGGER audit_rows_are_never_deleted BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'audit rows are never deleted'); END
            """,
        ),
    ),
    Migration(
        3,
        "events: theme, reason and search columns",
        (
            # What safeguarding needs beside the DfE fields: the theme alerts route on, the short
            # reason code, and for searches the engine, the normalised term and the phrase.
            "ALTER TABLE events ADD COLUMN reason TEXT",
            "ALTER TABLE events ADD COLUMN theme TEXT",
            "ALTER TABLE events ADD COLUMN engine TEXT",
            "ALTER TABLE events ADD COLUMN search_normalised TEXT",
            "ALTER TABLE events ADD COLUMN matched_phrase TEXT",
            "CREATE INDEX events_theme_ts ON events (theme, ts) WHERE theme IS NOT NULL",
        ),
    ),
    Migration(
        4,
        "alert outbox",
        (
            # Alerts wait here until a sender delivers them, so an alert survives a restart and
            # a mail server that is down. Rows are written by the alert deliverer's own
            # connection; times are UTC ISO 8601 with milliseconds and Z, like events.ts, so
            # they compare as text.
            """
            CREATE TABLE alert_outbox (
                id               INTEGER PRIMARY KEY,
                created          TEXT NOT NULL,
                kind             TEXT NOT NULL,       -- alert | paused
                channel          TEXT NOT NULL,       -- 'email' or a webhook's name
                recipients       TEXT,                -- comma-separated addresses; NULL: webhook
                subject          TEXT NOT NULL,
                body             TEXT NOT NULL,       -- plain text
                html             TEXT,
                payload          TEXT NOT NULL,       -- JSON facts, what webhooks post
                dedup_key        TEXT,                -- person and theme
                attempts         INTEGER NOT NULL DEFAULT 0,
                next_attempt_at  TEXT,                -- when pending: not before this
                status           TEXT NOT NULL,       -- pending | sent | failed | held
                last_error       TEXT,
                sent_at          TEXT
            )
            """,
            "CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) "
            "WHERE status = 'pending'",
            "CREATE INDEX alert_outbox_created ON alert_outbox (created)",
        ),
    ),
    Migration(
        5,
        "events: indexes for the daily report and the context view",
        (
            # The daily report reads one day's safeguarding events out of millions of rows. The
            # condition is schoolgate.reports.reading.SAFEGUARDING_SQL, word for word: SQLite
            # uses a partial index only for a query that repeats its condition.
            "CREATE INDEX events_safeguarding_ts ON events (ts) WHERE "
            "((theme IS NOT NULL AND severity IS NOT NULL) OR reason LIKE 'illegal:%')",
            # A person known only by device (nobody signed in): their browsing either side of an
            # incident. Users and bare IP addresses already have (user, ts) and (client_ip, ts).
            "CREATE INDEX events_device_ts ON events (device, ts) "
            "WHERE user IS NULL AND device IS NOT NULL",
        ),
    ),
    Migration(
        6,
        "problem reports",
        (
            # "This should not be blocked" from a block page and "this should be blocked" from
            # the small form, with who sent them, until a technician approves or denies them
            # (`schoolgate requests`). Never holds a URL on an illegal-content list: those are
            # refused when sent, and redacted (url NULL) if a list gains one later.
            """
            CREATE TABLE problem_reports (
                id              INTEGER PRIMARY KEY,  -- the request number people are given
                ts              TEXT NOT NULL,        -- UTC, ISO 8601 with milliseconds and Z
                kind            TEXT NOT NULL,        -- unblock | block
                url             TEXT,
                host            TEXT NOT NULL,
                reference       TEXT,                 -- the block page's, for an unblock report
                reason          TEXT NOT NULL,        -- as the person wrote it (max 500 chars)
                user            TEXT,
                device          TEXT,
                client_ip       TEXT NOT NULL,
                group_name      TEXT NOT NULL,
                status          TEXT NOT NULL DEFAULT 'open',  -- open | approved | denied
                decided_ts      TEXT,
                decided_by      TEXT,
                decision_note   TEXT,
                override_scope  TEXT                  -- 'all groups' or the groups, once approved
            )
            """,
            "CREATE INDEX problem_reports_status ON problem_reports (status, id)",
            "CREATE INDEX problem_reports_reference ON problem_reports (reference) "
            "WHERE reference IS NOT NULL",
        ),
    ),
    Migration(
        7,
        "check runs",
        (
            # Each `schoolgate check` run (by command or on the gateway's schedule): the record
            # governors and inspectors ask for that filtering is checked. `detail` is the whole
            # run as JSON (schoolgate.check.run.CheckRun.as_dict): every test's group, address
            # (host only for an illegal-list test), expected and actual answer. Warnings (could
            # not be checked) and tests that did not apply count as skipped.
            """
            CREATE TABLE check_runs (
                id       INTEGER PRIMARY KEY,
                ts       TEXT NOT NULL,           -- UTC, ISO 8601 with milliseconds and Z
                passed   INTEGER NOT NULL,
                failed   INTEGER NOT NULL,
                skipped  INTEGER NOT NULL,
                detail   TEXT NOT NULL            -- JSON
            )
            """,
            "CREATE INDEX check_runs_ts ON check_runs (ts)",
        ),
    ),
    Migration(
        8,
        "page scanning",
        (
            # A page blocked (or flagged high) by its text: its keyword score and the library's
            # phrases that weighed most, comma-separated (never the page's own text).
            "ALTER TABLE events ADD COLUMN page_score REAL",
            "ALTER TABLE events ADD COLUMN page_phrases TEXT",
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
