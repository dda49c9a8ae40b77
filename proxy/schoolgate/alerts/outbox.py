"""The persistent outbox: alerts wait in the store's `alert_outbox` table until a sender delivers
them, so an alert survives a restart and a mail server that is down.

`Outbox` is the blocking table access (one short connection per call, run in a thread);
`Deliverer` is the asyncio task that writes what the engine queued, sends what is due, retries
with doubling backoff and gives up after a bound, recording why. Nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..config.model import Delivery
from ..store import connect, open_for_writing
from ..wording import counted
from .messages import Alert
from .rows import OutboxRow, timestamp
from .senders import DeliveryError, Sender

__all__ = ["Deliverer", "Outbox", "OutboxRow", "Round", "OUTCOMES"]

log = logging.getLogger("schoolgate.alerts")

OUTCOMES = ("sent", "retry", "failed", "deduplicated", "rate_limited", "recorded")
"""The `outcome` values `on_outcome(channel, outcome)` is called with. `recorded`: an e-mail
alert kept in the store and the log only, because no mail server is configured."""

_DEFAULT_DELIVERY = Delivery()  # frozen: one shared default is safe

_COLUMNS = ("id", "created", "kind", "channel", "recipients", "subject", "body", "html",
            "payload", "dedup_key", "attempts", "next_attempt_at", "status", "last_error",
            "sent_at")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Outbox:
    """Blocking access to the outbox table. Every call opens its own short connection, so it can
    run in any thread beside the event writer (SQLite WAL, busy timeout)."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0):
        self.path = path
        self.busy_timeout = busy_timeout

    def _connect(self) -> sqlite3.Connection:
        # NORMAL, the event writer's trade: a power cut may lose the last write, never the file.
        return connect(self.path, "write", timeout=self.busy_timeout, synchronous="NORMAL")

    def add(self, alerts: Sequence[Alert]) -> list[int]:
        """Store `alerts` in one transaction; return their ids."""
        rows = [
            (
                _iso(a.created), a.kind, a.channel, ",".join(a.destination.recipients) or None,
                a.subject, a.text, a.html, json.dumps(dict(a.facts), ensure_ascii=False),
                a.dedup_key, _iso(a.created) if a.status == "pending" else None, a.status,
            )
            for a in alerts
        ]
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                ids = [
                    int(conn.execute(
                        "INSERT INTO alert_outbox (created, kind, channel, recipients, subject, "
                        "body, html, payload, dedup_key, next_attempt_at, status) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row).lastrowid or 0)
                    for row in rows
                ]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return ids
        finally:
            conn.close()

    def claim_due(self, now: float, lease: float, limit: int = 20) -> list[OutboxRow]:
        """Take up to `limit` pending rows due at `now`, oldest first, counting an attempt and
        pushing their next attempt `lease` seconds ahead: should this process die mid-send,
        the row comes due again then (so delivery is at least once)."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                ids = [r[0] for r in conn.execute(
                    "SELECT id FROM alert_outbox WHERE status = 'pending' "
                    "AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
                    (_iso(now), limit))]
                rows = []
                for row_id in ids:
                    r = conn.execute(
                        "UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_at = ? "  # noqa: S608 - column constants; values bound
                        f"WHERE id = ? RETURNING {', '.join(_COLUMNS)}",
                        (_iso(now + lease), row_id)).fetchone()
                    rows.append(OutboxRow.from_db(r))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return rows
        finally:
            conn.close()

    def record(self, outcomes: Sequence[tuple[int, str, float | None, str | None, float]]) -> None:
        """Write delivery outcomes `(id, status, next_attempt_at, last_error, now)` at once."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for row_id, status, next_at, error, now in outcomes:
                    conn.execute(
                        "UPDATE alert_outbox SET status = ?, next_attempt_at = ?, "
                        "last_error = coalesce(?, last_error), sent_at = ? WHERE id = ?",
                        (status, None if next_at is None else _iso(next_at), error,
                         _iso(now) if status == "sent" else None, row_id))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def rows(self, status: str | None = None) -> list[OutboxRow]:
        """Rows (with `status`, or all), oldest first."""
        conn = self._connect()
        try:
            sql = f"SELECT {', '.join(_COLUMNS)} FROM alert_outbox"  # noqa: S608 - column constants; values bound
            args: tuple = ()
            if status is not None:
                sql += " WHERE status = ?"
                args = (status,)
            return [OutboxRow.from_db(r) for r in conn.execute(sql + " ORDER BY id", args)]
        finally:
            conn.close()

    def pending_count(self) -> int:
        conn = self._connect()
        try:
            return conn.execute(
                "SELECT count(*) FROM alert_outbox WHERE status = 'pending'").fetchone()[0]
        finally:
            conn.close()

    def recent_alerts(self, since: float) -> list[tuple[str, float]]:
        """`(dedup_key, created)` of alerts made since `since`, pending, sent or held: what a
        restarted engine needs so it does not alert the same person and theme twice."""
        conn = self._connect()
        try:
            return [(k, timestamp(c) or 0.0) for k, c in conn.execute(
                "SELECT dedup_key, max(created) FROM alert_outbox WHERE kind = 'alert' "
                "AND dedup_key IS NOT NULL AND created >= ? AND status != 'failed' "
                "GROUP BY dedup_key", (_iso(since),))]
        finally:
            conn.close()

    def prune(self, before: float) -> int:
        """Delete sent, failed and held rows made before `before`; pending rows stay."""
        conn = self._connect()
        try:
            return conn.execute(
                "DELETE FROM alert_outbox WHERE status != 'pending' AND created < ?",
                (_iso(before),)).rowcount
        finally:
            conn.close()


@dataclass(frozen=True, slots=True)
class Round:
    """What one `Deliverer.run_once` did."""

    stored: int
    sent: int
    retried: int
    failed: int


class Deliverer:
    """Writes queued alerts to the outbox and delivers due rows. `submit` from the engine (never
    waits); `start` in `running`, `stop` in `done`; tests drive `run_once` with a fake clock."""

    def __init__(
        self,
        path: Path,
        senders: Mapping[str, Sender],
        delivery: Delivery = _DEFAULT_DELIVERY,
        *,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[str, str], None] = lambda channel, outcome: None,
        poll_interval: float = 5.0,
        lease: float = 300.0,
        max_queued: int = 10_000,
    ):
        self.outbox = Outbox(path)
        self.senders = dict(senders)
        self.delivery = delivery
        self.clock = clock
        self.on_outcome = on_outcome
        self.poll_interval = poll_interval
        self.lease = lease
        self.max_queued = max_queued
        self._queued: list[Alert] = []
        self._pending = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._round_lock: asyncio.Lock | None = None
        self._stopping = False
        self._pruned_at = 0.0
        self.dropped = 0

    # -- from the engine (event loop, no I/O) --------------------------------------------------

    def submit(self, alert: Alert) -> bool:
        """Queue `alert` to be stored and sent. False (logged) if too many are waiting to be
        stored, which only happens when the store has been failing for a long time."""
        if len(self._queued) >= self.max_queued:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("alert queue full (%d waiting to be stored): %d alerts lost so far; "
                          "the store at %s is failing", self.max_queued, self.dropped,
                          self.outbox.path)
            return False
        self._queued.append(alert)
        if self._wake is not None:
            self._wake.set()
        return True

    def outbox_depth(self) -> int:
        """Alerts not yet delivered: pending in the outbox (as of the last round) plus those
        queued to be stored. For a gauge; never touches the database."""
        return self._pending + sum(1 for a in self._queued if a.status == "pending")

    # -- delivering ----------------------------------------------------------------------------

    async def run_once(self) -> Round:
        """Store what is queued, then send every row due now. One round at a time."""
        if self._round_lock is None:
            self._round_lock = asyncio.Lock()
        async with self._round_lock:
            stored = await self._store_queued()
            now = self.clock()
            rows = await asyncio.to_thread(self.outbox.claim_due, now, self.lease)
            results = await asyncio.gather(*(self._deliver(row) for row in rows))
            counts = {"sent": 0, "retry": 0, "failed": 0}
            done = self.clock()
            outcomes = []
            for row, (status, next_at, error) in zip(rows, results, strict=True):
                outcome = "retry" if status == "pending" else status
                counts[outcome] += 1
                outcomes.append((row.id, status, next_at, error, done))
            if outcomes:
                await asyncio.to_thread(self.outbox.record, outcomes)
            for row, (status, _, _) in zip(rows, results, strict=True):
                self.on_outcome(row.channel, "retry" if status == "pending" else status)
            if done - self._pruned_at >= 3600:
                self._pruned_at = done
                pruned = await asyncio.to_thread(self.outbox.prune, done - self.delivery.keep)
                if pruned:
                    log.info("alert outbox: deleted %d delivered, failed or held alerts older "
                             "than %.0f days", pruned, self.delivery.keep / 86400)
            self._pending = await asyncio.to_thread(self.outbox.pending_count)
            return Round(stored, counts["sent"], counts["retry"], counts["failed"])

    async def _store_queued(self) -> int:
        if not self._queued:
            return 0
        batch, self._queued = self._queued, []
        try:
            await asyncio.to_thread(self.outbox.add, batch)
        except BaseException:
            self._queued[:0] = batch  # keep them for the next round; the disk may come back
            raise
        return len(batch)

    async def _deliver(self, row: OutboxRow) -> tuple[str, float | None, str | None]:
        """Send one row; return its new (status, next_attempt_at, last_error)."""
        sender = self.senders.get(row.channel)
        try:
            if sender is None:
                known = ", ".join(sorted(self.senders)) or "none"
                raise DeliveryError(f"no channel named {row.channel!r} is configured "
                                    f"(configured: {known})", permanent=True)
            await sender.send(row)
        except DeliveryError as e:
            return self._failure(row, str(e), e.permanent)
        except Exception as e:  # noqa: BLE001 - a sender bug must not stop other alerts
            log.exception("alert %d: sender %s failed unexpectedly", row.id, row.channel)
            return self._failure(row, f"unexpected error: {type(e).__name__}: {e}", False)
        log.info("alert %d (%s) sent via %s after %s", row.id, row.kind, row.channel,
                 counted(row.attempts, "attempt"))
        return "sent", None, None

    def _failure(self, row: OutboxRow, error: str,
                 permanent: bool) -> tuple[str, float | None, str]:
        now = self.clock()
        d = self.delivery
        age = now - row.created
        attempts = counted(row.attempts, "attempt")
        if permanent:
            error = f"gave up after {attempts}: {error} (retrying cannot help)"
        elif row.attempts >= d.max_attempts or age >= d.give_up_after:
            error = f"gave up after {attempts} over {_human(age)}: {error}"
        else:
            delay = min(d.first_retry * 2 ** (row.attempts - 1), d.longest_retry)
            next_at = now + delay
            log.warning("alert %d via %s failed (attempt %d): %s; next try in %s", row.id,
                        row.channel, row.attempts, error, _human(delay))
            return "pending", next_at, error
        log.error("alert %d via %s FAILED and will not be retried: %s. The event is still in "
                  "the store and the daily report.", row.id, row.channel, error)
        return "failed", None, error

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring the store up to date and start delivering; rows left pending by an earlier run
        are retried from the first round."""
        await asyncio.to_thread(open_for_writing, self.outbox.path)
        self._pending = await asyncio.to_thread(self.outbox.pending_count)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="schoolgate alert deliverer")

    async def _run(self) -> None:
        if self._wake is None:
            raise RuntimeError("the deliverer runs only after start()")
        while not self._stopping:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - the deliverer must outlive any one round
                log.exception("alert delivery round failed; trying again in %.0fs",
                              self.poll_interval)
            if self._stopping:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass

    async def stop(self, timeout: float = 10.0) -> None:
        """Let the current round finish (bounded), then store whatever is still queued, so an
        alert decided just before shutdown is sent after the restart."""
        # Stage 1: no new rounds; wake the loop if it is waiting.
        self._stopping = True
        if self._task is not None and self._wake is not None:
            self._wake.set()
            # Stage 2: wait for the round in progress, with a bound (a hung mail server).
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                log.warning("alert delivery did not finish in %.0fs at shutdown; rows being "
                            "sent are retried after the restart", timeout)
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
            except Exception:  # noqa: BLE001
                log.exception("alert deliverer ended with an error")
            self._task = None
        # Stage 3: store what the engine queued since the last round.
        try:
            await self._store_queued()
        except Exception:  # noqa: BLE001
            log.exception("could not store %d queued alerts at shutdown", len(self._queued))


def _human(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f}".removesuffix(".0") + " min"
    return f"{seconds / 3600:.1f} h"
