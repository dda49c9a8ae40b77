"""Enforce: apply the group's policy; serve the block page or let the request through."""

from __future__ import annotations

from mitmproxy import http

from ..gateway import Gateway
from ..policy import ALLOW
from . import CLASSIFICATION, IDENTITY, RULES, VERDICT, fail_closed, needs_decision, serve_verdict


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
            verdict = flow.metadata[RULES].policy.decide(identity, classification)
            flow.metadata[VERDICT] = verdict
            if verdict.action != ALLOW:
                serve_verdict(self.gateway, flow, verdict)
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            fail_closed(self.gateway, flow, "enforce", e)

    def request(self, flow: http.HTTPFlow) -> None:
        """Last line of defence before the origin: nothing goes out without an allow verdict.

        Catches flows whose `requestheaders` never ran our decision (a future code path, another
        addon interfering) so the gateway can never fail open.
        """
        if not flow.live or flow.response is not None:
            return
        verdict = flow.metadata.get(VERDICT)
        if verdict is None or verdict.action != ALLOW:
            fail_closed(
                self.gateway, flow, "enforce",
                _MissingDecision(f"request reached the origin stage without an allow verdict ({verdict})"),
            )
