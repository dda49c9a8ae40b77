"""The event store: one SQLite database (WAL) written by one batched writer, read through
read-only connections.

Request hooks only call `EventWriter.put`, which never waits and never touches the disk; a single
writer task drains the bounded queue in batches, one `executemany` and one transaction per batch.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from ..config.model import EventSettings
from ..events import Event
from ..wording import counted
from .connections import (
    JOURNAL_WAL,
    Mode,
    StoreError,
    connect,
    connect_arguments,
    setup_statements,
)
from .migrations import MIGRATIONS, apply_migrations

__all__ = [
    "EVENT_COLUMNS",
    "event_row",
    "EventWriter",
    "MIGRATIONS",
    "Mode",
    "StoreError",
    "connect",
    "events_by_reference",
    "open_for_writing",
]

log = logging.getLogger("schoolgate.store")


EVENT_COLUMNS = (
    "ts",
    "user",
    "device",
    "client_ip",
    "group_name",
    "method",
    "scheme",
    "host",
    "url",
    "search_term",
    "categories",
    "matched_rule",
    "action",
    "severity",
    "reference",
    "reason",
    "theme",
    "engine",
    "search_normalised",
    "matched_phrase",
    "page_score",
    "page_phrases",
)
_INSERT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "  # noqa: S608 - column constants
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)


def event_row(event: Event) -> tuple:
    """The `events` table row for `event`, in `EVENT_COLUMNS` order."""
    return (
        _iso(event.ts),
        event.user,
        event.device,
        event.client_ip,
        event.group,
        event.method,
        event.scheme,
        event.host,
        event.url,
        event.search_term,
        ",".join(event.categories) or None,
        event.matched_rule,
        event.action,
        event.severity,
        event.reference,
        event.reason,
        event.theme,
        event.engine,
        event.search_normalised,
        event.matched_phrase,
        event.page_score,
        ", ".join(event.page_phrases) or None,
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def open_for_writing(path: Path) -> None:
    """Create the database if needed, switch it to WAL and apply pending migrations.

    Runs once at start-up, before any traffic, so migrations never race the writer.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot open the event store {path}: {e}") from None
    new = not path.exists()
    conn = connect(path, "write", what="the event store")
    try:
        conn.execute(JOURNAL_WAL)
        applied = apply_migrations(conn)
    except sqlite3.Error as e:
        raise StoreError(f"cannot prepare the event store {path}: {e}") from None
    finally:
        conn.close()
    # A new store gets every migration: the start-up's one "creating" line has said so. An
    # existing one names each it was upgraded with.
    for m in applied:
        log.log(logging.DEBUG if new else logging.INFO, "event store %s: applied migration "
                "%04d %s", path, m.number, m.name)


def events_by_reference(path: Path, reference: str) -> list[dict]:
    """Every event carrying `reference` (as printed on a block page), newest first."""
    ref = reference.strip().upper()
    if len(ref) == 10 and "-" not in ref:
        ref = f"{ref[:5]}-{ref[5:]}"
    conn = connect(path, "read", what="the event store")
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            f"SELECT id, {', '.join(EVENT_COLUMNS)} FROM events WHERE reference = ? "  # noqa: S608 - column constants; values bound
            "ORDER BY ts DESC",
            (ref,),
        ).fetchall()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the event store {path}: {e}") from None
    finally:
        conn.close()
    return [dict(r) for r in rows]


class EventWriter:
    """Owns the only write connection. `put` from hooks; `start` in `running`, `close` in `done`."""

    def __init__(
        self,
        path: Path,
        settings: EventSettings,
        *,
        on_dropped: Callable[[], None] = lambda: None,
        on_written: Callable[[int, float], None] = lambda n, seconds: None,
    ):
        self.path = path
        self.settings = settings
        self._on_dropped = on_dropped
        self._on_written = on_written
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=settings.queue_size)
        self._batch_ready = asyncio.Event()
        self._db: aiosqlite.Connection | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self._held = 0  # events the writer has taken off the queue and not yet written
        self.written = 0
        self.dropped = 0

    @property
    def depth(self) -> int:
        """Events accepted and not yet written, including the batch the writer holds."""
        return self._queue.qsize() + self._held

    async def start(self) -> None:
        # A write connection as `connect` makes one, but through aiosqlite: the event loop must
        # never wait on the disk.
        database, options = connect_arguments(self.path, "write")
        self._db = await aiosqlite.connect(database, **options)
        # NORMAL: a power cut may lose the last batch, never corrupt the file.
        for statement in setup_statements("write", wal=True, synchronous="NORMAL"):
            await self._db.execute(statement)
        self._task = asyncio.create_task(self._run(), name="schoolgate event writer")

    def put(self, event: Event) -> bool:
        """Queue `event` without waiting. False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            self._on_dropped()
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error(
                    "event queue full (%s): %s dropped so far; the store at %s "
                    "is too slow or failing",
                    counted(self.settings.queue_size, "event"),
                    counted(self.dropped, "event"),
                    self.path,
                )
            return False
        # The writer holds a batch's first event outside the queue, so batch_size - 1 queued
        # events complete the batch: wake it now rather than after flush_interval.
        if self._queue.qsize() >= self.settings.batch_size - 1:
            self._batch_ready.set()
        return True

    async def put_waiting(self, events: list[Event]) -> None:
        """Queue `events`, waiting while the queue is full: for the batches the workers of
        `schoolgate run` relay, where waiting (the relay stops reading, the workers' bounded
        queues absorb, then count what they drop) beats dropping them here. Awaits only when
        the queue is full: one await per event would halve what one writer can take."""
        for event in events:
            try:
                self._queue.put_nowait(event)
            except asyncio.QueueFull:
                self._batch_ready.set()
                await self._queue.put(event)
        if self._queue.qsize() >= self.settings.batch_size - 1:
            self._batch_ready.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._closing and self._queue.empty():
                return
            first = await self._queue.get()
            batch = [] if first is None else [first]
            self._held = len(batch)
            if not self._closing and self._queue.qsize() < self.settings.batch_size - 1:
                # One timer per batch, not per event: wait until the batch fills or time is up.
                self._batch_ready.clear()
                try:
                    await asyncio.wait_for(
                        self._batch_ready.wait(), timeout=self.settings.flush_interval
                    )
                except TimeoutError:
                    pass
            while len(batch) < self.settings.batch_size:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is not None:
                    batch.append(item)
            self._held = len(batch)
            if batch:
                try:
                    await self._write(batch, loop)
                except Exception:  # noqa: BLE001 - the writer must outlive any one batch
                    log.exception("lost a batch of %s", counted(len(batch), "event"))
                    self._count_dropped(len(batch))
            self._held = 0

    async def _write(self, batch: list[Event], loop: asyncio.AbstractEventLoop) -> None:
        if self._db is None:
            raise RuntimeError("the store writes only after start()")
        rows = []
        for event in batch:
            try:
                rows.append(event_row(event))
            except Exception:  # noqa: BLE001 - one malformed event must not cost the batch
                log.exception("dropping an event that cannot be stored: %r", event)
                self._count_dropped(1)
        delay = 0.5
        while rows:
            started = loop.time()
            try:
                await self._transaction(rows)
            except sqlite3.OperationalError as e:
                # Disk full, locked, I/O error: keep the batch and retry, the disk may come back.
                # Meanwhile the queue absorbs new events, and drops are counted once it is full.
                if self._closing:
                    log.error("could not write %s to %s at shutdown: %s",
                              counted(len(rows), "event"), self.path, e)
                    self._count_dropped(len(rows))
                    return
                log.error("writing %s to %s failed: %s; retrying in %.1fs",
                          counted(len(rows), "event"), self.path, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            except sqlite3.Error:
                # A data error in some row (retrying cannot help): write the rows one by one so
                # only the bad ones are lost.
                log.exception("a batch of %s was refused; writing them one by one",
                              counted(len(rows), "event"))
                rows = await self._write_one_by_one(rows)
            self.written += len(rows)
            self._on_written(len(rows), loop.time() - started)
            return

    async def _transaction(self, rows: list[tuple]) -> None:
        if self._db is None:
            raise RuntimeError("the store writes only after start()")
        await self._db.execute("BEGIN")
        try:
            await self._db.executemany(_INSERT, rows)
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise

    async def _write_one_by_one(self, rows: list[tuple]) -> list[tuple]:
        written = []
        for row in rows:
            try:
                await self._transaction([row])
                written.append(row)
            except sqlite3.Error as e:
                log.error("dropping an event the store refuses (%s): %r", e, row)
                self._count_dropped(1)
        return written

    def _count_dropped(self, n: int) -> None:
        self.dropped += n
        for _ in range(n):
            self._on_dropped()

    async def close(self, timeout: float = 15.0) -> int:
        """Write everything queued, then close. Returns how many events were flushed now."""
        if self._task is None:
            return 0
        queued = self.depth
        # Stage 1: stop waiting for batches to fill; wake the writer if it sleeps on an empty queue.
        self._closing = True
        self._batch_ready.set()
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass  # the writer is busy draining and will see _closing when the queue is empty
        # Stage 2: drain, with a bound so a dead disk cannot hang shutdown forever.
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            log.error(
                "gave up writing events after %.0fs at shutdown; %s not stored",
                timeout,
                counted(self.depth, "event"),
            )
        finally:
            if self._db is not None:
                await self._db.close()
            self._task = None
        return queued
