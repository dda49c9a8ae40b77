"""TLS decisions, made before anything is decrypted: at the CONNECT request (explicit proxy) and at
the TLS ClientHello (every mode), from the host name the client announces (SNI).

- A CONNECT to a port other than the allowed ones is a tunnel the filter cannot read: blocked or
  logged as circumvention. A CONNECT to a bare IP address, or a handshake without SNI, follows the
  group's `no_sni` rule.
- Hosts on the do-not-decrypt list (banking, health, government) pass through undecrypted, but are
  still classified by SNI and logged; so are allowed hosts for `sni-only` groups (devices without
  the school's certificate).
- A host that must be blocked where nothing will be decrypted is refused at the handshake: the
  client's connection is closed instead of being given a certificate.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time
import weakref

from mitmproxy import connection, http, tls

from ...classify import URLError
from ...classify.canonical import parse_ipv4
from ...classify.urls import normalise_host
from ..service import Gateway, Rules
from ...identify import Identity
from ..metrics import ILLEGAL_CATEGORY, NO_CATEGORY, block_reason
from ...policy import ALLOW, BLOCK, Verdict, new_reference
from ...events import Event
from . import identify_client

log = logging.getLogger("schoolgate.tls")

_NO_CONTEXT = "No TLS context was provided, failing connection."


class _QuietRefusals(logging.Filter):
    """mitmproxy logs an error for every connection it has no TLS context for, which is how a
    refusal is made; drop exactly as many of those messages as refusals were made."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.pending and record.getMessage().startswith(_NO_CONTEXT):
            self.pending -= 1
            return False
        return True


class TlsDecisions:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        # Per client connection, dropped with it: connections to refuse at the handshake, and the
        # CONNECT target (the host when the ClientHello names none).
        self._refuse: weakref.WeakKeyDictionary[connection.Client, bool] = (
            weakref.WeakKeyDictionary()
        )
        self._connect_host: weakref.WeakKeyDictionary[connection.Client, str] = (
            weakref.WeakKeyDictionary()
        )
        self._quiet = _QuietRefusals()
        # mitmproxy's connection handler logs through this logger (mitmproxy/proxy/server.py).
        logging.getLogger("mitmproxy.proxy.server").addFilter(self._quiet)

    def done(self) -> None:
        logging.getLogger("mitmproxy.proxy.server").removeFilter(self._quiet)

    # -- CONNECT (explicit proxy) -------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        rules = self.gateway.rules
        try:
            identity = identify_client(self.gateway, rules, flow)
            host, port = flow.request.host, flow.request.port
            self._connect_host[flow.client_conn] = host
            policy = rules.policy
            group = policy.group(identity.group)
            verdict = policy.connect_port(identity, host, port)
            if verdict is None and _is_ip(host):
                verdict = self._no_sni_verdict(identity, group, f"a CONNECT to the IP address {host}")
                if verdict.action == ALLOW:
                    # Logged, not blocked: decrypted, each request inside is recorded with the
                    # address as its host; not decrypted, the ClientHello records the connection.
                    return
            if verdict is None and group.https == "sni-only":
                verdict = self._host_verdict(rules, identity, host)
                if verdict.action == ALLOW:
                    return  # decided again, and logged, at the ClientHello
            if verdict is None:
                return
            self._record(identity, verdict, host, "CONNECT")
            if verdict.action != ALLOW:
                flow.response = http.Response.make(
                    403,
                    f"Blocked by the school's web filter: {verdict.rule}. "
                    f"Reference {verdict.reference}.\n".encode(),
                    {"Content-Type": "text/plain; charset=utf-8"},
                )
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            self.gateway.fail_closed("tls", e)
            flow.response = http.Response.make(
                503, b"Filtering error: this connection was blocked.\n",
                {"Content-Type": "text/plain; charset=utf-8"},
            )

    # -- ClientHello (every mode) ----------------------------------------------------------------

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        client = data.context.client
        if self._refuse.get(client):
            return
        rules = self.gateway.rules
        try:
            identity = identify_client(self.gateway, rules, client)
            policy = rules.policy
            group = policy.group(identity.group)
            sni = data.client_hello.sni
            if not sni:
                connect_host = self._connect_host.get(client)
                verdict = self._no_sni_verdict(identity, group, "a TLS handshake with no host name")
                if verdict.action != ALLOW:
                    self._record(identity, verdict, connect_host, "TLS")
                    self._refuse_connection(client)
                    return
                if group.https == "sni-only":
                    # Nothing inside will be seen: this event is the only record of it.
                    data.ignore_connection = True
                    self.gateway.metrics.tls_handshakes.labels("passed_through").inc()
                    self._record(identity, _with(verdict, reason="tls:passthrough"), connect_host,
                                 "TLS")
                else:
                    self.gateway.metrics.tls_handshakes.labels("decrypted").inc()
                return
            host = normalise_host(sni)
            pass_through = group.https == "sni-only" or rules.no_decrypt(host)
            if not pass_through:
                # Decrypted: every request inside is decided and logged on its own.
                self.gateway.metrics.tls_handshakes.labels("decrypted").inc()
                return
            verdict = self._host_verdict(rules, identity, host)
            if verdict.action != ALLOW:
                self._record(identity, verdict, host, "TLS")
                self._refuse_connection(client)
                return
            data.ignore_connection = True
            self.gateway.metrics.tls_handshakes.labels("passed_through").inc()
            why = "on the do-not-decrypt list" if rules.no_decrypt(host) else (
                f"group {group.name} is SNI-only")
            self._record(identity, _with(verdict, rule=f"passed through undecrypted: {why}",
                                         reason="tls:passthrough"), host, "TLS")
        except (URLError, ValueError) as e:
            # A ClientHello naming something no DNS name can be: refuse, never pass it through.
            log.info("refusing a TLS handshake with an unusable host name: %s", e)
            self._refuse_connection(client)
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            self.gateway.fail_closed("tls", e)
            self._refuse_connection(client)

    def tls_start_client(self, tls_start: tls.TlsData) -> None:
        # Runs after mitmproxy's own TlsConfig has prepared the connection: taking it away makes
        # mitmproxy close the client's connection instead of handing it a certificate.
        if self._refuse.get(tls_start.context.client):
            tls_start.ssl_conn = None
            self._quiet.pending += 1

    # -- helpers -------------------------------------------------------------------------------

    def _refuse_connection(self, client: connection.Client) -> None:
        self._refuse[client] = True
        self.gateway.metrics.tls_handshakes.labels("refused").inc()

    @staticmethod
    def _host_verdict(rules: Rules, identity: Identity, host: str) -> Verdict:
        classification = rules.classifier.classify(f"https://{host}/")
        verdict = rules.policy.decide(identity, classification)
        # A search engine with no lockable safe mode is known by its host name alone.
        verdict = rules.policy.check_request(verdict, "CONNECT", host, "/", {})
        if verdict.action != ALLOW:
            verdict = _with(verdict, rule=f"{verdict.rule} (decided by host name: the connection "
                            "is not decrypted)")
        return verdict

    @staticmethod
    def _no_sni_verdict(identity: Identity, group, what: str) -> Verdict:
        blocked = group.no_sni == BLOCK
        return Verdict(
            action=BLOCK if blocked else ALLOW,
            group=identity.group,
            reference=new_reference(),
            rule=f"group {group.name} {'blocks' if blocked else 'logs'} {what}",
            reason="tls:no-sni",
        )

    def _record(self, identity: Identity, verdict: Verdict, host: str | None, method: str) -> None:
        if identity.source == "check":
            return  # a `schoolgate check` canary is not browsing: no event, no alert, no count
        m = self.gateway.metrics
        m.requests.labels(verdict.action, _category(verdict), verdict.group).inc()
        if verdict.action != ALLOW:
            m.blocks.labels(block_reason(verdict)).inc()
        if verdict.theme == "circumvention":
            m.circumvention.labels(verdict.group).inc()
        self.gateway.record(Event(
            ts=time.time(),
            client_ip=identity.ip,
            group=verdict.group,
            action=verdict.action,
            reference=verdict.reference,
            user=identity.user,
            device=identity.device,
            method=method,
            scheme="https",
            host=host,
            url=None,  # nothing but the host is known without decrypting
            categories=verdict.categories,
            matched_rule=verdict.rule,
            severity=verdict.severity,
            reason=verdict.reason,
            theme=verdict.theme,
        ))


def _with(verdict: Verdict, **changes) -> Verdict:
    return dataclasses.replace(verdict, **changes)


def _category(verdict: Verdict) -> str:
    return ILLEGAL_CATEGORY if verdict.illegal_list else (verdict.category or NO_CATEGORY)


def _is_ip(host: str) -> bool:
    """Whether a CONNECT names an IP address rather than a host name: in any spelling the
    resolver reads as one (inet_aton takes `2130706433`, `0x7f.1` and `127.1` for 127.0.0.1),
    or the `no_sni` rule could be stepped round by writing the address another way."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return parse_ipv4(host) is not None
    return True
