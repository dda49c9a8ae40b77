"""The event store: how connections are opened (`connect`), numbered migrations recorded in the
database, the batched writer (batches, flush interval, flush on close, drops when full) and
finding events by block-page reference."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from schoolgate.config.model import EventSettings
from schoolgate.events import Event
from schoolgate.store import (
    EventWriter,
    StoreError,
    connect,
    events_by_reference,
    migrations,
    open_for_writing,
)
from schoolgate.store.migrations import MIGRATIONS, Migration, apply_migrations

# What DESIGN.md asks every event to carry (the DfE fields), in the table's column order.
DFE_COLUMNS = [
    "id", "ts", "user", "device", "client_ip", "group_name", "method", "scheme", "host", "url",
    "search_term", "categories", "matched_rule", "action", "severity", "reference",
]
# Migration 3 adds what safeguarding needs beside the DfE fields.
EVENT_COLUMNS = DFE_COLUMNS + ["reason", "theme", "engine", "search_normalised", "matched_phrase",
                               "page_score", "page_phrases"]


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _count(path: Path) -> int:
    conn = _connect(path)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Migrations


def test_first_open_creates_the_events_table_and_records_the_migration(tmp_path):
    path = tmp_path / "data" / "nested" / "schoolgate.sqlite3"  # folders are created
    open_for_writing(path)

    conn = _connect(path)
    try:
        columns = {row[1]: row for row in conn.execute("PRAGMA table_info(events)")}
        assert list(columns) == EVENT_COLUMNS
        # Time, client, group and action are always known; everything else may be NULL.
        not_null = {name for name, row in columns.items() if row[3]}
        assert not_null == {"ts", "client_ip", "group_name", "action"}

        indexes = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")}
        assert {"events_ts", "events_reference", "events_user_ts", "events_ip_ts"} <= indexes

        recorded = conn.execute("SELECT number, name, applied_at FROM schema_migrations").fetchall()
        assert [(n, name) for n, name, _ in recorded] == [(m.number, m.name) for m in MIGRATIONS]
        assert [(n, name) for n, name, _ in recorded][:3] == [
            (1, "events"), (2, "audit"), (3, "events: theme, reason and search columns")]
        applied_at = datetime.fromisoformat(recorded[0][2])
        assert abs((datetime.now(UTC) - applied_at).total_seconds()) < 60

        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_reopening_applies_nothing(tmp_path, caplog):
    path = tmp_path / "schoolgate.sqlite3"
    with caplog.at_level(logging.DEBUG, logger="schoolgate.store"):
        open_for_writing(path)
        open_for_writing(path)
    applied_logs = [r for r in caplog.records if "applied migration" in r.getMessage()]
    assert [r.getMessage() for r in applied_logs] == [
        f"event store {path}: applied migration {m.number:04d} {m.name}" for m in MIGRATIONS
    ]
    # A new store: the start-up's one "creating" line says so, not a line per migration.
    assert {r.levelno for r in applied_logs} == {logging.DEBUG}


def test_an_upgraded_store_names_each_migration_it_gets(tmp_path, caplog, monkeypatch):
    path = tmp_path / "schoolgate.sqlite3"
    # A store written by the version before the last migration was added.
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:-1])
    open_for_writing(path)
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="schoolgate.store"):
        open_for_writing(path)
    last = MIGRATIONS[-1]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, f"event store {path}: applied migration {last.number:04d} {last.name}")]

    conn = _connect(path)
    try:
        assert apply_migrations(conn) == []
        (count,) = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert count == len(MIGRATIONS)
    finally:
        conn.close()


def test_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "schoolgate.sqlite3"
    open_for_writing(path)
    conn = _connect(path)
    future = max(m.number for m in MIGRATIONS) + 1
    conn.execute(
        "INSERT INTO schema_migrations VALUES (?, 'from the future', '2031-01-01T00:00:00')",
        (future,),
    )
    conn.close()

    with pytest.raises(StoreError) as e:
        open_for_writing(path)
    message = str(e.value)
    assert str(path) in message
    assert f"[{future}]" in message
    assert "written by a newer version" in message
    assert "Upgrade Schoolgate, or restore a backup" in message


def test_a_failing_migration_leaves_no_half_applied_change(tmp_path, monkeypatch):
    path = tmp_path / "schoolgate.sqlite3"
    open_for_writing(path)
    broken = Migration(len(MIGRATIONS) + 1, "broken",
                       ("CREATE TABLE half_done (x)", "THIS IS NOT SQL"))
    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, broken))

    with pytest.raises(StoreError, match=f"cannot prepare the event store {path}"):
        open_for_writing(path)

    conn = _connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "half_done" not in tables
        assert [r[0] for r in conn.execute("SELECT number FROM schema_migrations")] == [
            m.number for m in MIGRATIONS]
    finally:
        conn.close()


def test_unopenable_store_is_a_store_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    with pytest.raises(StoreError, match="cannot open the event store"):
        open_for_writing(blocker / "schoolgate.sqlite3")


# ---------------------------------------------------------------------------------------------
# The batched writer


def event(n: int = 0, **fields) -> Event:
    values = dict(ts=1_700_000_000.0 + n, client_ip="10.20.1.2", group="secondary",
                  action="allow", reference=None)
    values.update(fields)
    return Event(**values)


async def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def _writer(tmp_path: Path, batches: list[int], **settings) -> EventWriter:
    path = tmp_path / "schoolgate.sqlite3"
    open_for_writing(path)
    writer = EventWriter(path, EventSettings(**settings), on_written=lambda n, s: batches.append(n))
    await writer.start()
    return writer


@pytest.mark.asyncio
async def test_writes_full_batches_and_holds_a_partial_one_for_the_flush_interval(tmp_path):
    batches: list[int] = []
    writer = await _writer(tmp_path, batches, queue_size=100, batch_size=5, flush_interval=60)
    for n in range(12):
        assert writer.put(event(n))

    await _wait_until(lambda: writer.written == 10)
    await asyncio.sleep(0.2)
    # Two full batches are written at once; the last two wait for more (or the flush interval).
    assert batches == [5, 5]
    assert writer.written == 10 and writer.depth == 2
    assert _count(writer.path) == 10

    flushed = await writer.close()
    assert flushed == 2
    assert batches == [5, 5, 2]
    assert writer.written == 12 and writer.depth == 0
    assert _count(writer.path) == 12


@pytest.mark.asyncio
async def test_a_batch_that_fills_one_event_at_a_time_is_written_without_waiting(tmp_path):
    batches: list[int] = []
    writer = await _writer(tmp_path, batches, queue_size=100, batch_size=5, flush_interval=60)
    try:
        for n in range(5):
            writer.put(event(n))
            await asyncio.sleep(0.01)  # the writer takes the first event and waits for the rest
        # The fifth event completes the batch: written now, not after 60 s.
        await _wait_until(lambda: writer.written == 5, timeout=5)
        assert batches == [5]
    finally:
        await writer.close()


@pytest.mark.asyncio
async def test_a_partial_batch_is_written_after_the_flush_interval(tmp_path):
    batches: list[int] = []
    writer = await _writer(tmp_path, batches, queue_size=100, batch_size=500, flush_interval=0.05)
    try:
        for n in range(3):
            writer.put(event(n))
        await _wait_until(lambda: writer.written == 3, timeout=5)
        assert batches == [3]
        assert _count(writer.path) == 3
    finally:
        await writer.close()


@pytest.mark.parametrize("sent", [1, 7, 499, 500, 501, 1234])
@pytest.mark.asyncio
async def test_close_flushes_everything_even_with_a_long_flush_interval(tmp_path, sent):
    batches: list[int] = []
    writer = await _writer(tmp_path, batches, queue_size=10_000, batch_size=500,
                           flush_interval=3600)
    for n in range(sent):
        assert writer.put(event(n))
    await asyncio.sleep(0)  # let the writer pick up the first batch, as a live gateway would

    flushed = await asyncio.wait_for(writer.close(), timeout=10)

    assert _count(writer.path) == writer.written == sent
    assert sum(batches) == sent and max(batches) <= 500
    # Nothing had been written when close began, so all of it was flushed by close.
    assert flushed == sent


@pytest.mark.asyncio
async def test_close_with_nothing_queued(tmp_path):
    batches: list[int] = []
    writer = await _writer(tmp_path, batches, queue_size=10, batch_size=5, flush_interval=3600)
    await asyncio.sleep(0.01)  # the writer is now waiting on an empty queue
    assert await asyncio.wait_for(writer.close(), timeout=5) == 0
    assert batches == [] and _count(writer.path) == 0


@pytest.mark.asyncio
async def test_close_when_never_started_does_nothing(tmp_path):
    writer = EventWriter(tmp_path / "unused.sqlite3", EventSettings())
    assert await writer.close() == 0
    assert not (tmp_path / "unused.sqlite3").exists()


def test_queue_full_drops_are_counted_and_logged_once(tmp_path, caplog):
    drops: list[None] = []
    writer = EventWriter(tmp_path / "s.sqlite3", EventSettings(queue_size=3, batch_size=2),
                         on_dropped=lambda: drops.append(None))
    with caplog.at_level(logging.ERROR, logger="schoolgate.store"):
        results = [writer.put(event(n)) for n in range(5)]

    assert results == [True, True, True, False, False]
    assert writer.dropped == 2 and len(drops) == 2
    assert writer.depth == 3
    (record,) = [r for r in caplog.records if "event queue full" in r.getMessage()]
    assert "1 event dropped so far" in record.getMessage()


@pytest.mark.asyncio
async def test_event_columns_as_stored(tmp_path):
    path = tmp_path / "schoolgate.sqlite3"
    open_for_writing(path)
    writer = EventWriter(path, EventSettings(batch_size=10, flush_interval=3600))
    await writer.start()
    when = datetime(2024, 7, 1, 12, 0, 0, 500_000, tzinfo=UTC).timestamp()
    writer.put(Event(
        ts=when, client_ip="10.20.50.3", group="sixth_form", action="block",
        reference="7KQ2M-9XDPA", user="jsmith", device="LAPTOP-042", method="GET",
        scheme="https", host="www.bet365.com", url="https://www.bet365.com/casino",
        search_term="poker tips", categories=("gambling", "adult"),
        matched_rule="group sixth_form blocks gambling", severity="low", reason="category",
        theme="gambling", engine="google", search_normalised="poker tips",
        matched_phrase="poker", page_score=13.0, page_phrases=("poker", "casino bonus"),
    ))
    writer.put(event(1))  # minimal: every unknown is NULL, never ''
    await writer.close()

    conn = _connect(path)
    conn.row_factory = sqlite3.Row
    full, minimal = (dict(r) for r in conn.execute("SELECT * FROM events ORDER BY id"))
    conn.close()
    assert full == {
        "id": 1, "ts": "2024-07-01T12:00:00.500Z", "user": "jsmith", "device": "LAPTOP-042",
        "client_ip": "10.20.50.3", "group_name": "sixth_form", "method": "GET",
        "scheme": "https", "host": "www.bet365.com", "url": "https://www.bet365.com/casino",
        "search_term": "poker tips", "categories": "gambling,adult",
        "matched_rule": "group sixth_form blocks gambling", "action": "block", "severity": "low",
        "reference": "7KQ2M-9XDPA", "reason": "category", "theme": "gambling",
        "engine": "google", "search_normalised": "poker tips", "matched_phrase": "poker",
        "page_score": 13.0, "page_phrases": "poker, casino bonus",
    }
    assert minimal["ts"] == "2023-11-14T22:13:21.000Z"  # 1_700_000_001 seconds after 1970
    assert [k for k, v in minimal.items() if v is None] == [
        "user", "device", "method", "scheme", "host", "url", "search_term", "categories",
        "matched_rule", "severity", "reference", "reason", "theme", "engine", "search_normalised",
        "matched_phrase", "page_score", "page_phrases",
    ]


# ---------------------------------------------------------------------------------------------
# Finding events by reference (the `schoolgate event` command)


@pytest_asyncio.fixture
async def store_with_references(tmp_path) -> Path:
    path = tmp_path / "schoolgate.sqlite3"
    open_for_writing(path)
    writer = EventWriter(path, EventSettings(batch_size=10, flush_interval=3600))
    await writer.start()
    writer.put(event(1, action="block", reference="7KQ2M-9XDPA", host="old.example"))
    writer.put(event(2, action="block", reference="ABCDE-FGHJK", host="other.example"))
    writer.put(event(3, action="block", reference="7KQ2M-9XDPA", host="new.example"))
    writer.put(event(4))
    await writer.close()
    return path


@pytest.mark.parametrize(
    "typed",
    [
        # As printed on the block page, as typed in a hurry, and as read aloud.
        "7KQ2M-9XDPA",
        "7kq2m-9xdpa",
        "7KQ2M9XDPA",
        "7kq2m9xdpa",
        "  7KQ2M-9XDPA\n",
    ],
)
@pytest.mark.asyncio
async def test_events_by_reference_finds_every_event_newest_first(store_with_references, typed):
    rows = events_by_reference(store_with_references, typed)
    assert [(r["host"], r["reference"], r["action"]) for r in rows] == [
        ("new.example", "7KQ2M-9XDPA", "block"),
        ("old.example", "7KQ2M-9XDPA", "block"),
    ]
    assert set(rows[0]) == set(EVENT_COLUMNS)


@pytest.mark.parametrize("typed", ["ZZZZZ-ZZZZZ", "", "7KQ2M", "7KQ2M-9XDP"])
@pytest.mark.asyncio
async def test_events_by_reference_unknown(store_with_references, typed):
    assert events_by_reference(store_with_references, typed) == []


def test_events_by_reference_never_creates_a_database(tmp_path):
    path = tmp_path / "missing.sqlite3"
    with pytest.raises(StoreError, match="cannot"):
        events_by_reference(path, "7KQ2M-9XDPA")
    assert not path.exists()


def test_events_by_reference_in_a_database_without_events(tmp_path):
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()
    with pytest.raises(StoreError, match=f"cannot read the event store {path}"):
        events_by_reference(path, "7KQ2M-9XDPA")


# ---------------------------------------------------------------------------------------------
# A bad event costs itself, never the batch or the writer


@pytest.mark.asyncio
async def test_an_event_that_cannot_be_stored_is_dropped_alone_and_the_writer_lives_on(
        tmp_path, caplog):
    path = tmp_path / "schoolgate.sqlite3"
    open_for_writing(path)
    writer = EventWriter(path, EventSettings(batch_size=10, flush_interval=0.01))
    await writer.start()
    try:
        # ts=None cannot become a timestamp; a list cannot be bound as a column value.
        for e in (event(1), event(2, ts=None), event(3, user=["not", "text"]), event(4)):
            assert writer.put(e)
        await _wait_until(lambda: writer.written + writer.dropped == 4)
        # The writer still works afterwards.
        writer.put(event(5))
        await _wait_until(lambda: writer.written == 3)
    finally:
        await writer.close()
    assert (writer.written, writer.dropped) == (3, 2)
    conn = _connect(path)
    try:
        stored = [r[0] for r in conn.execute("SELECT ts FROM events ORDER BY ts")]
    finally:
        conn.close()
    assert len(stored) == 3 and all(ts.startswith("2023-11-14T22:") for ts in stored)


def test_events_by_reference_with_uri_characters_in_the_path(tmp_path):
    folder = tmp_path / "odd?name#1 %20"
    path = folder / "schoolgate.sqlite3"
    open_for_writing(path)
    conn = _connect(path)
    try:
        conn.execute(
            "INSERT INTO events (ts, client_ip, group_name, action, reference) "
            "VALUES ('2026-01-01T00:00:00.000Z', '10.0.0.1', 'staff', 'block', 'ABCDE-FGHJK')"
        )
    finally:
        conn.close()
    assert [r["client_ip"] for r in events_by_reference(path, "abcdefghjk")] == ["10.0.0.1"]


# ---------------------------------------------------------------------------------------------
# connect: the one way a connection to the store is opened


def test_a_read_connection_cannot_write(tmp_path):
    path = tmp_path / "schoolgate.sqlite3"
    open_for_writing(path)
    conn = connect(path, "read")
    try:
        for statement in (
            "INSERT INTO audit (ts, actor, action, outcome) VALUES ('t', 'a', 'b', 'c')",
            "CREATE TEMP TABLE scratch (x)",
            "PRAGMA user_version = 7",
        ):
            with pytest.raises(sqlite3.OperationalError):
                conn.execute(statement)
    finally:
        conn.close()


def test_a_write_connection_is_autocommit_with_the_busy_timeout(tmp_path):
    path = tmp_path / "schoolgate.sqlite3"
    open_for_writing(path)
    conn = connect(path, "write", timeout=7)
    try:
        assert conn.isolation_level is None
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (7000,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # set by open_for_writing
        conn.execute("CREATE TABLE kept (x)")  # no transaction left open: seen by a new reader
    finally:
        conn.close()
    reader = connect(path, "read")
    try:
        assert reader.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    finally:
        reader.close()


def test_synchronous_is_a_write_setting(tmp_path):
    path = tmp_path / "schoolgate.sqlite3"
    open_for_writing(path)
    conn = connect(path, "write", synchronous="NORMAL")
    try:
        assert conn.execute("PRAGMA synchronous").fetchone() == (1,)
    finally:
        conn.close()
    with pytest.raises(ValueError, match="synchronous"):
        connect(path, "read", synchronous="NORMAL")


@pytest.mark.parametrize("folder", ["odd?name", "odd#name", "odd name %20", "a?b#c"])
def test_uri_characters_in_the_path_cannot_break_a_connection(tmp_path, folder):
    path = tmp_path / folder / "schoolgate.sqlite3"
    open_for_writing(path)
    writer = connect(path, "write")
    try:
        writer.execute("CREATE TABLE here (x)")
    finally:
        writer.close()
    reader = connect(path, "read")
    try:
        assert reader.execute("SELECT count(*) FROM here").fetchone() == (0,)
    finally:
        reader.close()
    # Nothing was made beside it from a misread URI (such as a file named `odd`).
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder]


def test_reading_a_missing_store_is_a_store_error_naming_it(tmp_path):
    path = tmp_path / "missing" / "schoolgate.sqlite3"
    with pytest.raises(StoreError, match=re.escape(f"cannot open the event store {path} to read")):
        connect(path, "read", what="the event store")
    with pytest.raises(StoreError, match=re.escape(f"cannot open the store {path}: ")):
        connect(path, "write")
    assert not path.parent.exists()  # neither mode creates what is not there


@pytest.mark.asyncio
async def test_the_event_writer_connects_with_the_same_settings(tmp_path):
    writer = await _writer(tmp_path, [])
    try:
        assert writer._db is not None
        pragmas = {}
        for name in ("journal_mode", "synchronous", "busy_timeout"):
            async with writer._db.execute(f"PRAGMA {name}") as cursor:
                pragmas[name] = (await cursor.fetchone())[0]
    finally:
        await writer.close()
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 5000}
