"""The running gateway's shared parts, built once from the `Config` and handed to every addon.

Nothing here imports mitmproxy: the addons in `schoolgate.addons` adapt flows to these parts, and
the CLI builds the same parts to explain verdicts without a proxy.
"""

from __future__ import annotations

import logging
import time
import traceback

from prometheus_client import CollectorRegistry

from .blockpage import BlockPage
from .classify import Classifier
from .config import Address, Config
from .identify import SubnetGroups
from .metrics import GatewayMetrics
from .policy import Policy
from .store import EventWriter, open_for_writing

__all__ = ["FailureLog", "Gateway"]

log = logging.getLogger("schoolgate")


class FailureLog:
    """Log each distinct filtering failure once with its traceback, then only a periodic count.

    A broken classifier fails every request; one traceback per request would bury the log and
    cost I/O on the hot path, while the metric still counts every one.
    """

    MAX_KINDS = 256

    def __init__(self, repeat_every: float = 60.0):
        self._seen: dict[tuple, list[float]] = {}  # kind -> [last logged, repeats since]
        self._repeat_every = repeat_every

    @staticmethod
    def kind(stage: str, exc: BaseException) -> tuple:
        """Same failure = same stage, exception type and raising line. Not the message: it often
        holds the host, and one bug hit by many hosts is still one bug."""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else None
        return (stage, type(exc).__qualname__, where)

    def report(self, stage: str, exc: BaseException) -> None:
        key = self.kind(stage, exc)
        now = time.monotonic()
        entry = self._seen.get(key)
        if entry is None:
            if len(self._seen) >= self.MAX_KINDS:
                return  # a flood of distinct failures: the metric still counts every one
            self._seen[key] = [now, 0]
            log.error(
                "filtering error in %s, request blocked (fail closed): %s\n%s",
                stage,
                exc,
                "".join(traceback.format_exception(exc)).rstrip(),
            )
            return
        entry[1] += 1
        if now - entry[0] >= self._repeat_every:
            log.error(
                "filtering error in %s repeated %d times in the last %.0fs: %s: %s",
                stage, entry[1], now - entry[0], type(exc).__name__, exc,
            )
            entry[0], entry[1] = now, 0


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        classifier: Classifier | None = None,
    ):
        self.config = config
        self.groups = SubnetGroups(config)
        self.classifier = classifier or Classifier.from_config(config)
        self.policy = Policy(config)
        self.block_page = BlockPage(config)
        self.metrics = GatewayMetrics(config, registry)
        self.failures = FailureLog()
        self.writer = EventWriter(
            config.database_path,
            config.events,
            on_dropped=self.metrics.events_dropped.inc,
            on_written=self._written,
        )
        self.metrics.watch_queue(lambda: self.writer.depth)
        self.metrics_address: Address | None = None
        self._started = False

    def _written(self, count: int, seconds: float) -> None:
        self.metrics.events_written.inc(count)
        self.metrics.store_write_seconds.observe(seconds)

    def log_lists(self) -> None:
        for summary in self.classifier.summaries:
            log.info("list %s", summary)
            for problem in summary.problems:
                log.warning("%s", problem)

    def fail_closed(self, stage: str, exc: BaseException) -> None:
        self.metrics.fail_closed.labels(stage).inc()
        self.failures.report(stage, exc)

    async def start(self, *, serve_metrics: bool = True) -> None:
        """Prepare the store and start the writer (and the metrics endpoint). Idempotent."""
        if self._started:
            return
        self._started = True
        open_for_writing(self.config.database_path)
        await self.writer.start()
        if serve_metrics:
            self.metrics_address = self.metrics.serve(self.config.metrics)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        queued = await self.writer.close()
        log.info(
            "event store closed: %d events written, %d flushed at shutdown, %d dropped",
            self.writer.written, queued, self.writer.dropped,
        )
        self.metrics.stop()
