"""Retention per kind of record, enforced by the purge at an injected `now`, and the
subject-access export of one user's records."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schoolgate.config.model import RETENTION_KINDS as KINDS
from schoolgate.events import Event
from schoolgate.reports import RetentionPolicy, export_user, purge
from schoolgate.reports.export import EXPORT_COLUMNS
from schoolgate.store import EVENT_COLUMNS, StoreError, event_row, open_for_writing
from schoolgate.store.audit import record_change

NOW = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)
TZ = "Europe/London"


def ago(days: float) -> float:
    return (NOW - timedelta(days=days)).timestamp()


def event(days_old: float, **fields) -> Event:
    fields.setdefault("client_ip", "10.20.1.5")
    fields.setdefault("group", "secondary")
    fields.setdefault("action", "allow")
    fields.setdefault("reference", None)
    return Event(ts=ago(days_old), **fields)


def store(tmp_path: Path, events: list[Event]) -> Path:
    db = tmp_path / "schoolgate.sqlite3"
    open_for_writing(db)
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})",
            [event_row(e) for e in events],
        )
    conn.close()
    return db


def hosts(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return sorted(r[0] for r in conn.execute("SELECT host FROM events"))
    finally:
        conn.close()


def add_alerts(db: Path, days_old: list[float]) -> None:
    conn = sqlite3.connect(db)
    with conn:
        for days in days_old:
            created = (NOW - timedelta(days=days)).isoformat(timespec="milliseconds")
            conn.execute(
                "INSERT INTO alert_outbox (created, kind, channel, subject, body, payload, "
                "status) VALUES (?, 'alert', 'email', ?, 'body', '{}', 'sent')",
                (created.replace("+00:00", "Z"), f"alert {days}"),
            )
    conn.close()


# One row either side of each kind's default period, named for what should happen to it.
SEEDED = [
    # allowed browsing: 30 days
    event(29.9, host="allowed-kept.example"),
    event(30.1, host="allowed-gone.example"),
    # blocks (and filtering errors): 365 days
    event(364, action="block", host="blocked-kept.example", categories=("gambling",)),
    event(366, action="block", host="blocked-gone.example"),
    event(366, action="error", host="error-gone.example", reason="filtering-error:classify"),
    # safeguarding: 730 days, whatever the action; a bypass attempt with no severity counts too
    event(400, host="search-kept.example", theme="drugs", severity="medium",
          search_term="buy weed"),
    event(731, host="search-gone.example", theme="drugs", severity="medium"),
    event(400, action="block", host="doh-kept.example", theme="circumvention",
          reason="circumvention:doh"),
    event(700, action="block", host="illegal-kept.example", reason="illegal:IWF", severity="high"),
    event(731, action="block", host="illegal-gone.example", reason="illegal:IWF",
          severity="high"),
]


def test_each_kind_is_kept_for_its_own_period(tmp_path):
    db = store(tmp_path, SEEDED)
    add_alerts(db, [729, 731])
    record_change(db, actor="tech", action="block", target="x.example", scope="all groups",
                  reason="test")
    counts = purge(db, RetentionPolicy(), NOW)
    assert counts == {"allowed": 1, "blocked": 2, "safeguarding": 2, "alerts": 1, "requests": 0}
    assert list(counts) == [*KINDS, "requests"]
    assert hosts(db) == sorted(["allowed-kept.example", "blocked-kept.example",
                                "search-kept.example", "doh-kept.example",
                                "illegal-kept.example"])
    conn = sqlite3.connect(db)
    try:
        assert [r[0] for r in conn.execute("SELECT subject FROM alert_outbox")] == ["alert 729"]
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 1  # never purged
    finally:
        conn.close()
    # A second purge at the same moment finds nothing more.
    assert purge(db, RetentionPolicy(), NOW) == dict.fromkeys([*KINDS, "requests"], 0)


def test_a_schools_own_periods_apply(tmp_path):
    db = store(tmp_path, SEEDED)
    policy = RetentionPolicy(allowed=timedelta(days=7), blocked=timedelta(days=90),
                             safeguarding=timedelta(days=365 * 6), alerts=timedelta(days=30))
    counts = purge(db, policy, NOW)
    assert counts == {"allowed": 2, "blocked": 3, "safeguarding": 0, "alerts": 0, "requests": 0}
    assert "search-gone.example" in hosts(db)


def test_a_dry_run_counts_and_deletes_nothing(tmp_path):
    db = store(tmp_path, SEEDED)
    add_alerts(db, [800])
    before = hosts(db)
    counts = purge(db, RetentionPolicy(), NOW, dry_run=True)
    assert counts == {"allowed": 1, "blocked": 2, "safeguarding": 2, "alerts": 1, "requests": 0}
    assert hosts(db) == before


def test_the_purge_deletes_in_small_batches(tmp_path):
    db = store(tmp_path, [event(40 + i / 100, host=f"old{i}.example") for i in range(25)]
               + [event(10, host="recent.example")])
    pauses: list[float] = []
    counts = purge(db, RetentionPolicy(), NOW, batch_size=4, pause=0.01, sleep=pauses.append)
    assert counts["allowed"] == 25
    assert hosts(db) == ["recent.example"]
    # 25 rows in batches of 4: seven transactions, a pause after each full one.
    assert pauses == [0.01] * 6


def test_a_store_without_an_alert_outbox_is_purged_all_the_same(tmp_path):
    db = store(tmp_path, SEEDED)
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE alert_outbox")
    conn.close()
    assert purge(db, RetentionPolicy(), NOW)["alerts"] == 0


def test_purge_needs_an_aware_now_and_an_existing_store(tmp_path):
    with pytest.raises(ValueError, match="timezone-aware"):
        purge(tmp_path / "x.sqlite3", RetentionPolicy(), NOW.replace(tzinfo=None))
    with pytest.raises(StoreError, match="no event store"):
        purge(tmp_path / "x.sqlite3", RetentionPolicy(), NOW)
    with pytest.raises(ValueError, match="blocked must be longer than zero"):
        RetentionPolicy(blocked=timedelta(0))


# ---------------------------------------------------------------------------------------------
# Export for a subject-access request


def test_export_user_writes_every_row_of_that_user_with_a_header(tmp_path):
    db = store(tmp_path, [
        event(3, user="alice", host="www.bbc.co.uk", url="https://www.bbc.co.uk/news"),
        event(2, user="alice", host="www.google.com", search_term="=cmd|' /C calc'!A0",
              engine="google", theme="circumvention", severity="low"),
        event(1, user="alice", action="block", host="bad.example",
              url="http://bad.example/secret-entry", reason="illegal:IWF", severity="high"),
        event(1, user="bob", host="bob.example"),
        event(1, device="LAPTOP-7", host="device.example"),
    ])
    done = export_user(db, "alice", tmp_path / "out", tz=TZ, school_name="Test Academy",
                       now=NOW, retention="Records are kept for: allowed browsing 30 days.")
    assert done.rows == 3
    assert done.csv_path.name == "export-alice-20260615-040000.csv"
    for path in (done.csv_path, done.json_path):
        assert path.stat().st_mode & 0o777 == 0o600
        assert "secret-entry" not in path.read_text()

    lines = done.csv_path.read_text().splitlines()
    header = [line for line in lines if line.startswith("# ")]
    assert header[0] == "# Every web filtering record Test Academy holds for the user 'alice'"
    assert any("only the site's host and the list's name are shown" in h for h in header)
    assert any("Records are kept for: allowed browsing 30 days." in h for h in header)
    assert any("3 records, from" in h for h in header)
    rows = list(csv.DictReader(lines[len(header):]))
    assert tuple(rows[0]) == tuple(name for name, _ in EXPORT_COLUMNS)
    assert [r["host"] for r in rows] == ["www.bbc.co.uk", "www.google.com", "bad.example"]
    assert rows[1]["search_term"] == "'=cmd|' /C calc'!A0"  # never a live formula
    assert (rows[2]["url"], rows[2]["illegal_list"]) == ("", "IWF")
    assert rows[0]["time_local"].endswith("+01:00")  # June: BST

    data = json.loads(done.json_path.read_text())
    assert data["about"]["user"] == "alice" and data["about"]["records"] == 3
    assert [e["host"] for e in data["events"]] == ["www.bbc.co.uk", "www.google.com",
                                                   "bad.example"]
    assert data["events"][1]["search_term"] == "=cmd|' /C calc'!A0"  # JSON keeps it as typed
    assert {e["user"] for e in data["events"]} == {"alice"}


def test_export_user_since_a_date_and_for_nobody(tmp_path):
    db = store(tmp_path, [event(3, user="alice", host="old.example"),
                          event(1, user="alice", host="new.example")])
    done = export_user(db, "alice", tmp_path, tz=TZ, school_name="S", now=NOW,
                       since=NOW - timedelta(days=2))
    data = json.loads(done.json_path.read_text())
    assert [e["host"] for e in data["events"]] == ["new.example"]
    assert data["about"]["period_requested"].startswith("from 2026-06-13T03:00")

    # No records is still an answer: the files say so.
    none = export_user(db, "nobody/../x", tmp_path, tz=TZ, school_name="S", now=NOW)
    assert none.rows == 0 and none.csv_path.parent == tmp_path
    assert none.csv_path.name == "export-nobody_.._x-20260615-040000.csv"
    assert json.loads(none.json_path.read_text())["events"] == []


def test_decided_problem_reports_are_kept_as_long_as_blocks_open_ones_always(tmp_path):
    db = store(tmp_path, [])
    conn = sqlite3.connect(db)
    with conn:
        for days, status in ((366, "denied"), (366, "open"), (300, "approved")):
            ts = (NOW - timedelta(days=days)).isoformat(timespec="milliseconds")
            conn.execute(
                "INSERT INTO problem_reports (ts, kind, url, host, reason, client_ip, group_name, "
                "status) VALUES (?, 'unblock', 'https://x.example/', 'x.example', 'r', "
                "'10.0.0.1', 'ks3', ?)", (ts.replace("+00:00", "Z"), status))
    conn.close()
    assert purge(db, RetentionPolicy(), NOW)["requests"] == 1
    conn = sqlite3.connect(db)
    try:
        assert sorted(r[0] for r in conn.execute("SELECT status FROM problem_reports")) == [
            "approved", "open"]
    finally:
        conn.close()
