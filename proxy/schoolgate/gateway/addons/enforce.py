"""Enforce: apply the group's policy; serve the block page, or let the request through with safe
search locked (search parameters rewritten, the YouTube-Restrict header set)."""

from __future__ import annotations

from mitmproxy import http

from ..service import Gateway
from ...policy import ALLOW
from ...policy.safesearch import lock_form_body
from ...classify.search import extract_search
from . import (
    BODY_PENDING, CLASSIFICATION, IDENTITY, RULES, SEARCH, VERDICT, fail_closed, needs_decision,
    serve_verdict,
)

SAFE_SEARCH = "schoolgate.safe_search"  # the Rewrite applied, for the body lock and the metric


class _MissingDecision(RuntimeError):
    pass


class Enforce:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not needs_decision(flow):
            return
        try:
            identity = flow.metadata[IDENTITY]
            classification = flow.metadata[CLASSIFICATION]
            policy = flow.metadata[RULES].policy
            request = flow.request
            verdict = policy.decide(identity, classification)
            verdict = policy.check_request(
                verdict, request.method, request.host, request.path, request.headers
            )
            verdict = self._keywords(flow, verdict, flow.metadata.get(SEARCH), classification)
            if verdict.action == ALLOW:
                # Before the verdict is published: a rewrite that fails must fail closed.
                self._lock_safe_search(flow, policy, verdict.group)
            flow.metadata[VERDICT] = verdict
            if verdict.action != ALLOW:
                serve_verdict(self.gateway, flow, verdict)
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            fail_closed(self.gateway, flow, "enforce", e)

    @staticmethod
    def _keywords(flow: http.HTTPFlow, verdict, search, classification):
        """The keyword library's flags: in the search term for a search (the term is what the
        person typed), else in the decoded path and query the classifier already scanned."""
        rules = flow.metadata[RULES]
        library = rules.library
        if library is None:
            return rules.policy.assess_keywords(verdict, search, ())
        if search is not None:
            flags = library.match(search.normalised, normalised=True) if search.normalised else []
        elif classification is not None and classification.keywords:
            flags = list(library.findings(classification.keywords).flags)
        else:
            flags = []
        return rules.policy.assess_keywords(verdict, search, flags)

    def _lock_safe_search(self, flow: http.HTTPFlow, policy, group: str) -> None:
        request = flow.request
        rewrite = policy.safe_search(group, request.method, request.host, request.path,
                                     request.headers)
        if rewrite is None:
            return
        if rewrite.path != request.path:
            request.path = rewrite.path
        for name, value in rewrite.set_headers:
            request.headers[name] = value  # replaces every field of that name
        flow.metadata[SAFE_SEARCH] = rewrite
        if rewrite.changed:
            self.gateway.metrics.safe_search_rewrites.labels(rewrite.engine).inc()

    def request(self, flow: http.HTTPFlow) -> None:
        """Last line of defence before the origin: nothing goes out without an allow verdict.

        Catches flows whose `requestheaders` never ran our decision (a future code path, another
        addon interfering) so the gateway can never fail open.
        """
        if not flow.live or flow.response is not None:
            return
        verdict = flow.metadata.get(VERDICT)
        if flow.metadata.pop(BODY_PENDING, False) and verdict is not None and verdict.action == ALLOW:
            # A search sent in the body: read it now the body is here, and decide again.
            try:
                request = flow.request
                search = extract_search(
                    request.method, request.host, request.path,
                    request.get_content(strict=False), request.headers.get("content-type"),
                )
                if search is not None:
                    flow.metadata[SEARCH] = search
                    verdict = self._keywords(flow, verdict, search, None)
                    flow.metadata[VERDICT] = verdict
                    if verdict.action != ALLOW:
                        serve_verdict(self.gateway, flow, verdict)
                        return
            except Exception as e:  # noqa: BLE001 - fail closed on anything
                fail_closed(self.gateway, flow, "enforce", e)
                return
        rewrite = flow.metadata.get(SAFE_SEARCH)
        if rewrite is not None and rewrite.form_params and verdict is not None:
            # A form POST carries the search in its body, which is only here at `request`.
            try:
                body = flow.request.get_content(strict=False) or b""
                locked = lock_form_body(body, rewrite.form_params)
                if locked != body:
                    flow.request.set_content(locked)
                    if not rewrite.changed:
                        self.gateway.metrics.safe_search_rewrites.labels(rewrite.engine).inc()
            except Exception as e:  # noqa: BLE001 - fail closed on anything
                fail_closed(self.gateway, flow, "enforce", e)
                return
        if verdict is None or verdict.action != ALLOW:
            fail_closed(
                self.gateway, flow, "enforce",
                _MissingDecision(f"request reached the origin stage without an allow verdict ({verdict})"),
            )
