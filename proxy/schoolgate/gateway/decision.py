"""What the gateway carries through one request and one client connection, and what it decides
at each stage: the per-flow `Decision` every addon reads and fills (one object, not a dozen loose
metadata keys), the per-connection `ClientState` (login, cached identity, TLS decisions), the one
way an `Event` is made from a decision, and the decision of each stage as one function.

The stages, in the order a request meets them: `connect_verdict` (an explicit proxy's CONNECT),
`handshake_decision` (the TLS ClientHello), `classify_request` and `decide_request` (the request's
headers), `read_body` (a search sent in the body). The addons call them from their hooks, and
`explain` calls the same functions in the same order for `schoolgate why`, so `why` can only
give the verdict the gateway gives. Pure code: no mitmproxy import.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from ..classify import Classification, URLError
from ..classify.canonical import DEFAULT_PORTS
from ..classify.urls import idn_to_ascii, is_ip_address, normalise_host
from ..config.model import Group
from ..events import Event
from ..identify import Identity
from ..policy import ALLOW, BLOCK, Verdict, new_reference
from ..policy.decryption import Decryption, decryption
from ..policy.safesearch import Rewrite
from .rules import Rules

__all__ = [
    "BAD_REQUEST_RULE",
    "STAGES",
    "ClientState",
    "Decision",
    "Explanation",
    "Handshake",
    "RequestHead",
    "bad_request",
    "classify_request",
    "connect_verdict",
    "decide_request",
    "event_for",
    "explain",
    "handshake_decision",
    "host_verdict",
    "no_sni_verdict",
    "passed_through",
    "read_body",
    "relayed_at_connect",
    "request_head",
    "request_url",
]

BAD_REQUEST_RULE = "bad request (400): "
"""How the rule of a `bad_request` verdict starts; the rest is the problem, in words."""

STAGES = ("connect", "handshake", "request", "body")
"""Where a verdict is reached (`Explanation.stage`): the CONNECT, the TLS handshake of a
connection that is not decrypted, the request's headers, the request's body."""


@dataclass(slots=True, eq=False)
class Decision:
    """One request, from its first hook to its last. Each stage fills its part; a later stage
    never decides again what an earlier one settled.

    The stages, in order (see `schoolgate.gateway.addons`): identify → classify → enforce →
    scan pages (reads `verdict`; a page it blocks gets `page`) → record → metrics.
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
    scan: bool = False
    """The response is held (mitmproxy buffers it) to have its text scanned at `response`
    (ScanPages, decided at `responseheaders`)."""
    page: Verdict | None = None
    """The verdict on the page's text (ScanPages), to record as an event of its own: a block,
    or an allow carrying a high-severity theme. The request's own verdict is already recorded."""
    page_recorded: bool = False
    page_counted: bool = False


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
        page_score=verdict.page_score,
        page_phrases=verdict.page_phrases,
    )


# ---------------------------------------------------------------------------------------------
# The decision of each stage


class RequestHead(NamedTuple):
    """A request as the gateway holds it at `requestheaders`: what Classify reads."""

    method: str
    url: str
    """Built from the destination (scheme, host, port, path), as mitmproxy's `request.url`."""
    host: str
    """The destination host (`request.host`), never a Host header the client chose."""
    path: str
    """Path and query as sent."""
    headers: Mapping[str, str]

    @property
    def scheme(self) -> str:
        return self.url.partition(":")[0]


def request_url(scheme: str, host: str, port: int, path: str) -> str:
    """The URL of a request to `host`:`port` for `path`, as the gateway holds it: the default
    port left out, an IPv6 address in brackets."""
    netloc = f"[{host}]" if ":" in host else host
    if port != DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return f"{scheme}://{netloc}{path}"


def classify_request(rules: Rules, request: RequestHead) -> Classification:
    """What the request is (Classify, at `requestheaders`). Raises `URLError` for a request that
    cannot be classified: it is refused as a bad request (`bad_request`)."""
    return rules.classifier.classify(request.url, method=request.method, host=request.host,
                                     path=request.path, headers=request.headers)


def decide_request(rules: Rules, identity: Identity, classification: Classification,
                   now: float | None = None) -> Verdict:
    """The verdict on a classified request (Enforce, at `requestheaders`); schedules are read at
    `now`, default the policy's clock. A request no connection can be made for
    (`Classification.unreachable`) is blocked by a list that holds its canonical form, and else
    refused as a bad request: never let through."""
    verdict = rules.policy.decide(identity, classification, now)
    if classification.unreachable is not None and verdict.action != BLOCK:
        return bad_request(identity.group, classification.unreachable)
    return verdict


def read_body(rules: Rules, identity: Identity, classification: Classification,
              request: RequestHead, body: bytes | None, content_type: str | None,
              now: float | None = None) -> tuple[Classification, Verdict | None]:
    """A request whose search is in its body, once the body is here (Enforce, at `request`):
    the classification with the body's search, and the verdict decided again when the body
    holds a search (None: the verdict of the headers stands)."""
    classification = rules.classifier.with_body(classification, request.method, request.host,
                                                request.path, body, content_type)
    if classification.search is None:
        return classification, None
    return classification, decide_request(rules, identity, classification, now)


def bad_request(group: str, problem: str) -> Verdict:
    """The verdict on a request that cannot be classified, or sent, as it was made: refused with
    400 (the client is at fault, not the filter), recorded as a block. `problem` (the rule)
    says what is wrong with it, in words the 400 page shows."""
    return Verdict(action=BLOCK, group=group, reference=new_reference(),
                   rule=f"{BAD_REQUEST_RULE}{problem}", reason="bad-request")


def no_sni_verdict(identity: Identity, group: Group, what: str) -> Verdict:
    """A connection with no host name to decide by (a CONNECT to an IP address, a handshake
    without SNI): the group's `no_sni` rule."""
    blocked = group.no_sni == BLOCK
    return Verdict(
        action=BLOCK if blocked else ALLOW,
        group=identity.group,
        reference=new_reference(),
        rule=f"group {group.name} {'blocks' if blocked else 'logs'} {what}",
        reason="tls:no-sni",
    )


def host_verdict(rules: Rules, identity: Identity, host: str,
                 now: float | None = None) -> Verdict:
    """The verdict for a connection decided by its host name alone (nothing is decrypted)."""
    verdict = rules.policy.decide(identity, rules.classifier.classify(f"https://{host}/"), now)
    if verdict.action != ALLOW:
        verdict = dataclasses.replace(
            verdict, rule=f"{verdict.rule} (decided by host name: the connection is not decrypted)")
    return verdict


def relayed_at_connect(rules: Rules, group: Group, host: str) -> bool:
    """Whether a CONNECT to `host` is decided by the host name now, as the connection will not
    be decrypted: `sni-only` groups, and `selective` ones for a host nothing decides by URL. (A
    do-not-decrypt host in a `decrypt` group is decided at the ClientHello, as before.)"""
    if group.https == "decrypt":
        return False
    return not decryption(rules.decryption, group.name, normalise_host(host)).decrypt


def passed_through(verdict: Verdict, group: Group, decision: Decryption) -> Verdict:
    """An allowed connection's verdict as recorded when it is passed through undecrypted."""
    if decision.reason == "no-decrypt-list":
        why = "on the do-not-decrypt list"
    elif decision.reason == "sni-only":
        why = f"group {group.name} is SNI-only"
    else:
        why = f"group {group.name} decrypts selectively, and nothing here is decided by URL"
    return dataclasses.replace(verdict, rule=f"passed through undecrypted: {why}",
                               reason="tls:passthrough")


def connect_verdict(rules: Rules, identity: Identity, host: str, port: int,
                    now: float | None = None) -> Verdict | None:
    """The verdict at an explicit proxy's CONNECT, to record (and to answer with 403 when it
    blocks), or None when the CONNECT decides nothing yet: the tunnel opens and the handshake,
    or each request inside, is decided later.

    A port outside the allowed ones is circumvention; a CONNECT to a bare IP address follows the
    group's `no_sni` rule; a host whose connection will not be decrypted is decided by its name
    here, so a blocked one never gets a tunnel."""
    policy = rules.policy
    group = policy.group(identity.group)
    verdict = policy.connect_port(identity, host, port)
    if verdict is None and is_ip_address(host):
        verdict = no_sni_verdict(identity, group, f"a CONNECT to the IP address {host}")
        if verdict.action == ALLOW:
            # Logged, not blocked: decrypted, each request inside is recorded with the address
            # as its host; not decrypted, the ClientHello records the connection.
            return None
    if verdict is None and relayed_at_connect(rules, group, host):
        verdict = host_verdict(rules, identity, host, now)
        if verdict.action == ALLOW:
            return None  # decided again, and recorded, at the ClientHello
    return verdict


class Handshake(NamedTuple):
    """What the gateway does with a TLS ClientHello."""

    decrypt: bool
    """Intercept it: every request inside is decided, and recorded, on its own."""
    verdict: Verdict | None
    """For a connection not decrypted, the verdict to record: a block refuses the handshake,
    an allow passes the connection through undecrypted. None when it is decrypted."""
    decryption: Decryption | None = None
    """Why the host is or is not decrypted (None for a handshake with no host name)."""
    host: str | None = None
    """The host name the ClientHello names, normalised (None when it names none)."""

    @property
    def refuse(self) -> bool:
        return not self.decrypt and self.verdict is not None and self.verdict.action != ALLOW


def handshake_decision(rules: Rules, identity: Identity, sni: str | None,
                       now: float | None = None) -> Handshake:
    """What to do with a ClientHello naming `sni` (None or empty: no host name). Raises
    `URLError` (a ValueError) for a name no DNS name can be: the handshake is refused."""
    group = rules.policy.group(identity.group)
    if not sni:
        verdict = no_sni_verdict(identity, group, "a TLS handshake with no host name")
        if verdict.action != ALLOW:
            return Handshake(False, verdict)
        if group.https == "sni-only":
            # Nothing inside will be seen: this verdict is the only record of it.
            return Handshake(False, dataclasses.replace(verdict, reason="tls:passthrough"))
        return Handshake(True, None)
    host = normalise_host(sni)
    decision = decryption(rules.decryption, group.name, host)
    if decision.decrypt:
        return Handshake(True, None, decision, host)
    verdict = host_verdict(rules, identity, host, now)
    if verdict.action != ALLOW:
        return Handshake(False, verdict, decision, host)
    return Handshake(False, passed_through(verdict, group, decision), decision, host)


# ---------------------------------------------------------------------------------------------
# Every stage, in order, for `schoolgate why`


@dataclass(frozen=True, slots=True)
class Explanation:
    """What the gateway does with one request, and where it decides."""

    verdict: Verdict
    stage: str
    """Where the verdict is reached: one of `STAGES`."""
    classification: Classification | None
    """The request as Classify sees it once it is decrypted (shown even when the verdict was
    reached before, by host name); None when it cannot be classified."""
    request: RequestHead | None = None
    """The request as the gateway holds it (None: no client could send one for the URL)."""
    error: str | None = None
    """Why the request cannot be classified (it is refused as a bad request)."""


_BROWSER_SAFE = "!#$%&'()*+,/:;=?@[]~"
"""What a browser sends as typed in a path or query (besides letters, digits and `-._`); it
escapes the rest (spaces, other characters as UTF-8)."""
_SCHEME_ONLY = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:(?!\d)")
_ESCAPED_SCHEME = re.compile(r"(?i)(https?)%3a%2f%2f")


def request_head(url: str, method: str = "GET",
                 headers: Mapping[str, str] | None = None) -> tuple[RequestHead, int]:
    """The request a client makes for `url` through the gateway (an explicit proxy's request
    line, `GET http://host/path HTTP/1.1`), as the gateway holds it, and the port it connects
    to. A URL without a scheme is http; one escaped whole (`http%3A%2F%2Fhost/`, as it is
    inside another URL's query) is read unescaped, as its canonical form reads it. The host is
    sent as written: lowercased, a Unicode name as punycode (as browsers send it), and what a
    request line cannot carry (spaces, controls, bytes that are not UTF-8) percent-escaped; the
    path and query as a browser escapes them. Raises `URLError` for what no client can send
    (no host, a port that is not a number, a scheme with no host such as `mailto:`)."""
    text = url.strip()
    if "://" not in text:
        if m := _ESCAPED_SCHEME.match(text):
            text = f"{m[1]}://{text[m.end():]}"
        elif m := _SCHEME_ONLY.match(text):
            raise URLError(f"{url!r}: only http and https URLs can be classified, "
                           f"not {m[0][:-1]!r}")
        else:
            text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise URLError(f"{url!r} is not a URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise URLError(f"{url!r}: only http and https URLs can be classified, not {scheme!r}")
    if not parts.hostname:
        raise URLError(f"{url!r} has no host name")
    host = _sent_host(parts.hostname)
    if port is None:
        port = DEFAULT_PORTS[scheme]
    path = quote(parts.path or "/", _BROWSER_SAFE, errors="surrogateescape")
    if parts.query:
        path += "?" + quote(parts.query, _BROWSER_SAFE, errors="surrogateescape")
    return RequestHead(method.upper(), request_url(scheme, host, port, path), host, path,
                       headers or {}), port


def _sent_host(host: str) -> str:
    """`host` (lowercased by urlsplit) as a client puts it on the request line."""
    if not host.isascii():
        try:
            return idn_to_ascii(host)
        except (URLError, UnicodeError):  # not a name any IDNA accepts, or not even UTF-8
            pass
    if host.isascii() and host.isprintable() and " " not in host:
        return host
    raw = host.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if 0x20 < b < 0x7F else f"%{b:02X}" for b in raw)


def explain(rules: Rules, identity: Identity, url: str, *, method: str = "GET",
            headers: Mapping[str, str] | None = None, body: bytes | None = None,
            now: float | None = None) -> Explanation:
    """The gateway's verdict on a browser's request for `url` from `identity` (explicit proxy:
    an https URL is a CONNECT first), reached through the same stage functions the addons
    call, in the order the gateway meets them; schedules are read at `now`."""
    try:
        request, port = request_head(url, method, headers)
    except URLError as e:
        return Explanation(bad_request(identity.group, str(e)), "request", None, error=str(e))
    try:
        classification = classify_request(rules, request)
    except URLError as e:
        return Explanation(bad_request(identity.group, str(e)), "request", None, request,
                           str(e))
    if request.url.startswith("https:"):
        try:
            verdict = connect_verdict(rules, identity, request.host, port, now)
            if verdict is not None and verdict.action != ALLOW:
                return Explanation(verdict, "connect", classification, request)
            # A client names a host in its ClientHello, never an address.
            sni = None if is_ip_address(request.host) else request.host
            handshake = handshake_decision(rules, identity, sni, now)
        except ValueError as e:  # URLError: a host name no connection can be made to
            return Explanation(bad_request(identity.group, str(e)), "connect", classification,
                               request, str(e))
        if not handshake.decrypt and handshake.verdict is not None:
            return Explanation(handshake.verdict, "handshake", classification, request)
    verdict = decide_request(rules, identity, classification, now)
    if classification.search_in_body and verdict.action == ALLOW:
        content_type = _header(request.headers, "content-type")
        classification, after = read_body(rules, identity, classification, request, body,
                                          content_type, now)
        if after is not None:
            return Explanation(after, "body", classification, request)
    return Explanation(verdict, "request", classification, request)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)
