"""Enforce: apply the group's policy; serve the block page, or let the request through with safe
search locked (search parameters rewritten, the YouTube-Restrict header set)."""

from __future__ import annotations

from mitmproxy import http

from ...policy import ALLOW
from ...policy.safesearch import lock_form_body
from ..decision import Decision, decide_request, read_body
from ..service import Gateway
from . import begin, fail_closed, head_of, needs_decision, serve_verdict


class _MissingDecisionError(RuntimeError):
    pass


class Enforce:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not needs_decision(flow):
            return
        try:
            d = begin(self.gateway, flow)
            if d.identity is None or d.classification is None:
                raise _MissingDecisionError("request reached enforce unidentified or "
                                            "unclassified")
            verdict = decide_request(d.rules, d.identity, d.classification)
            if verdict.action == ALLOW:
                # Before the verdict is published: a rewrite that fails must fail closed.
                self._lock_safe_search(flow, d)
            d.verdict = verdict
            if verdict.action != ALLOW:
                serve_verdict(flow, d.rules, verdict)
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            fail_closed(self.gateway, flow, "enforce", e)

    def _lock_safe_search(self, flow: http.HTTPFlow, d: Decision) -> None:
        request = flow.request
        if d.identity is None:
            raise RuntimeError("safe search is locked only after identify")
        rewrite = d.rules.policy.safe_search(d.identity.group, request.method, request.host,
                                             request.path, request.headers)
        if rewrite is None:
            return
        if rewrite.path != request.path:
            request.path = rewrite.path
        for name, value in rewrite.set_headers:
            request.headers[name] = value  # replaces every field of that name
        d.safe_search = rewrite
        if rewrite.changed:
            self.gateway.metrics.safe_search_rewrites.labels(rewrite.engine).inc()

    def request(self, flow: http.HTTPFlow) -> None:
        """Last line of defence before the origin: nothing goes out without an allow verdict.

        Catches flows whose `requestheaders` never ran our decision (a future code path, another
        addon interfering) so the gateway can never fail open.
        """
        if not flow.live or flow.response is not None:
            return
        d = begin(self.gateway, flow)
        if d.body_pending and d.verdict is not None and d.verdict.action == ALLOW:
            # A search sent in the body: read it now the body is here, and decide again.
            try:
                d.body_pending = False
                request = flow.request
                if d.identity is None or d.classification is None:
                    raise RuntimeError("a body is read only after identify and classify")
                d.classification, after = read_body(
                    d.rules, d.identity, d.classification, head_of(request),
                    request.get_content(strict=False), request.headers.get("content-type"))
                if after is not None:
                    d.verdict = after
                    if after.action != ALLOW:
                        serve_verdict(flow, d.rules, after)
                        return
            except Exception as e:  # noqa: BLE001 - fail closed on anything
                fail_closed(self.gateway, flow, "enforce", e)
                return
        d.body_pending = False
        rewrite = d.safe_search
        if rewrite is not None and rewrite.form_params and d.verdict is not None:
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
        if d.verdict is None or d.verdict.action != ALLOW:
            fail_closed(
                self.gateway, flow, "enforce",
                _MissingDecisionError("request reached the origin stage without an allow verdict "
                                      f"({d.verdict})"),
            )
