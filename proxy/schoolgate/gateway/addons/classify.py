"""Classify: what the request is, from the lists, the keyword library and its shape. The
destination host is the one mitmproxy will connect to (`request.host`), not a Host header the
client may have forged."""

from __future__ import annotations

from mitmproxy import http

from ...classify import URLError
from ..decision import classify_request
from ..service import Gateway
from . import begin, fail_closed, head_of, needs_decision, refuse_bad_request
from .request_heads import refused_target


class _MissingIdentity(RuntimeError):
    pass


class Classify:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not needs_decision(flow):
            return
        try:
            d = begin(self.gateway, flow)
            if d.identity is None:
                raise _MissingIdentity("request reached classify without an identity")
            request = flow.request
            try:
                # The URL is built from request.host: the destination, not the Host header.
                # A search in the body (YouTube's in-page search, DuckDuckGo's no-JavaScript
                # form) is read once the body has arrived, at `request` (Enforce).
                d.classification = classify_request(d.rules, head_of(request))
            except URLError as e:
                refuse_bad_request(flow, d, d.identity.group, str(e))
                return
            if d.classification.unreachable is None and refused_target(request) is not None:
                # Never: `request_heads` reads only heads the classifier finds unreachable.
                # Were it to happen, the request would be sent as http to its port.
                raise RuntimeError("a request head the proxy refused was classified as sendable")
            d.body_pending = d.classification.search_in_body
        except Exception as e:  # noqa: BLE001 - fail closed on anything, bad hosts included
            fail_closed(self.gateway, flow, "classify", e)
