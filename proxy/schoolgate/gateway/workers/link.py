"""A worker's side of its channel to the supervisor: events go up in batches (`EventRelay`, the
worker's stand-in for the store writer), and what must be the same in every worker comes down:
reloads asked for with SIGHUP or `schoolgate reload`, IP map entries pushed to the one push
endpoint, illegal lists the supervisor refreshed. Problem-report rate limits are asked of the
supervisor, which counts for every worker.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from ...config.model import EventSettings
from ...events import Event
from ...identify.maps import IpUserMap
from ...wording import counted
from .channel import Channel, open_channel

__all__ = ["EventRelay", "WorkerLink"]

log = logging.getLogger("schoolgate.workers")


class EventRelay:
    """The worker's event writer: `put` never waits (the hot path), a task sends what has queued
    to the supervisor as one message per batch and waits for the socket, so a slow store slows
    the relay, never a request. The queue is bounded by `events.queue_size`: past it an event is
    dropped and counted, as the store writer does. Same surface as `store.EventWriter`."""

    def __init__(self, settings: EventSettings, *,
                 on_dropped: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.on_dropped = on_dropped
        self._queue: collections.deque[Event] = collections.deque()
        self._ready = asyncio.Event()
        self._held = 0
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.channel: Channel | None = None
        self.written = 0
        """Events handed to the supervisor (its socket has them: a worker killed now loses
        none of these)."""
        self.dropped = 0

    @property
    def depth(self) -> int:
        return len(self._queue) + self._held

    async def start(self) -> None:
        if self.channel is None:
            raise RuntimeError("the relay sends only once the worker's channel is open")
        self._task = asyncio.create_task(self._run(), name="schoolgate event relay")

    def put(self, event: Event) -> bool:
        if self._closing and self._task is None:
            # After close: nothing would send it. Counted, never silently lost.
            self._count_dropped(1)
            log.error("an event was recorded after the relay closed; not stored")
            return False
        if len(self._queue) >= self.settings.queue_size:
            self._count_dropped(1)
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("event queue full (%s): %s dropped so far; the supervisor's store "
                          "writer is too slow or gone", counted(self.settings.queue_size, "event"),
                          counted(self.dropped, "event"))
            return False
        self._queue.append(event)
        self._ready.set()
        return True

    async def _run(self) -> None:
        # No timer: a batch is whatever queued while the last one was being sent, so events
        # reach the supervisor within a loop turn when idle and in large batches under load.
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                n = min(len(self._queue), self.settings.batch_size)
                batch = [self._queue.popleft() for _ in range(n)]
                self._held = n
                try:
                    if self.channel is None or self.channel.closing:
                        raise ConnectionError("the channel is closed")
                    self.channel.send("events", batch)
                    await self.channel.drain()
                except ConnectionError:
                    log.error("the supervisor is gone: %s not stored",
                              counted(n + len(self._queue), "event"))
                    self._count_dropped(n + len(self._queue))
                    self._queue.clear()
                    self._held = 0
                    return
                self.written += n
                self._held = 0
            if self._closing:
                return

    def _count_dropped(self, n: int) -> None:
        self.dropped += n
        for _ in range(n):
            self.on_dropped()

    async def close(self, timeout: float = 15.0) -> int:
        """Send everything queued (bounded), then stop. Returns how many were queued."""
        if self._task is None:
            return 0
        queued = self.depth
        self._closing = True
        self._ready.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            log.error("gave up sending events to the supervisor after %.0fs at shutdown; "
                      "%s not stored", timeout, counted(self.depth, "event"))
        self._task = None
        return queued


class WorkerLink:
    """One worker's channel: started by the gateway (`start`), before the proxy listens."""

    def __init__(self, index: int, channel_socket: socket.socket, settings: EventSettings
                 ) -> None:
        self.index = index
        self.primary = index == 0
        """Worker 0 does what a gateway does once, not once per worker: it audits reloads,
        counts them, and runs the scheduled filter check."""
        self.relay = EventRelay(settings)
        self._socket = channel_socket
        self.channel: Channel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._calls: dict[int, asyncio.Future[tuple[Any, ...]]] = {}
        self._ids = itertools.count(1)
        self.on_lost: Callable[[], None] = lambda: None
        """Called when the supervisor has gone: the worker shuts down."""
        self._reload: Callable[[str], Awaitable[dict[str, Any]]] | None = None
        self._ip_users: IpUserMap | None = None
        self._restore_list: Callable[[str], Awaitable[None]] | None = None

    async def start(self, *, reload: Callable[[str], Awaitable[dict[str, Any]]],
                    ip_users: IpUserMap, restore_list: Callable[[str], Awaitable[None]]) -> None:
        """Open the channel and serve the supervisor's messages. `reload(why)` reloads and
        returns the outcome; `restore_list(name)` re-reads an illegal list's last good copy."""
        self._reload, self._ip_users, self._restore_list = reload, ip_users, restore_list
        self.channel = await open_channel(self._socket)
        self.relay.channel = self.channel
        await self.relay.start()
        self._spawn(self._receive(), "schoolgate supervisor channel")

    def reloaded(self, outcome: dict[str, Any]) -> None:
        """After any reload of this worker's (the supervisor refreshes its alert routing when
        worker 0 has reloaded)."""
        if self.channel is not None and not self.channel.closing:
            self.channel.send("reloaded", None, outcome)

    def ready(self) -> None:
        """Tell the supervisor this worker is accepting connections."""
        if self.channel is not None:
            self.channel.send("ready", os.getpid())

    async def take_report(self, client: str) -> tuple[bool, int]:
        """Count one problem report for `client` against the limit every worker shares; returns
        (allowed, seconds until the client may send again)."""
        answer = await self._call("rate", client)
        return bool(answer[0]), int(answer[1])

    async def stop(self) -> None:
        """After the relay has sent everything: close the channel (the supervisor reads it to
        the end, then sees this worker finish)."""
        await self.relay.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for future in self._calls.values():
            future.cancel()
        if self.channel is not None:
            await self.channel.close()

    # -- parts -----------------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, kind: str, *args: object, timeout: float = 5.0) -> tuple[Any, ...]:
        if self.channel is None or self.channel.closing:
            raise ConnectionError("no channel to the supervisor")
        call = next(self._ids)
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self._calls[call] = future
        try:
            self.channel.send(kind, call, *args)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._calls.pop(call, None)

    async def _receive(self) -> None:
        channel = self.channel
        if channel is None:
            return
        while (message := await channel.receive()) is not None:
            try:
                self._handle(message)
            except Exception:  # noqa: BLE001 - one bad message must not cut the worker off
                log.exception("worker %d: could not apply %s from the supervisor", self.index,
                              message[0])
        log.warning("worker %d: the supervisor has gone; stopping", self.index)
        self.on_lost()

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "answer":
            future = self._calls.get(message[1])
            if future is not None and not future.done():
                future.set_result(message[2:])
        elif kind in ("ip-set", "ip-forget"):
            self._apply_ip(kind, message[2])
            if self.channel is not None:
                self.channel.send("ack", message[1])
        elif kind == "reload":
            self._spawn(self._reload_for(message[1], message[2]), "schoolgate reload")
        elif kind == "illegal" and self._restore_list is not None:
            self._spawn(self._restore_list(message[1]), "schoolgate illegal list")
        else:
            log.warning("worker %d: unknown message %r from the supervisor", self.index, kind)

    def _apply_ip(self, kind: str, entries: list[tuple[Any, ...]]) -> None:
        ip_users = self._ip_users
        if ip_users is None:
            return
        now = ip_users.clock()
        for entry in entries:
            try:
                if kind == "ip-set":
                    ip_users.set(entry[0], entry[1], entry[2], now=now)
                else:
                    ip_users.forget(entry[0], entry[1])
            except ValueError as e:  # checked by the push API already; never stop the rest
                log.warning("worker %d: IP map entry not applied: %s", self.index, e)

    async def _reload_for(self, request: int, why: str) -> None:
        if self._reload is None:
            return
        outcome = await self._reload(why)
        if self.channel is not None and not self.channel.closing:
            self.channel.send("reloaded", request, outcome)
