"""Metrics: count every decision by action, category and group; time the decision."""

from __future__ import annotations

import time

from mitmproxy import http

from ...policy import ALLOW
from ..metrics import GatewayMetrics
from ..service import Gateway
from . import decision_of


class Metrics:
    def __init__(self, gateway: Gateway):
        self.metrics = gateway.metrics

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        d = decision_of(flow)
        if d is None or d.verdict is None or d.counted or d.body_pending:
            return
        d.counted = True
        verdict = d.verdict
        self.metrics.count(verdict)
        if verdict.search is not None and (flag := verdict.flag) is not None:
            self.metrics.flagged_searches.labels(flag.theme, flag.severity, verdict.group).inc()
        self.metrics.decision_seconds.observe(time.perf_counter() - d.started)

    # A flow blocked by Enforce's last-line check at `request` is recorded and counted there.
    request = requestheaders

    def response(self, flow: http.HTTPFlow) -> None:
        count_page(self.metrics, flow)


def count_page(metrics: GatewayMetrics, flow: http.HTTPFlow) -> None:
    """A page blocked by its text: a block of its own kind, once (at `response`, or when
    ScanPages cuts a stream). Not a request of its own (the request is counted, as allowed, at
    `requestheaders`)."""
    d = decision_of(flow)
    if d is None or d.page is None or d.page_counted:
        return
    d.page_counted = True
    if d.page.action != ALLOW:
        metrics.count_block(d.page)

