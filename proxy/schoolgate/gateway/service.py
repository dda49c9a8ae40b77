"""The running gateway: the parts its addons share, built once from the `Config` (the rules in
force, the illegal lists, the event writer, the alert engine, metrics, what each client
connection has shown), and the start and stop of their background work.

It decides nothing itself: the addons in `schoolgate.gateway.addons` adapt flows to these parts,
and `schoolgate.gateway.bootstrap` puts it together for `schoolgate run` and `mitmdump -s`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import socket
import weakref
from collections.abc import Coroutine
from typing import Any

from mitmproxy import connection
from prometheus_client import CollectorRegistry

from ..alerts import SafeguardingAlerts
from ..classify.illegal import IllegalLists
from ..config.model import Address, Config
from ..events import Event
from ..identify.maps import IpUserMap
from ..reports.mail import send_report_mail
from ..reports.scheduler import ReportSchedule
from ..sources.illegal import load_at_start, sources_for
from ..store import EventWriter, open_for_writing
from ..wording import counted
from .decision import ClientState
from .failures import FailureLog
from .metrics import GatewayMetrics
from .ports import METRICS, PUSH, Listener, ListenError, bind_listening
from .pushapi import PushServer
from .reload import Reloader
from .rules import Rules, build_rules, refuse_illegal_allows
from .workers.link import EventRelay, WorkerLink

__all__ = ["Gateway", "StartupError", "alerts_for", "bind_or_stop", "replace_alert_routing",
           "report_schedule_for"]

log = logging.getLogger("schoolgate")


class StartupError(Exception):
    """The gateway could not start; the message says what to fix."""


def bind_or_stop(address: Address, listener: Listener, config: Config) -> socket.socket:
    """A listening socket for `listener`, or StartupError saying who holds the port and which
    config key (or `schoolgate run` option) to change."""
    try:
        return bind_listening(address, listener, config.path)
    except ListenError as e:
        raise StartupError(str(e)) from None


def report_schedule_for(config: Config) -> ReportSchedule:
    """The daily report, weekly summary and purge timetable for `config`, mailing through the
    alert routing's SMTP server when one is configured. One builder for the single process and
    the workers' supervisor, so the two cannot schedule differently."""
    smtp = config.alert_routing.smtp if config.alert_routing is not None else None
    return ReportSchedule(
        config.database_path, config.school_name, config.timezone, config.reports,
        config.reports_dir, templates=config.templates,
        send_email=functools.partial(send_report_mail, smtp) if smtp is not None else None)


def alerts_for(config: Config, metrics: GatewayMetrics) -> SafeguardingAlerts | None:
    """The alert engine and deliverer for `config`, counting into `metrics`; None when no alert
    routing is configured. Built before traffic, so a broken template stops start-up."""
    if config.alert_routing is None:
        return None
    say_if_nothing_is_mailed(config)
    try:
        return SafeguardingAlerts(
            config.alert_routing, config.database_path, school=config.school_name,
            timezone=config.timezone,
            list_titles={n: lst.title for n, lst in config.illegal_lists.items()},
            template_folder=config.templates,
            on_outcome=lambda channel, outcome: metrics.alerts.labels(channel, outcome).inc(),
        )
    except Exception as e:  # noqa: BLE001 - TemplateError and the like: what to fix
        raise StartupError(f"alerts: {e}") from None


def say_if_nothing_is_mailed(config: Config) -> None:
    """With no mail server (`smtp: off` in the routing file), say once, at start-up or when a
    reload turns mail off, where alerts go instead: a technician who has not set up mail yet
    reads why nothing arrives, instead of a retry against a server that is not there."""
    routing = config.alert_routing
    if routing is None or not routing.email_recorded_only:
        return
    reports = config.reports.email_to or config.reports.weekly_email_to
    log.info("alerts: no mail server is configured (smtp: off in %s): e-mail alerts go to the "
             "store and the log only%s", routing.path,
             f"; reports are written to {config.reports_dir}, not e-mailed" if reports else "")


def replace_alert_routing(alerts: SafeguardingAlerts | None, config: Config) -> None:
    """After a reload: the new alert rules and e-mail templates, or the previous ones kept
    (and why logged) when the new templates are broken."""
    if alerts is None or config.alert_routing is None:
        return
    if not alerts.engine.routing.email_recorded_only:
        say_if_nothing_is_mailed(config)
    try:
        alerts.replace_routing(config.alert_routing, template_folder=config.templates)
    except Exception as e:  # noqa: BLE001 - TemplateError: an edited e-mail template
        # The new rules are in force; alerts keep their rules and templates until fixed.
        log.error("alerts: %s; the previous alert rules and e-mail templates stay in use", e)


class Gateway:
    """The parts every addon shares. `rules` is the generation in force (the reloader swaps it
    whole); everything else lives as long as the process."""

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None,
                 link: WorkerLink | None = None) -> None:
        self.config = config
        self.link = link
        """A worker of `schoolgate run --workers`: its events go to the supervisor, which also
        alerts, reports, serves metrics and the push API and refreshes the illegal lists.
        None: this process is the whole gateway (`mitmdump -s proxy/entry.py`)."""
        self.metrics = GatewayMetrics(config, registry)
        # Outlives rule generations: entries pushed by the network must survive a reload.
        self.ip_users = IpUserMap()
        self.clients: weakref.WeakKeyDictionary[connection.Client, ClientState] = (
            weakref.WeakKeyDictionary())
        """What each open client connection has shown (login, identity, TLS decisions)."""
        self.illegal_sources = sources_for(config)
        self.illegal = IllegalLists([s.list for s in self.illegal_sources])
        self.rules: Rules = build_rules(config, self.illegal, cache=True, ip_users=self.ip_users)
        self.failures = FailureLog()
        self.writer: EventWriter | EventRelay
        if link is not None:
            self.writer = link.relay
            link.relay.on_dropped = self.metrics.events_dropped.inc
        else:
            self.writer = EventWriter(config.database_path, config.events,
                                      on_dropped=self.metrics.events_dropped.inc,
                                      on_written=self._written)
        self.alerts = self._alerts(config) if link is None else None
        """Built here, before the proxy starts, so a missing template stops start-up with a
        clear message; None when no alert routing is configured."""
        self.reloader = Reloader(config, self.illegal, self.ip_users, self.metrics,
                                 current=lambda: self.rules, swap=self._swap,
                                 primary=self.primary, write_status=link is None)
        self.metrics.watch_queue(lambda: self.writer.depth)
        self.metrics.watch_outbox(lambda: self.alerts.outbox_depth() if self.alerts else 0)
        self.metrics.watch_lists(self.illegal_sources)
        self.metrics.watch_checks(config.database_path)
        self.metrics_address: Address | None = None
        self.push_server: PushServer | None = None
        self.reports: ReportSchedule | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._started = False

    def _alerts(self, config: Config) -> SafeguardingAlerts | None:
        return alerts_for(config, self.metrics)

    @property
    def primary(self) -> bool:
        """True where the once-per-gateway work happens: the only process, or worker 0."""
        return self.link is None or self.link.primary

    # -- what addons use -------------------------------------------------------------------------

    def client(self, conn: connection.Client) -> ClientState:
        """The state kept for a client connection (made on first use, dropped with it)."""
        state = self.clients.get(conn)
        if state is None:
            state = self.clients[conn] = ClientState()
        return state

    def record(self, event: Event) -> None:
        """Queue an event for the store and let the alert engine consider it (no I/O: both only
        enqueue; an alert engine failure never loses the event)."""
        self.writer.put(event)
        if self.alerts is not None:
            try:
                self.alerts.consider(event)
            except Exception:  # noqa: BLE001 - alerting must never break recording
                log.exception("the alert engine failed on an event; the event is still stored")

    def fail_closed(self, stage: str, exc: BaseException) -> None:
        self.metrics.fail_closed.labels(stage).inc()
        self.failures.report(stage, exc)

    # -- rules -----------------------------------------------------------------------------------

    def load_illegal_lists(self) -> None:
        """Start-up (blocking): each list from its last good copy, or from its source when there
        is none. A list with neither stops start-up: the gateway must never run without a
        configured illegal list. A copy older than its interval is refreshed once running."""
        missing = load_at_start(self.illegal_sources)
        if missing:
            raise StartupError("; ".join(missing) + " (and no last good copy to fall back on)")
        if self.illegal:
            # Re-check overrides now the lists are loaded.
            refuse_illegal_allows(self.config, self.rules.classifier)

    def log_lists(self) -> None:
        for summary in self.rules.classifier.summaries:
            log.info("list %s", summary)
            for problem in summary.problems:
                log.warning("%s", problem)

    def _swap(self, rules: Rules) -> None:
        self.rules = rules
        replace_alert_routing(self.alerts, rules.config)
        self.log_lists()

    def _written(self, count: int, seconds: float) -> None:
        self.metrics.events_written.inc(count)
        self.metrics.store_write_seconds.observe(seconds)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, *, serve_metrics: bool = True, watch_interval: float = 2.0) -> None:
        """Prepare the store, start the writer, the alert deliverer, the report schedule, the
        metrics endpoint, the list refreshers, the file watcher and the push API. Idempotent."""
        if self._started:
            return
        self._started = True
        if self.link is not None:
            await self._start_worker(watch_interval)
            return
        c = self.config
        # The ports first: a busy one stops start-up with one line, before anything started.
        # This process is the whole gateway only under `mitmdump -s`, where `schoolgate run`'s
        # --metrics is no option: the message names the config key alone.
        metrics = dataclasses.replace(METRICS, option=None)
        metrics_sock = bind_or_stop(c.metrics, metrics, c) if serve_metrics else None
        push = c.identity.push
        try:
            push_sock = bind_or_stop(push.listen, PUSH, c) if push is not None else None
        except StartupError:
            if metrics_sock is not None:
                metrics_sock.close()
            raise
        open_for_writing(c.database_path)
        await self.writer.start()
        if self.alerts is not None:
            await self.alerts.start()
        self.reports = report_schedule_for(c)
        self.reports.start()
        if metrics_sock is not None:
            self.metrics_address = self.metrics.serve(metrics_sock)
        await self.reloader.remember_files()
        for source in self.illegal_sources:
            self._background(source.keep_fresh(), f"refresh {source.name}")
        if watch_interval > 0:
            self._background(self.reloader.watch(watch_interval), "watch list files")
        self._background(self._purge_ip_users(), "purge IP map")
        if push is not None:
            token = push.token_file.read_text(encoding="utf-8").strip()
            self.push_server = PushServer(self.ip_users, token, push.listen.host or "0.0.0.0",  # noqa: S104 - host '' asks for all
                                          push.listen.port, default_ttl=int(push.default_ttl))
            await self.push_server.start(push_sock)
            log.info("IP map push endpoint on %s:%d", push.listen.host, self.push_server.port)

    async def _start_worker(self, watch_interval: float) -> None:
        """A worker: the supervisor has prepared the store and owns the once-only work; here
        the channel (which starts the relay), the file watcher and the IP map purge."""
        if self.link is None:
            raise RuntimeError("only a worker starts this way")
        self.reloader.on_done = self.link.reloaded
        await self.link.start(reload=self._reload_outcome, ip_users=self.ip_users,
                              restore_list=self._restore_list)
        await self.reloader.remember_files()
        if watch_interval > 0:
            self._background(self.reloader.watch(watch_interval), "watch list files")
        self._background(self._purge_ip_users(), "purge IP map")

    async def _reload_outcome(self, why: str) -> dict[str, Any]:
        await self.reloader.reload(why)
        return dict(self.reloader.last)

    async def _restore_list(self, name: str) -> None:
        """The supervisor refreshed illegal list `name` and saved its last good copy: load it."""
        for source in self.illegal_sources:
            if source.name == name and await asyncio.to_thread(source.restore):
                log.info("illegal list %s: %s, as refreshed by the supervisor", name,
                         counted(source.entries, "entry"))

    def _background(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        self._tasks.append(asyncio.create_task(work, name=name))

    async def _purge_ip_users(self, interval: float = 60.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.ip_users.purge()

    async def stop(self) -> None:
        """Stop in stages: background work first, then the push API, the alert deliverer and
        the report schedule, then the writer, which flushes what is queued (bounded)."""
        if not self._started:
            return
        self._started = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, self.reloader.stop(), return_exceptions=True)
        self._tasks.clear()
        if self.push_server is not None:
            await self.push_server.stop()
            self.push_server = None
        if self.alerts is not None:
            await self.alerts.stop()
        if self.reports is not None:
            await self.reports.stop()
            self.reports = None
        if self.link is not None:
            queued = self.writer.depth
            await self.link.stop()
            log.info("worker %d: %s sent to the supervisor, %d of them at shutdown, %d dropped",
                     self.link.index, counted(self.writer.written, "event"), queued,
                     self.writer.dropped)
            return
        queued = await self.writer.close()
        log.info("event store closed: %s written, %d flushed at shutdown, %d dropped",
                 counted(self.writer.written, "event"), queued, self.writer.dropped)
        self.metrics.stop()
