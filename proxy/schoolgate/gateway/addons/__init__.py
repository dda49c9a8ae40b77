"""Schoolgate's mitmproxy addons, one per module, run in one fixed order for every request:
identify → classify → enforce → record → metrics; TLS decisions (at CONNECT and the ClientHello,
before anything is decrypted) sit beside identify.

Each addon decides at `requestheaders`, so a blocked request costs no upstream connection, and
leaves its result in `flow.metadata` under the keys below so later addons never repeat work.
mitmproxy logs and swallows exceptions raised by hooks, which would let the request through;
so every decision hook catches its own failure and calls `fail_closed`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mitmproxy import http

from ..service import Gateway
from ...identify import Identity
from ...policy import BLOCK, Policy, Verdict, new_reference

IDENTITY = "schoolgate.identity"
CLASSIFICATION = "schoolgate.classification"
VERDICT = "schoolgate.verdict"
STARTED = "schoolgate.started"
RECORDED = "schoolgate.recorded"
RULES = "schoolgate.rules"  # the rule generation this request is decided by
SEARCH = "schoolgate.search"  # the SearchQuery, when the request is a search
BODY_PENDING = "schoolgate.body_pending"  # a search in the body: decided at `request`
# A page the gateway answers itself (the problem-report forms): never classified, never sent to a
# server; its addon answers it by `request`, or Enforce's last-line check fails it closed.
OWN_PAGE = "schoolgate.own_page"

__all__ = [
    "CLASSIFICATION",
    "IDENTITY",
    "VERDICT",
    "fail_closed",
    "ordered",
    "refuse_bad_request",
    "serve_verdict",
]


def ordered(gateway: Gateway) -> list:
    """The addons in the order they must run."""
    from .check import CheckMode
    from .classify import Classify
    from .enforce import Enforce
    from .identify import Identify
    from .metrics import Metrics
    from .problem_reports import ProblemReports
    from .record import Record
    from .tls import TlsDecisions

    # `schoolgate check`: CheckMode first (it admits check requests and strips their header
    # before anything reads them), its answer right after Enforce (the verdict is known, and
    # nothing has been sent anywhere).
    check = CheckMode(gateway)
    # ProblemReports after Identify (a report is stored with who sent it) and before Classify
    # (the forms are answered on blocked hosts too).
    return [check, Identify(gateway), TlsDecisions(gateway), ProblemReports(gateway),
            Classify(gateway), Enforce(gateway), check.answer, Record(gateway), Metrics(gateway)]


def identify_client(gateway: Gateway, rules, where) -> Identity:
    """Who is behind a flow or a client connection, by the rules of generation `rules`."""
    client = where.client_conn if isinstance(where, http.HTTPFlow) else where
    checked = gateway.check_identity(client)
    if checked is not None:  # a `schoolgate check` connection: the group its header named
        return checked
    return rules.identity.identify(client.peername[0], proxy_user=gateway.logins.get(client))


def needs_decision(flow: http.HTTPFlow) -> bool:
    """Cheap guard: skip flows already answered (by us or another addon) or no longer live."""
    return (flow.live and flow.response is None and VERDICT not in flow.metadata
            and OWN_PAGE not in flow.metadata)


def serve_verdict(gateway: Gateway, flow: http.HTTPFlow, verdict: Verdict) -> None:
    """Answer `flow` with the block page for `verdict`. Works inside intercepted TLS too."""
    when = datetime.fromtimestamp(flow.request.timestamp_start or 0, UTC)
    host = flow.request.host  # what was classified, not the client's Host header
    rules = flow.metadata.get(RULES) or gateway.rules
    page = rules.block_page.render(verdict, host, when, url=flow.request.url)
    flow.response = http.Response.make(page.status, page.body, page.headers)


def refuse_bad_request(flow: http.HTTPFlow, group: str, problem: str) -> None:
    """Answer a request that cannot be classified because it is malformed with 400 (the client is
    at fault, not the filter). It is recorded as a block and never reaches a server."""
    flow.metadata[VERDICT] = Verdict(
        action=BLOCK,
        group=group,
        reference=new_reference(),
        rule=f"malformed request: {problem}",
        reason="bad-request",
    )
    flow.response = http.Response.make(
        400,
        f"Bad request: {problem}\n".encode(),
        {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"},
    )


def fail_closed(gateway: Gateway, flow: http.HTTPFlow, stage: str, exc: BaseException) -> None:
    """Block `flow` with the 'filtering error' page (503), count it and log it (once)."""
    gateway.fail_closed(stage, exc)
    identity = flow.metadata.get(IDENTITY)
    group = identity.group if identity is not None else gateway.config.default_group
    verdict = Policy.failed(group, stage)
    flow.metadata[VERDICT] = verdict
    try:
        serve_verdict(gateway, flow, verdict)
    except Exception:  # noqa: BLE001 - the page itself failed; still never let the request out
        flow.response = http.Response.make(
            503, b"Filtering error: this request was blocked.", {"Content-Type": "text/plain"}
        )
