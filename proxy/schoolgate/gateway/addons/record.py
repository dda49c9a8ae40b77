"""Record: queue one event per decision for the batched store writer. Never waits, never does I/O.
"""

from __future__ import annotations

import logging
import time

from mitmproxy import http

from ..decision import event_for
from ..service import Gateway
from . import decision_of, head_of

log = logging.getLogger("schoolgate.record")


class Record:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        d = decision_of(flow)
        if d is None or d.verdict is None or d.recorded or d.body_pending:
            return  # a search in the body is recorded at `request`, once it is decided
        d.recorded = True
        verdict = d.verdict
        try:
            request = flow.request
            head = head_of(request)
            event = event_for(
                verdict, d.identity, ts=request.timestamp_start,
                client_ip=flow.client_conn.peername[0], method=request.method,
                scheme=head.scheme,
                # The destination mitmproxy connects to, never a Host header the client chose.
                host=request.host, url=head.url)
        except Exception:  # noqa: BLE001 - the verdict stands; losing the record is counted
            log.exception("could not build the event for a %s decision", verdict.action)
            self.gateway.metrics.events_dropped.inc()
            return
        self.gateway.record(event)

    # A flow blocked by Enforce's last-line check at `request` is recorded and counted there.
    request = requestheaders

    def response(self, flow: http.HTTPFlow) -> None:
        """A page ScanPages judged by its text is an event of its own, under the same
        reference, beside the request's allow recorded at `requestheaders`: the request was
        allowed by its address, then the page blocked by its words; two decisions, each kept.
        (Holding every allow back until its response would lose the record of requests that
        never get one, which `schoolgate event` finds under an error page's reference.)"""
        record_page(self.gateway, flow)


def record_page(gateway: Gateway, flow: http.HTTPFlow) -> None:
    """Queue the event for the verdict on `flow`'s page text, once: at `response`, or at once
    when ScanPages cuts a stream (whose `response` comes only when the server ends it)."""
    d = decision_of(flow)
    if d is None or d.page is None or d.page_recorded:
        return
    d.page_recorded = True
    verdict = d.page
    try:
        request = flow.request
        head = head_of(request)
        event = event_for(
            verdict, d.identity, ts=time.time(), client_ip=flow.client_conn.peername[0],
            method=request.method, scheme=head.scheme, host=request.host, url=head.url)
    except Exception:  # noqa: BLE001 - the page's verdict stands; the lost record is counted
        log.exception("could not build the event for a page's %s", verdict.action)
        gateway.metrics.events_dropped.inc()
        return
    gateway.record(event)
