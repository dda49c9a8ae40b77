"""Schoolgate's mitmproxy addons, one per module, run in one fixed order for every request:
identify → classify → enforce → scan pages → record → metrics; TLS decisions (at CONNECT and the
ClientHello, before anything is decrypted) sit beside identify, and `schoolgate check`'s mode
around them. ScanPages decides at `responseheaders` and scans at `response`.

Each addon decides at `requestheaders`, so a blocked request costs no upstream connection, and
fills its part of the flow's one `Decision` (`decision_of`) so later addons never repeat work.
mitmproxy logs and swallows exceptions raised by hooks, which would let the request through;
so every decision hook catches its own failure and calls `fail_closed`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from mitmproxy import connection, http

from ...identify import Identity
from ...policy import Policy, Verdict
from ...policy.blockpage import FAILURES
from ..decision import BAD_REQUEST_RULE, Decision, RequestHead, bad_request, request_url
from ..rules import Rules
from ..service import Gateway
from .request_heads import refused_target

__all__ = [
    "DECISION",
    "begin",
    "cached_identity",
    "decision_of",
    "fail_closed",
    "head_of",
    "identify_client",
    "needs_decision",
    "refuse_bad_request",
    "serve_verdict",
]

DECISION = "schoolgate"
"""The one `flow.metadata` key Schoolgate uses: the flow's `Decision`."""


def decision_of(flow: http.HTTPFlow) -> Decision | None:
    """The flow's decision so far, or None before its first hook."""
    return flow.metadata.get(DECISION)


def begin(gateway: Gateway, flow: http.HTTPFlow) -> Decision:
    """The flow's decision, made at its first hook with the rules in force then."""
    d = flow.metadata.get(DECISION)
    if d is None:
        d = flow.metadata[DECISION] = Decision(gateway.rules, time.perf_counter())
    return d


def needs_decision(flow: http.HTTPFlow) -> bool:
    """Cheap guard: skip flows already answered (by us or another addon) or no longer live."""
    if not flow.live or flow.response is not None:
        return False
    d = flow.metadata.get(DECISION)
    return d is None or (d.verdict is None and not d.own_page)


def cached_identity(gateway: Gateway, rules: Rules, client: connection.Client) -> Identity | None:
    """The identity worked out for this connection earlier, while it still holds: made by this
    rules generation, for the same login, with the IP map unchanged and its entry unexpired.
    A `schoolgate check` connection is the group its check header named."""
    state = gateway.clients.get(client)
    if state is None:
        return None
    if state.check is not None:
        return state.check
    users = gateway.ip_users
    if (state.identity is not None
            and state.identity_key == (rules.generation, users.version, state.login)
            and users.clock() < state.identity_expires):
        return state.identity
    return None


def identify_client(gateway: Gateway, rules: Rules, client: connection.Client) -> Identity:
    """Who is behind a client connection, by the rules of generation `rules`: from the
    connection's cache, else worked out (not cached: only Identify, which also enforces the
    login requirement, caches)."""
    identity = cached_identity(gateway, rules, client)
    if identity is not None:
        return identity
    state = gateway.clients.get(client)
    return rules.identity.identify(client.peername[0],
                                   proxy_user=state.login if state is not None else None)


def serve_verdict(flow: http.HTTPFlow, rules: Rules, verdict: Verdict) -> None:
    """Answer `flow` with the page for `verdict`: the block page, or for a bad request the 400
    page in its style (saying what is wrong). Works inside intercepted TLS too."""
    when = datetime.fromtimestamp(flow.request.timestamp_start or 0, UTC)
    host = flow.request.host  # what was classified, not the client's Host header
    if verdict.reason == "bad-request":
        page = rules.block_page.render_failure(
            FAILURES["bad_request"], host, when, verdict.reference,
            problem=(verdict.rule or "").removeprefix(BAD_REQUEST_RULE))
        flow.response = http.Response.make(page.status, page.body, page.headers)
        # The request may not have been read to its end: the connection cannot carry another.
        flow.response.headers["Connection"] = "close"
        return
    page = rules.block_page.render(verdict, host, when, url=head_of(flow.request).url)
    flow.response = http.Response.make(page.status, page.body, page.headers)


def refuse_bad_request(flow: http.HTTPFlow, decision: Decision, group: str,
                       problem: str) -> None:
    """Answer a request that cannot be classified because it is malformed with 400 (the client is
    at fault, not the filter). It is recorded as a block and never reaches a server."""
    decision.verdict = bad_request(group, problem)
    serve_verdict(flow, decision.rules, decision.verdict)


def head_of(request: http.Request) -> RequestHead:
    """The request as the stage functions of `schoolgate.gateway.decision` read it. `url` is
    built from `request.host`: the destination, not a Host header the client may have forged;
    for a request head the proxy refused and `request_heads` read, it is the target as sent."""
    url = refused_target(request) or request_url(request.scheme, request.host, request.port,
                                                 request.path)
    return RequestHead(request.method, url, request.host, request.path, request.headers)


def fail_closed(gateway: Gateway, flow: http.HTTPFlow, stage: str, exc: BaseException) -> None:
    """Block `flow` with the 'filtering error' page (503), count it and log it (once)."""
    gateway.fail_closed(stage, exc)
    d = begin(gateway, flow)
    group = d.identity.group if d.identity is not None else gateway.config.default_group
    d.verdict = Policy.failed(group, stage)
    try:
        serve_verdict(flow, d.rules, d.verdict)
    except Exception:  # noqa: BLE001 - the page itself failed; still never let the request out
        flow.response = http.Response.make(
            503, b"Filtering error: this request was blocked.", {"Content-Type": "text/plain"}
        )
