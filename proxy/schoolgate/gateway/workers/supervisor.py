"""The supervisor of `schoolgate run --workers N`: binds the proxy socket, starts N workers that
inherit it, and does once what a gateway must do once.

Why a supervisor that owns the once-only work, fed by its workers, rather than N independent
gateways writing the store: the alert engine's dedup windows and rate limits, the outbox, the
report timetable and its e-mails, the illegal-list downloads, the push API and the metrics port
are then single by construction (two workers can never send two alerts for one dedup key), and
the event store keeps its one-writer design. Workers relay events in batches over their channel;
`benchmarks/worker_events.py` measured that path against per-worker WAL writers (numbers in the
commit and the README).

Workers are new processes (`subprocess` with `pass_fds`, re-running the same program with the
internal `_worker` command), not `fork()`s of this one: forking a process with a running event
loop, threads (aiosqlite, the metrics server) and open SQLite connections copies all of them in
an undefined state, and a fresh interpreter is what a restarted worker needs anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...check.answers import ADDRESS_FILE, TOKEN_FILE
from ...config.loader import load_config
from ...config.model import Address, Config, ConfigError
from ...events import Event
from ...files import write_atomically
from ...identify.maps import IpUserMap
from ...reports.scheduler import ReportSchedule
from ...sources.illegal import load_at_start, sources_for
from ...store import EventWriter, StoreError, open_for_writing
from ...wording import counted
from ..addons.check import write_address, write_token
from ..addons.problem_reports import REPORTS_PER_HOUR, RateLimit
from ..bootstrap import announce_creation, ensure_ca
from ..metrics import GatewayMetrics, share_values
from ..ports import METRICS, PROXY, PUSH, ListenError, bind_listening
from ..pushapi import PushServer
from ..service import StartupError, alerts_for, replace_alert_routing, report_schedule_for
from .channel import Channel, open_channel

__all__ = ["Supervisor"]

log = logging.getLogger("schoolgate.workers")

MAX_START_FAILURES = 5
"""A worker that dies this many times in a row before it accepts connections is not started
again: the gateway stops, with that worker's error on stderr and exit status 1."""
STOP_TIMEOUT = 30.0
"""Seconds the workers get to drain and send their events after SIGTERM, before SIGKILL."""
PUSH_TIMEOUT = 5.0


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process
    channel: Channel
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    gone: bool = False
    released: bool = True
    """False while held: it has not been sent ("go",) and is sent nothing else."""
    acked: int = 0


@dataclass
class _Reload:
    waiting: set[int]
    outcomes: list[dict[str, Any]] = field(default_factory=list)


def _shown(address: Address) -> str:
    host = address.host
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


class _RelayedIpMap(IpUserMap):
    """The push API's map in the supervisor: every change is also kept for the workers."""

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[tuple[str, tuple[Any, ...]]] = []

    def set(self, ip: str, user: str, ttl: float, *, now: float | None = None) -> None:
        super().set(ip, user, ttl, now=now)
        self.changes.append(("ip-set", (ip, user, ttl)))

    def forget(self, ip: str, user: str | None = None) -> bool:
        dropped = super().forget(ip, user)
        if dropped:
            self.changes.append(("ip-forget", (ip, user)))
        return dropped


class Supervisor:
    """Runs `workers` workers with `command` (the program and its `_worker` command; the
    supervisor adds where to find the socket, the channel and the config). `announce(self)` is
    called once every worker accepts connections (the start-up banner)."""

    def __init__(self, config: Config, workers: int, command: Sequence[str], *,
                 announce: Callable[[Supervisor], None] = lambda supervisor: None) -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        self.config = config
        self.count = workers
        self.command = list(command)
        self.announce = announce
        self.address: tuple[str, int] = ("", 0)
        self.metrics_address: Address | None = None
        self.workers: dict[int, _Worker] = {}
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()
        self._fatal: str | None = None
        self._fatal_status = 1
        """A worker's own exit status when it could not start (2: a config the rules refuse)."""
        self._announced = False
        self._first_ready = False
        self._prepared = False
        self._reload_ids = 0
        self._reloads: dict[int, _Reload] = {}
        self._since_status: dict[int, dict[str, Any]] = {}
        self._ip_seq = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self.rate = RateLimit(REPORTS_PER_HOUR)
        """Problem reports per client address, for every worker at once."""

    # -- the whole run -----------------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until SIGTERM or SIGINT; 0 after a clean stop, 1 when workers could not start.
        Raises StartupError (a busy port among them) before anything is started."""
        sockets = self._bind()
        sock = self._sock = sockets[0]
        self.address = sock.getsockname()[:2]
        metrics_dir = Path(tempfile.mkdtemp(prefix="schoolgate-metrics-"))
        share_values(metrics_dir)  # before any metric is made, here and in every worker
        try:
            return await self._run(sock, metrics_dir)
        finally:
            for bound in sockets:
                bound.close()
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _bind(self) -> list[socket.socket]:
        """Every port the gateway listens on, before anything is started (no worker, no store,
        no CA): a busy one stops start-up with one line that says which, who holds it and what
        to change. The proxy's socket is inherited by the workers; the metrics endpoint and
        the push API are the supervisor's."""
        c = self.config
        wanted = [(c.listen, PROXY), (c.metrics, METRICS)]
        if c.identity.push is not None:
            wanted.append((c.identity.push.listen, PUSH))
        bound: list[socket.socket] = []
        try:
            for address, listener in wanted:
                bound.append(bind_listening(address, listener, c.path,
                                            inheritable=listener is PROXY))
        except ListenError as e:
            for sock in bound:
                sock.close()
            raise StartupError(str(e)) from None
        self._metrics_sock = bound[1]
        self._push_sock = bound[2] if len(bound) > 2 else None
        return bound

    async def _run(self, sock: socket.socket, metrics_dir: Path) -> int:
        c = self.config
        self.metrics = GatewayMetrics(c, shared=metrics_dir)
        self.ip_users = _RelayedIpMap()
        # Every worker starts now, held before it reads the config: its imports (the slow
        # part of a start) overlap the preparation here. Worker 0 is let go once the store,
        # the CA and the lists are ready; the others once worker 0 accepts connections, so a
        # config the rules refuse is reported once, not by every worker at once, and they load
        # the list cache worker 0 compiled instead of all compiling it together.
        keepers = [asyncio.create_task(self._keep(i), name=f"schoolgate worker {i}")
                   for i in range(self.count)]
        try:
            return await self._serve_until_stopped(keepers)
        except BaseException:
            self._stop.set()
            await self._stop_workers(keepers)
            raise

    async def _serve_until_stopped(self, keepers: list[asyncio.Task[None]]) -> int:
        c = self.config
        await asyncio.to_thread(self._prepare)
        self.writer = EventWriter(c.database_path, c.events,
                                  on_dropped=self.metrics.events_dropped.inc,
                                  on_written=self._written)
        self.alerts = alerts_for(c, self.metrics)
        self.metrics.watch_queue(lambda: self.writer.depth)
        self.metrics.watch_outbox(lambda: self.alerts.outbox_depth() if self.alerts else 0)
        self.metrics.watch_lists(self.illegal_sources)
        self.metrics.watch_checks(c.database_path)
        self.metrics.watch_processes(
            lambda: [w.proc.pid for w in list(self.workers.values()) if not w.gone])
        self.push_server: PushServer | None = None
        await self.writer.start()
        self.reports: ReportSchedule | None = None
        self.metrics_address = self.metrics.serve(self._metrics_sock)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_all, "SIGHUP")
        pidfile = c.data_dir / "schoolgate.pid"
        try:
            await self._start_backend()
            self._prepared = True
            if 0 in self.workers:
                self._release(self.workers[0])
            pidfile.write_text(f"{os.getpid()}\n")
            await self._stop.wait()
            await self._stop_workers(keepers)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self._stop_backend()
            for path in (pidfile, c.data_dir / TOKEN_FILE, c.data_dir / ADDRESS_FILE):
                path.unlink(missing_ok=True)
        if self._fatal is not None:
            log.error("%s; stopping", self._fatal)
            return self._fatal_status
        return 0

    def _prepare(self) -> None:
        """Before any worker (blocking): the CA, the store's migrations, every illegal list's
        last good copy (fetched now if there is none), the check token and address. Workers then
        only read them, so N workers never race to create the CA or download a list."""
        c = self.config
        announce_creation(c)
        ensure_ca(c)
        try:
            open_for_writing(c.database_path)
        except StoreError as e:
            raise StartupError(str(e)) from None
        self.illegal_sources = sources_for(c)
        missing = load_at_start(self.illegal_sources)
        if missing:
            raise StartupError("; ".join(missing) + " (and no last good copy to fall back on)")
        write_token(c.data_dir / TOKEN_FILE, secrets.token_urlsafe(32))
        host, port = self.address
        if host in ("", "0.0.0.0"):  # noqa: S104 - naming a bound address
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        write_address(c.data_dir / ADDRESS_FILE, host, port)

    async def _start_backend(self) -> None:
        c = self.config
        if self.alerts is not None:
            await self.alerts.start()
        self.reports = report_schedule_for(c)
        self.reports.start()
        for source in self.illegal_sources:
            self._tasks.append(asyncio.create_task(
                source.keep_fresh(functools.partial(self._broadcast, "illegal", source.name)),
                name=f"refresh {source.name}"))
        push = c.identity.push
        if push is not None:
            token = push.token_file.read_text(encoding="utf-8").strip()
            self.push_server = PushServer(
                self.ip_users, token, push.listen.host or "0.0.0.0",  # noqa: S104 - host '' asks for all
                push.listen.port, default_ttl=int(push.default_ttl),
                on_change=self._relay_ip_changes)
            await self.push_server.start(self._push_sock)
            log.info("IP map push endpoint on %s:%d", push.listen.host, self.push_server.port)
        self._tasks.append(asyncio.create_task(self._purge_ip_users(), name="purge IP map"))

    async def _stop_backend(self) -> None:
        """After the workers: every event they sent is in the writer's queue by now."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.push_server is not None:
            await self.push_server.stop()
        if self.alerts is not None:
            await self.alerts.stop()
        if self.reports is not None:
            await self.reports.stop()
        queued = await self.writer.close()
        log.info("event store closed: %s written, %d flushed at shutdown, %d dropped",
                 counted(self.writer.written, "event"), queued, self.writer.dropped)
        self.metrics.stop()

    # -- workers ---------------------------------------------------------------------------------

    async def _spawn(self, index: int, sock: socket.socket, *, held: bool = False) -> _Worker:
        """Start worker `index`; `held`: it waits for ("go",) before it reads the config."""
        ours, theirs = socket.socketpair()
        # The listen and metrics addresses as this process was given them (port 0 stays 0), so
        # a worker's reload compares like with like; the worker learns the real port from the
        # socket it inherits.
        argv = [*self.command, "--config", str(self.config.path), "--index", str(index),
                "--workers", str(self.count), "--listen", _shown(self.config.listen),
                "--metrics", _shown(self.config.metrics),
                "--listen-fd", str(sock.fileno()), "--channel-fd", str(theirs.fileno()),
                *(["--held"] if held else [])]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, pass_fds=(sock.fileno(), theirs.fileno()))
        finally:
            theirs.close()
        worker = _Worker(index, proc, await open_channel(ours), released=not held)
        if not held:
            self._release(worker)
        return worker

    def _release(self, worker: _Worker) -> None:
        """Let a held worker read its config and start; from now on it gets every message."""
        if worker.gone:
            return
        if not worker.released:
            worker.released = True
            worker.channel.send("go")
        entries = self.ip_users.pushed_entries()
        if entries:  # a (re)started worker knows who is where before its first request
            worker.channel.send("ip-set", 0, entries)

    def _release_held(self) -> None:
        for worker in self.workers.values():
            if not worker.released:
                self._release(worker)

    async def _keep(self, index: int) -> None:
        """Keep worker `index` running until the gateway stops: start it, serve its channel,
        and when it dies start it again (counted), backing off while it dies before it is
        ready; after MAX_START_FAILURES such deaths in a row, stop the gateway."""
        failures = 0
        while not self._stop.is_set():
            # At the first start every worker is held (see `_run`); a restart is not.
            held = not self._prepared if index == 0 else not self._first_ready
            worker = await self._spawn(index, self._sock, held=held)
            self.workers[index] = worker
            if self._stop.is_set():
                # The gateway began to stop (a start-up failure) while this worker was being
                # spawned, after `_stop_workers` signalled the others: a held worker would wait
                # for its "go" until STOP_TIMEOUT ran out.
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM)
            if not worker.released and (self._prepared if index == 0 else self._first_ready):
                self._release(worker)  # what it was held for happened while it was spawned
            serving = asyncio.create_task(self._serve(worker))
            status = await worker.proc.wait()
            await serving  # to the end of what it sent: its socket is closed now
            worker.gone = True
            self._worker_gone(worker)
            if self._stop.is_set():
                return
            if worker.ready:
                failures = 0
                log.error("worker %d (pid %d) died (status %s); starting it again", index,
                          worker.proc.pid, status)
            else:
                failures += 1
                if not self._announced or failures >= MAX_START_FAILURES:
                    self._fatal = (f"worker {index} exited with status {status} before it "
                                   f"accepted connections ({failures} time(s); its error is "
                                   "above)")
                    self._fatal_status = status if status > 0 else 1
                    self._stop.set()
                    return
                delay = min(0.5 * 2 ** (failures - 1), 10.0)
                log.error("worker %d exited with status %s before it accepted connections; "
                          "starting it again in %.1fs", index, status, delay)
                await asyncio.sleep(delay)
                if self._stop.is_set():
                    return
            if self.metrics.worker_restarts is not None:
                self.metrics.worker_restarts.inc()

    async def _serve(self, worker: _Worker) -> None:
        """Everything worker `worker` sends, until its end of the channel closes."""
        while (message := await worker.channel.receive()) is not None:
            kind = message[0]
            try:
                if kind == "events":
                    await self._record(message[1])
                elif kind == "ready":
                    worker.ready = True
                    self._update_up()
                    self._changed.set()
                    if worker.index == 0 and not self._first_ready:
                        self._first_ready = True
                        self._release_held()
                    log.info("worker %d (pid %d) accepting connections", worker.index,
                             message[1])
                    self._announce_when_all_ready()
                elif kind == "rate":
                    allowed = self.rate.take(message[2])
                    worker.channel.send("answer", message[1], allowed,
                                        self.rate.retry_after(message[2]))
                elif kind == "ack":
                    worker.acked = max(worker.acked, message[1])
                    self._changed.set()
                elif kind == "reloaded":
                    self._reloaded(worker, message[1], message[2])
                else:
                    log.warning("worker %d sent an unknown message %r", worker.index, kind)
            except Exception:  # noqa: BLE001 - one bad message must not cut a worker off
                log.exception("worker %d: could not handle %s", worker.index, kind)
        await worker.channel.close()

    async def _record(self, events: list[Event]) -> None:
        await self.writer.put_waiting(events)
        if self.alerts is not None:
            for event in events:
                try:
                    self.alerts.consider(event)
                except Exception:  # noqa: BLE001 - alerting must never break recording
                    log.exception("the alert engine failed on an event; the event is still "
                                  "stored")

    def _worker_gone(self, worker: _Worker) -> None:
        self._update_up()
        self._changed.set()
        for request, pending in list(self._reloads.items()):
            pending.waiting.discard(worker.index)  # it reads the new config when it restarts
            if not pending.waiting:
                self._finish_reload(request)

    def _update_up(self) -> None:
        if self.metrics.workers_up is not None:
            self.metrics.workers_up.set(sum(1 for w in self.workers.values()
                                            if w.ready and not w.gone))

    def _announce_when_all_ready(self) -> None:
        if self._announced or len(self.workers) < self.count:
            return
        if all(w.ready and not w.gone for w in self.workers.values()):
            self._announced = True
            self.announce(self)

    def _live(self) -> list[_Worker]:
        return [w for w in self.workers.values()
                if w.released and not w.gone and not w.channel.closing]

    def _broadcast(self, *message: object) -> None:
        for worker in self._live():
            worker.channel.send(*message)

    async def _stop_workers(self, keepers: list[asyncio.Task[None]]) -> None:
        """Stop in stages: SIGTERM every worker (each stops accepting, finishes its flows and
        sends its last events), wait with a bound, then SIGKILL what is left."""
        for worker in self.workers.values():
            if worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM)
        done, pending = await asyncio.wait(keepers, timeout=STOP_TIMEOUT)
        if pending:
            log.error("workers still running %.0fs after SIGTERM: killing them", STOP_TIMEOUT)
            for worker in self.workers.values():
                if worker.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.kill()
            await asyncio.wait(pending, timeout=10)

    # -- reloads -------------------------------------------------------------------------------

    def reload_all(self, why: str) -> None:
        """Ask every worker to reload; `reload-status.json` is written when all have answered,
        so `schoolgate reload`, `block` and `allow` confirm a change in force in every worker."""
        self._reload_ids += 1
        request = self._reload_ids
        live = self._live()
        self._reloads[request] = _Reload({w.index for w in live})
        for worker in live:
            worker.channel.send("reload", request, why)
        if not live:
            self._finish_reload(request)

    def _reloaded(self, worker: _Worker, request: int | None, outcome: dict[str, Any]) -> None:
        if request is None:
            if worker.index == 0 and outcome.get("ok"):
                # Worker 0 took up a change (however it was asked): alerts follow its routing.
                self._tasks.append(asyncio.create_task(self._refresh_alert_routing()))
            # A reload each worker's file watcher started: the status says so once every
            # worker has reloaded since the last status.
            self._since_status[worker.index] = outcome
            if all(w.index in self._since_status for w in self._live() if w.ready):
                self._write_status(list(self._since_status.values()))
            return
        pending = self._reloads.get(request)
        if pending is None:
            return
        pending.outcomes.append(outcome)
        pending.waiting.discard(worker.index)
        if not pending.waiting:
            self._finish_reload(request)

    def _finish_reload(self, request: int) -> None:
        self._write_status(self._reloads.pop(request).outcomes)

    def _write_status(self, outcomes: list[dict[str, Any]]) -> None:
        """`reload-status.json` for reloads every worker has answered: ok when all took it."""
        self._since_status = {}
        problems = list(dict.fromkeys(p for o in outcomes for p in o.get("problems", [])))
        status = {
            "ok": bool(outcomes) and all(o.get("ok") for o in outcomes),
            "why": outcomes[0].get("why") if outcomes else "no worker running",
            "at": time.time(),
            "seconds": max((o.get("seconds", 0) for o in outcomes), default=0),
            "generation": min((o.get("generation", 0) for o in outcomes), default=0),
            "problems": problems,
            "workers": len(outcomes),
        }
        try:
            write_atomically(self.config.data_dir / "reload-status.json", json.dumps(status),
                             mode=0o644)
        except OSError as e:
            log.warning("cannot write the reload status file: %s", e)

    async def _refresh_alert_routing(self) -> None:
        try:
            config = await asyncio.to_thread(load_config, self.config.path)
        except ConfigError:
            return  # worker 0 reloaded it a moment ago; a file changed again since
        except Exception:  # noqa: BLE001 - the running alert rules stay
            log.exception("alerts: could not re-read the config; the alert rules stay")
            return
        replace_alert_routing(self.alerts, config)

    # -- the IP map ------------------------------------------------------------------------------

    async def _relay_ip_changes(self) -> None:
        """Pass the push API's changes to every worker and wait (bounded) until each has them."""
        changes, self.ip_users.changes = self.ip_users.changes, []
        if not changes:
            return
        self._ip_seq += 1
        seq = self._ip_seq
        targets = self._live()
        for kind in ("ip-set", "ip-forget"):
            entries = [entry for k, entry in changes if k == kind]
            if entries:
                for worker in targets:
                    worker.channel.send(kind, seq, entries)
        deadline = time.monotonic() + PUSH_TIMEOUT
        while not all(w.gone or w.acked >= seq for w in targets):
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("IP map: not every worker confirmed a change within %.0fs",
                            PUSH_TIMEOUT)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def _purge_ip_users(self, interval: float = 60.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.ip_users.purge()

    def _written(self, count: int, seconds: float) -> None:
        self.metrics.events_written.inc(count)
        self.metrics.store_write_seconds.observe(seconds)
