"""TLS decisions, made before anything is decrypted: at the CONNECT request (explicit proxy) and at
the TLS ClientHello (every mode), from the host name the client announces (SNI).

- A CONNECT to a port other than the allowed ones is a tunnel the filter cannot read: blocked or
  logged as circumvention. A CONNECT to a bare IP address, or a handshake without SNI, follows the
  group's `no_sni` rule.
- Hosts on the do-not-decrypt list (banking, health, government) pass through undecrypted, but are
  still classified by SNI and logged; so are allowed hosts for `sni-only` groups (devices without
  the school's certificate), and, for `selective` groups, hosts that nothing decides by URL.
  Which hosts are decrypted is `schoolgate.policy.decryption`'s one predicate, which
  `schoolgate why` shows too.
- A host that must be blocked where nothing will be decrypted is refused at the handshake: the
  client's connection is closed instead of being given a certificate.
"""

from __future__ import annotations

import logging
import time

from mitmproxy import connection, http, tls

from ...classify import URLError
from ...identify import Identity
from ...policy import ALLOW, Verdict
from ..decision import connect_verdict, event_for, handshake_decision
from ..service import Gateway
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
            identity = identify_client(self.gateway, rules, flow.client_conn)
            host, port = flow.request.host, flow.request.port
            self.gateway.client(flow.client_conn).connect_host = host
            verdict = connect_verdict(rules, identity, host, port)
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
        state = self.gateway.client(client)
        if state.refuse_tls:
            return
        rules = self.gateway.rules
        try:
            identity = identify_client(self.gateway, rules, client)
            sni = data.client_hello.sni
            handshake = handshake_decision(rules, identity, sni)
            if handshake.decrypt:
                # Decrypted: every request inside is decided and logged on its own.
                self.gateway.metrics.tls_handshakes.labels("decrypted").inc()
                return
            if handshake.verdict is None:
                raise RuntimeError("a connection that is not decrypted has no verdict")
            self._record(identity, handshake.verdict, handshake.host or state.connect_host,
                         "TLS")
            if handshake.refuse:
                self._refuse_connection(client)
                return
            data.ignore_connection = True
            self.gateway.metrics.tls_handshakes.labels("passed_through").inc()
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
        state = self.gateway.clients.get(tls_start.context.client)
        if state is not None and state.refuse_tls:
            tls_start.ssl_conn = None
            self._quiet.pending += 1

    # -- helpers -------------------------------------------------------------------------------

    def _refuse_connection(self, client: connection.Client) -> None:
        self.gateway.client(client).refuse_tls = True
        self.gateway.metrics.tls_handshakes.labels("refused").inc()

    def _record(self, identity: Identity, verdict: Verdict, host: str | None, method: str) -> None:
        if identity.source == "check":
            return  # a `schoolgate check` canary is not browsing: no event, no alert, no count
        self.gateway.metrics.count(verdict)
        self.gateway.record(event_for(verdict, identity, ts=time.time(), client_ip=identity.ip,
                                      method=method, scheme="https", host=host, url=None))

