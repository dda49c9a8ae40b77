"""Identify: who is browsing (group by client subnet for now)."""

from __future__ import annotations

import time

from mitmproxy import http

from ..gateway import Gateway
from . import IDENTITY, RULES, STARTED, fail_closed, needs_decision


class Identify:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not needs_decision(flow):
            return
        flow.metadata[STARTED] = time.perf_counter()
        # One snapshot: a reload mid-request cannot mix two generations of rules.
        rules = flow.metadata[RULES] = self.gateway.rules
        try:
            flow.metadata[IDENTITY] = rules.groups.identify(flow.client_conn.peername[0])
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            fail_closed(self.gateway, flow, "identify", e)
