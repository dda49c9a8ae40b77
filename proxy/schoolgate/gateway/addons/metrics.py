"""Metrics: count every decision by action, category and group; time the decision."""

from __future__ import annotations

import time

from mitmproxy import http

from ..service import Gateway
from ..metrics import ILLEGAL_CATEGORY, NO_CATEGORY, block_reason
from ...policy import ALLOW
from . import BODY_PENDING, STARTED, VERDICT

COUNTED = "schoolgate.counted"


class Metrics:
    def __init__(self, gateway: Gateway):
        self.metrics = gateway.metrics

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        verdict = flow.metadata.get(VERDICT)
        if verdict is None or flow.metadata.get(COUNTED) or flow.metadata.get(BODY_PENDING):
            return
        flow.metadata[COUNTED] = True
        category = ILLEGAL_CATEGORY if verdict.illegal_list else (verdict.category or NO_CATEGORY)
        self.metrics.requests.labels(verdict.action, category, verdict.group).inc()
        if verdict.action != ALLOW:
            self.metrics.blocks.labels(block_reason(verdict)).inc()
        if verdict.theme == "circumvention":
            self.metrics.circumvention.labels(verdict.group).inc()
        if verdict.search is not None and (flag := verdict.flag) is not None:
            self.metrics.flagged_searches.labels(flag.theme, flag.severity, verdict.group).inc()
        if (started := flow.metadata.get(STARTED)) is not None:
            self.metrics.decision_seconds.observe(time.perf_counter() - started)

    # A flow blocked by Enforce's last-line check at `request` is recorded and counted there.
    request = requestheaders
