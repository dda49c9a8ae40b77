"""Prometheus metrics for Grafana: counts and latencies with bounded labels only.

Labels are action, category, group and stage: never a user, IP, host or URL (DESIGN.md). Every
known label child is created at start-up so dashboards show zeros instead of gaps, and values that
exist only at scrape time (queue depth) come from a collector. Tests pass their own registry.

Under `schoolgate run --workers N` every process keeps its counters in prometheus_client's
multiprocess files (`share_values`), and the supervisor's one endpoint sums them; the scrape-time
collectors, the build info and the process metrics are the supervisor's alone, so each appears
once.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from socketserver import ThreadingMixIn
from threading import Thread
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    make_wsgi_app,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .. import __version__
from ..alerts import OUTCOMES
from ..config.model import Address, Config
from ..events import SEVERITIES, THEMES
from ..policy import ALLOW, BLOCK, BLOCK_KINDS, ERROR, Verdict, block_kind
from ..policy.blockpage import FAILURES
from ..policy.safesearch import ENGINES
from ..sources.illegal import IllegalListSource
from ..store.checks import latest_run

__all__ = ["GatewayMetrics", "ILLEGAL_CATEGORY", "MULTIPROC_ENV",
           "NO_CATEGORY", "PAGE_OUTCOMES", "STAGES", "UNSCANNED_REASONS", "share_values"]

log = logging.getLogger("schoolgate.metrics")

NO_CATEGORY = "none"
ILLEGAL_CATEGORY = "illegal"  # every illegal-list block, whichever list: never the entry
STAGES = ("identify", "classify", "enforce", "tls", "scan")
TLS_MODES = ("decrypted", "passed_through", "refused")
BLOCK_REASONS = BLOCK_KINDS
PAGE_OUTCOMES = ("blocked", "flagged", "clean")
UNSCANNED_REASONS = ("too_large", "undecodable")
"""The `reason` label values of `schoolgate_blocks_total`: one per kind of rule that blocks."""


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_values(directory: Path) -> None:
    """Keep this process's metric values in prometheus_client's multiprocess files in
    `directory` (and, through the environment, those of every child started from now on), so one
    endpoint can add them up. Call before any metric is made: a metric keeps the kind of value
    it was made with. The supervisor calls this; its workers inherit the variable, which the
    client reads when it is imported."""
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()


def block_reason(verdict: Verdict) -> str:
    """The bounded `reason` label for a blocked verdict: the kind of rule the block page names."""
    return block_kind(verdict)


class _ListCollector(Collector):
    """Entries and age of each illegal-content list, by list name only."""

    def __init__(self, sources: Sequence[IllegalListSource]):
        self._sources = sources

    def collect(self) -> Iterable[GaugeMetricFamily]:
        entries = GaugeMetricFamily(
            "schoolgate_list_entries", "Entries loaded per list.", labels=["list"]
        )
        age = GaugeMetricFamily(
            "schoolgate_list_age_seconds",
            "Seconds since the list was last loaded successfully (+Inf: never).",
            labels=["list"],
        )
        for source in self._sources:
            entries.add_metric([source.name], source.entries)
            a = source.age()
            age.add_metric([source.name], float("inf") if a is None else a)
        yield entries
        yield age


class _QueueCollector(Collector):
    def __init__(self, depth: Callable[[], int]):
        self._depth = depth

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "schoolgate_event_queue_depth",
            "Events waiting in memory to be written to the store.",
            value=self._depth(),
        )


class _OutboxCollector(Collector):
    def __init__(self, depth: Callable[[], int]):
        self._depth = depth

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "schoolgate_alert_outbox_depth",
            "Alerts waiting to be delivered (pending in the outbox).",
            value=self._depth(),
        )


class _CheckCollector(Collector):
    """The last `schoolgate check` run, from the store's check_runs table at scrape time: the
    check runs in the CLI's process or a worker thread, and this one-row read happens in the
    metrics thread, never on the request path."""

    def __init__(self, database: Path) -> None:
        self._database = database

    def collect(self) -> Iterable[GaugeMetricFamily]:
        run = latest_run(self._database)
        yield GaugeMetricFamily(
            "schoolgate_filter_check_last_run_timestamp_seconds",
            "When the last filter check (`schoolgate check`) ran, Unix time; 0: never.",
            value=run.ts if run else 0,
        )
        yield GaugeMetricFamily(
            "schoolgate_filter_check_failures",
            "Tests that failed in the last filter check (0 when it passed or never ran).",
            value=run.failed if run else 0,
        )


class _ProcessesCollector(Collector):
    """The process metrics (CPU, memory, file descriptors) of the supervisor and its workers
    added up, as one gateway's: the capacity dashboard sizes the machine, not one process.
    Start time and the descriptor limit are the supervisor's."""

    _SUMMED = ("process_virtual_memory_bytes", "process_resident_memory_bytes",
               "process_cpu_seconds", "process_open_fds")

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self._pids = pids

    def collect(self) -> Iterable[Metric]:
        own = list(ProcessCollector(registry=None).collect())
        totals: dict[str, float] = {}
        for pid in self._pids():
            for family in ProcessCollector(pid=str(pid).__str__, registry=None).collect():
                for sample in family.samples:
                    totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        for family in own:
            if family.name in self._SUMMED:
                family.samples = [s._replace(value=s.value + totals.get(s.name, 0.0))
                                  for s in family.samples]
            yield family


class GatewayMetrics:
    """Every metric a gateway process counts. `registry` is what `serve` exposes. With `shared`
    (the supervisor of `schoolgate run`, after `share_values(shared)`), the counters' values
    live in that directory's files with every worker's, and the exposed registry sums the files
    instead of holding the counters, and also has what only the supervisor knows: the workers
    up and restarted, the build and the process."""

    def __init__(self, config: Config, registry: CollectorRegistry | None = None, *,
                 shared: Path | None = None):
        self.registry = registry or CollectorRegistry()
        r = CollectorRegistry() if shared is not None else self.registry
        self.workers_up: Gauge | None = None
        self.worker_restarts: Counter | None = None
        if shared is not None:
            MultiProcessCollector(self.registry, path=str(shared))
            self.workers_up = Gauge(
                "schoolgate_workers_up", "Gateway worker processes accepting connections.",
                multiprocess_mode="max", registry=r)
            self.worker_restarts = Counter(
                "schoolgate_worker_restarts",
                "Gateway worker processes that died and were started again.", registry=r)
        self.requests = Counter(
            "schoolgate_requests",
            "Requests decided, by action, deciding category and group.",
            ["action", "category", "group"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str, str], Counter] = {}
        self._block_children: dict[str, Counter] = {}
        self.decision_seconds = Histogram(
            "schoolgate_decision_seconds",
            "Time from the first hook to the verdict for one request.",
            buckets=(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                     0.01, 0.025, 0.1),
            registry=r,
        )
        self.fail_closed = Counter(
            "schoolgate_fail_closed_errors",
            "Requests blocked because filtering itself failed, by the stage that failed.",
            ["stage"],
            registry=r,
        )
        self.events_dropped = Counter(
            "schoolgate_events_dropped",
            "Events lost because the in-memory queue was full (should stay 0).",
            registry=r,
        )
        self.events_written = Counter(
            "schoolgate_events_written", "Events written to the store.", registry=r
        )
        self.store_write_seconds = Histogram(
            "schoolgate_store_write_seconds",
            "Time to write one batch of events (one transaction).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.blocks = Counter(
            "schoolgate_blocks",
            "Blocked requests by the kind of rule that blocked them.",
            ["reason"],
            registry=r,
        )
        for reason in BLOCK_REASONS:
            self.blocks.labels(reason)
        self.tls_handshakes = Counter(
            "schoolgate_tls_handshakes",
            "TLS connections by what the gateway did: decrypted, passed through undecrypted "
            "(do-not-decrypt list, SNI-only groups) or refused at the handshake.",
            ["mode"],
            registry=r,
        )
        for mode in TLS_MODES:
            self.tls_handshakes.labels(mode)
        self.safe_search_rewrites = Counter(
            "schoolgate_safe_search_rewrites",
            "Search and YouTube requests changed to keep safe search on, by engine.",
            ["engine"],
            registry=r,
        )
        for engine in ENGINES:
            self.safe_search_rewrites.labels(engine)
        self.circumvention = Counter(
            "schoolgate_circumvention_attempts",
            "Requests that tried to get round the filter (VPN and proxy sites, DNS-over-HTTPS, "
            "tunnels to other ports), blocked or logged, by group.",
            ["group"],
            registry=r,
        )
        for group in config.groups:
            self.circumvention.labels(group)
        self.flagged_searches = Counter(
            "schoolgate_flagged_searches",
            "Searches that matched the keyword library, by theme, severity and group.",
            ["theme", "severity", "group"],
            registry=r,
        )
        for theme in THEMES:
            for severity in SEVERITIES:
                for group in config.groups:
                    self.flagged_searches.labels(theme, severity, group)
        self.pages_scanned = Counter(
            "schoolgate_pages_scanned",
            "Pages (HTML, plain text, JSON) whose text was scanned, by outcome: blocked (score "
            "at the group's keyword_threshold), flagged (a phrase found, below it) or clean.",
            ["outcome"],
            registry=r,
        )
        for outcome in PAGE_OUTCOMES:
            self.pages_scanned.labels(outcome)
        self.page_scan_seconds = Histogram(
            "schoolgate_page_scan_seconds",
            "Time to decode, extract and score one page's text.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
            registry=r,
        )
        self.page_scan_cache = Counter(
            "schoolgate_page_scan_cache",
            "Held pages whose findings came from the worker's cache of pages scanned before "
            "(hit: the same bytes, the same library) or were scanned (miss).",
            ["result"],
            registry=r,
        )
        for result in ("hit", "miss"):
            self.page_scan_cache.labels(result)
        self.streams_scanned = Counter(
            "schoolgate_streams_scanned",
            "Responses scanned as they flow: server-sent events (AI chat answers) and pages "
            "whose declared size is over the group's page_scan.max_bytes.",
            registry=r,
        )
        self.streams_cut = Counter(
            "schoolgate_streams_cut",
            "Scanned streams cut, with a notice, when their running score reached the group's "
            "keyword_threshold (also counted in schoolgate_pages_scanned_total{outcome="
            "\"blocked\"}).",
            registry=r,
        )
        self.pages_unscanned = Counter(
            "schoolgate_pages_unscanned",
            "Pages of a scanned type passed through without their text scanned, by reason: "
            "too_large (over the group's page_scan.max_bytes as sent or once decoded), "
            "undecodable (a content encoding no browser could read either).",
            ["reason"],
            registry=r,
        )
        for reason in UNSCANNED_REASONS:
            self.pages_unscanned.labels(reason)
        self.alerts = Counter(
            "schoolgate_alerts",
            "Safeguarding alerts by channel (email or a webhook's name) and outcome: sent, "
            "retry, failed, deduplicated, rate_limited, recorded (no mail server: stored and "
            "logged only).",
            ["channel", "outcome"],
            registry=r,
        )
        routing = config.alert_routing
        if routing is not None:
            for channel in ("email", *routing.webhooks):
                for outcome in OUTCOMES:
                    self.alerts.labels(channel, outcome)
        self.problem_reports = Counter(
            "schoolgate_problem_reports",
            "Reports sent from the block page: 'unblock' (should not be blocked) and 'block' "
            "(should be blocked).",
            ["kind"],
            registry=r,
        )
        for kind in ("unblock", "block"):
            self.problem_reports.labels(kind)
        self.error_pages = Counter(
            "schoolgate_error_pages",
            "Requests answered with Schoolgate's error page instead of the site, by what went "
            "wrong: the site could not be reached (dns, dns_timeout, refused, timeout, "
            "unreachable, tls, closed, invalid, other) or the request could not be read "
            "(bad_request, too_large, loop).",
            ["kind"],
            registry=r,
        )
        for kind in FAILURES:
            self.error_pages.labels(kind)
        self.reloads = Counter(
            "schoolgate_reloads", "Rule reloads by outcome.", ["outcome"], registry=r
        )
        for outcome in ("success", "failure"):
            self.reloads.labels(outcome)
        Info("schoolgate_build", "Schoolgate version.", registry=self.registry).info(
            {"version": __version__})
        # CPU, memory and file descriptors for the capacity dashboard (our own registry does not
        # get the default process metrics). Under --workers: `watch_processes`.
        if shared is None:
            ProcessCollector(registry=self.registry)
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None

        # Known children up front so every series exists from the first scrape.
        categories = [*config.categories, NO_CATEGORY]
        for group in config.groups:
            for category in categories:
                for action in (ALLOW, BLOCK):
                    self.requests.labels(action, category, group)
            self.requests.labels(ERROR, NO_CATEGORY, group)
            self.requests.labels(BLOCK, ILLEGAL_CATEGORY, group)
        for stage in STAGES:
            self.fail_closed.labels(stage)
        # `schoolgate check` canaries: answered by the gateway itself, never in
        # schoolgate_requests_total (they are not browsing).
        self.check_requests = Counter(
            "schoolgate_filter_check_requests",
            "Check canaries (`schoolgate check`) the gateway answered itself, by the verdict's "
            "action; refused: a check header with a wrong token.",
            ["action"],
            registry=r,
        )
        for action in (ALLOW, BLOCK, ERROR, "refused"):
            self.check_requests.labels(action)

    def count(self, verdict: Verdict) -> None:
        """Count one decision: by action, deciding category and group; blocks by the kind of rule;
        attempts to get round the filter by group. The label children are kept in a dict:
        `labels()` takes a lock and checks its arguments on every call."""
        category = ILLEGAL_CATEGORY if verdict.illegal_list else (verdict.category or NO_CATEGORY)
        key = (verdict.action, category, verdict.group)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(*key)
        child.inc()
        if verdict.action != ALLOW:
            self.count_block(verdict)
        if verdict.theme == "circumvention":
            self.circumvention.labels(verdict.group).inc()

    def count_block(self, verdict: Verdict) -> None:
        """Count one block by the kind of rule that blocked it."""
        reason = block_reason(verdict)
        block = self._block_children.get(reason)
        if block is None:
            block = self._block_children[reason] = self.blocks.labels(reason)
        block.inc()

    def watch_processes(self, pids: Callable[[], Iterable[int]]) -> None:
        """The supervisor's process metrics with those of its workers (`pids`) added in."""
        self.registry.register(_ProcessesCollector(pids))

    def watch_lists(self, sources: Sequence[IllegalListSource]) -> None:
        self.registry.register(_ListCollector(sources))

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self.registry.register(_QueueCollector(depth))

    def watch_outbox(self, depth: Callable[[], int]) -> None:
        self.registry.register(_OutboxCollector(depth))

    def watch_checks(self, database: Path) -> None:
        self.registry.register(_CheckCollector(database))

    def serve(self, sock: socket.socket) -> Address:
        """Serve /metrics on the listening socket `sock` (bound with `gateway.ports`, before
        anything started, so a busy port stops start-up with one clear line) in a background
        thread; returns the address it listens on."""
        server = _MetricsServer(sock)
        server.set_app(make_wsgi_app(self.registry))
        self._server = server
        self._thread = Thread(target=server.serve_forever, name="metrics endpoint", daemon=True)
        self._thread.start()
        host, port = sock.getsockname()[:2]
        return Address(str(host), int(port))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass  # a line per scrape would bury the gateway's log


class _MetricsServer(ThreadingMixIn, WSGIServer):
    """prometheus_client's threaded WSGI server, on a socket that is already listening."""

    daemon_threads = True

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.getsockname()[:2], _QuietHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        # What `server_bind` would have set, without its reverse DNS lookup of the host.
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])
        self.setup_environ()
