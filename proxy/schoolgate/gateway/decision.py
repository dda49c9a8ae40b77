"""What the gateway carries through one request and one client connection: the per-flow
`Decision` every addon reads and fills (one object, not a dozen loose metadata keys), the
per-connection `ClientState` (login, cached identity, TLS decisions), and the one way an `Event`
is made from a decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..classify import Classification
from ..events import Event
from ..identify import Identity
from ..policy import Verdict
from ..policy.safesearch import Rewrite
from .rules import Rules

__all__ = ["ClientState", "Decision", "event_for"]


@dataclass(slots=True, eq=False)
class Decision:
    """One request, from its first hook to its last. Each stage fills its part; a later stage
    never decides again what an earlier one settled.

    The stages, in order (see `schoolgate.gateway.addons`): identify → classify → enforce →
    (response scanning, when it comes, reads `verdict` and may replace it) → record → metrics.
    """

    rules: Rules
    """The generation the request is decided by: taken at its first hook, so a reload in the
    middle cannot mix two."""
    started: float
    """`time.perf_counter()` at the first hook, for the decision-time metric."""
    identity: Identity | None = None
    classification: Classification | None = None
    verdict: Verdict | None = None
    body_pending: bool = False
    """The request is a search whose term is in its body: decided again at `request`, and only
    then recorded and counted."""
    safe_search: Rewrite | None = None
    """The safe-search rewrite applied, for the form-body lock and the metric."""
    own_page: bool = False
    """A page the gateway answers itself (the problem-report forms): never classified, never
    sent to a server."""
    check: str | None = None
    """A `schoolgate check` request: the group it is decided as. Not browsing: never recorded
    or counted."""
    check_answered: bool = False
    recorded: bool = False
    counted: bool = False


@dataclass(slots=True, eq=False)
class ClientState:
    """What the gateway remembers about one client connection while it is open (a CONNECT's
    tunnel, a keep-alive connection): dropped with the connection."""

    login: str | None = None
    """The proxy login verified on this connection (a CONNECT's login covers the tunnel)."""
    check: Identity | None = None
    """For a `schoolgate check` connection: the identity its check header named."""
    identity: Identity | None = None
    """The identity last worked out for this connection, reused while `identity_key` still
    holds and `identity_expires` (the IP map's clock) has not passed."""
    identity_key: tuple[int, int, str | None] = (0, -1, None)
    """(rules generation, IP map version, login) the cached identity was made with."""
    identity_expires: float = math.inf
    refuse_tls: bool = False
    """Refuse the TLS handshake (a host that must be blocked where nothing is decrypted)."""
    connect_host: str | None = None
    """The CONNECT target: the host, when the ClientHello names none."""
    passed_through: Verdict | None = None
    """For a check connection the TLS decisions would pass through undecrypted: the verdict
    its requests are answered with (decrypted instead, so nothing reaches a server)."""


def event_for(verdict: Verdict, identity: Identity | None, *, ts: float, client_ip: str,
              method: str, scheme: str, host: str | None, url: str | None) -> Event:
    """The event that records `verdict`, with the DfE fields. An illegal-list hit never carries
    its URL (it may itself be a confidential list entry): host and list name only."""
    search = verdict.search
    flag = verdict.flag
    return Event(
        ts=ts,
        client_ip=identity.ip if identity is not None else client_ip,
        group=verdict.group,
        action=verdict.action,
        reference=verdict.reference,
        user=identity.user if identity is not None else None,
        device=identity.device if identity is not None else None,
        method=method,
        scheme=scheme,
        host=host,
        url=None if verdict.illegal_list else url,
        categories=verdict.categories,
        matched_rule=verdict.rule,
        severity=verdict.severity,
        reason=verdict.reason or None,
        theme=verdict.theme,
        search_term=search.term if search is not None else None,
        engine=search.engine if search is not None else None,
        search_normalised=search.normalised if search is not None else None,
        matched_phrase=flag.phrase if flag is not None else None,
    )
