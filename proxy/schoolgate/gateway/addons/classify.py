"""Classify: what the request is, from the category lists. The destination host is the one
mitmproxy will connect to (`request.host`), not a Host header the client may have forged."""

from __future__ import annotations

from mitmproxy import http

from ...classify import URLError
from ..service import Gateway
from ...classify.search import extract_search, needs_body
from . import (
    BODY_PENDING, CLASSIFICATION, IDENTITY, RULES, SEARCH, fail_closed, needs_decision,
    refuse_bad_request,
)


class Classify:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not needs_decision(flow):
            return
        try:
            classifier = flow.metadata[RULES].classifier
            try:
                # request.url is built from request.host: the destination, not the Host header.
                classification = classifier.classify(flow.request.url)
            except URLError as e:
                identity = flow.metadata[IDENTITY]
                refuse_bad_request(flow, identity.group, str(e))
                return
            flow.metadata[CLASSIFICATION] = classification
            request = flow.request
            # A search in the URL is known now; one in the body (YouTube's in-page search,
            # DuckDuckGo's no-JavaScript form) once the body has arrived, at `request`.
            if needs_body(request.method, request.host, request.path):
                flow.metadata[BODY_PENDING] = True
            else:
                search = extract_search(request.method, request.host, request.path)
                if search is not None:
                    flow.metadata[SEARCH] = search
        except Exception as e:  # noqa: BLE001 - fail closed on anything, bad hosts included
            fail_closed(self.gateway, flow, "classify", e)
