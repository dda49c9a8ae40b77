"""TLS decisions end to end, made before anything is decrypted: a do-not-decrypt host is passed
through untouched (the client sees the origin's own certificate, not one from Schoolgate's CA) and
still logged; an `sni-only` group's blocked host is refused (at the CONNECT, and at the handshake
when only the ClientHello names it) while its allowed hosts pass through with the origin's
certificate; a CONNECT to a bare IP address (in any spelling the resolver accepts), or a
handshake with no host name, is refused for a group with the default `no_sni: block` and let
through, and logged, for a group with `no_sni: log`.

Clients stand in for different machines by their loopback address: 127.0.0.1 is a pupil, 127.0.0.4
a BYOD device (`sni-only`), 127.0.0.5 a device in a group that only logs bare-IP connections.
Every `*.test` name resolves to the test origin (`policy_gateway.py`), so a connection that
leaked would reach it, and its certificate covers the names the tests use.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .harness import (
    ORIGIN_NAMES,
    GatewayProcess,
    GatewaySetup,
    make_pki,
    read_events,
    wait_for_events,
    write_config,
)
from .policy_harness import (
    ORIGIN_BODY,
    Browser,
    RecordingOrigin,
    Tunnel,
    only_trusting,
    open_tunnel,
    request_over,
    sources_available,
    start_gateway,
    trusting_nothing_checked,
)

pytestmark = pytest.mark.e2e

PUPIL, BYOD, IP_LOG = "127.0.0.1", "127.0.0.4", "127.0.0.5"
BANK = "bank.test"  # tls.do_not_decrypt_hosts
HEALTH = "health.test"  # in a tls.do_not_decrypt list file (covers its subdomains)
FINE = "fine.test"  # in no category
BLOCKED = "blocked.test"  # gambling, blocked for every group here


def marker() -> str:
    return uuid.uuid4().hex


@dataclass
class Env:
    setup: GatewaySetup
    gateway: GatewayProcess
    origin: RecordingOrigin

    @property
    def port(self) -> int:
        assert self.gateway.proxy_port is not None
        return self.gateway.proxy_port

    def tunnel(self, host: str, source: str, port: int | None = None) -> Tunnel:
        return open_tunnel(self.port, host, port or self.origin.https_port, source=source)

    def events(self, where: str, params=(), count: int = 1) -> list[dict]:
        return wait_for_events(self.setup.database, where, params, count=count,
                               gateway=self.gateway)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    sources_available(PUPIL, BYOD, IP_LOG)
    directory = tmp_path_factory.mktemp("tls")
    pki = make_pki(directory / "pki",
                   (*ORIGIN_NAMES, BANK, f"www.{HEALTH}", FINE, "sub.fine.test"))
    origin = RecordingOrigin(pki)
    health_list = directory / "do-not-decrypt.txt"
    health_list.write_text(f"# health sites\n{HEALTH}\n", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["groups"] = {
            # The default: decrypt, and refuse what has no host name.
            "pupils": {"subnets": ["127.0.0.0/8"], "blocked_categories": ["gambling"]},
            "byod": {"subnets": [f"{BYOD}/32"], "blocked_categories": ["gambling"],
                     "https": "sni-only"},
            "iplog": {"subnets": [f"{IP_LOG}/32"], "blocked_categories": ["gambling"],
                      "no_sni": "log"},
        }
        doc["tls"] = {"do_not_decrypt": [str(health_list)], "do_not_decrypt_hosts": [BANK]}

    setup = write_config(directory, upstream_ca=pki.ca_cert, patch=patch)
    try:
        with start_gateway("tls", setup.config) as gw:
            yield Env(setup, gw, origin)
    finally:
        origin.close()


def handshake(tunnel: Tunnel, ctx: ssl.SSLContext, sni: str | None) -> ssl.SSLSocket:
    assert tunnel.status == 200 and tunnel.sock is not None, tunnel
    try:
        return ctx.wrap_socket(tunnel.sock, server_hostname=sni)
    except BaseException:
        tunnel.close()
        raise


def issuer_cn(tls_sock: ssl.SSLSocket) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    der = tls_sock.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


# ---------------------------------------------------------------------------------------------
# Do not decrypt


@pytest.mark.parametrize("host", [BANK, f"www.{HEALTH}"])
def test_do_not_decrypt_host_is_passed_through_with_the_origins_certificate(env, host):
    """The client trusts the origin's CA and nothing else, so the handshake only succeeds if no
    Schoolgate certificate is in the way; the certificate it gets is the origin's, byte for byte."""
    m = marker()
    with handshake(env.tunnel(host, PUPIL), only_trusting(env.origin.ca_cert), host) as tls:
        assert tls.getpeercert(binary_form=True) == env.origin.server_cert_der
        assert issuer_cn(tls) == "Schoolgate e2e origin CA"
        reply = request_over(tls, host, env.origin.https_port, "GET", f"/hello?m={m}")

    assert reply.status == 200 and reply.body == ORIGIN_BODY
    (received,) = env.origin.requests_with(m)
    assert received.scheme == "https" and received.host == f"{host}:{env.origin.https_port}"
    (row,) = env.events("host = ? AND method = 'TLS'", [host])
    assert {k: row[k] for k in ("action", "reason", "group_name", "client_ip", "scheme", "url")} \
        == {"action": "allow", "reason": "tls:passthrough", "group_name": "pupils",
            "client_ip": PUPIL, "scheme": "https", "url": None}
    assert "do-not-decrypt" in row["matched_rule"]
    # Nothing inside was decrypted, so no request of it was recorded.
    assert read_events(env.setup.database, "url LIKE ?", [f"%{m}%"]) == []


def test_other_hosts_are_intercepted_with_schoolgates_certificate(env):
    """The contrast that gives the test above its meaning: the same client, to a host that is not
    on the list, meets Schoolgate's certificate, which it does not trust."""
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(env.tunnel(FINE, PUPIL), only_trusting(env.origin.ca_cert), FINE)
    with handshake(env.tunnel(FINE, PUPIL), trusting_nothing_checked(), FINE) as tls:
        assert issuer_cn(tls) == "Schoolgate CA - Test School"
        assert tls.getpeercert(binary_form=True) != env.origin.server_cert_der


# ---------------------------------------------------------------------------------------------
# SNI-only groups


def test_sni_only_group_passes_an_allowed_host_through_undecrypted(env):
    m = marker()
    host = "sub.fine.test"
    byod = Browser(env.port, only_trusting(env.origin.ca_cert), source=BYOD)
    reply = byod.get(env.origin.url("https", host, f"/hello?m={m}"))

    assert reply.status == 200 and reply.body == ORIGIN_BODY
    assert len(env.origin.requests_with(m)) == 1
    (row,) = env.events("host = ? AND method = 'TLS'", [host])
    assert (row["action"], row["reason"], row["group_name"], row["client_ip"]) == (
        "allow", "tls:passthrough", "byod", BYOD)
    assert "SNI-only" in row["matched_rule"]


def test_sni_only_group_is_refused_a_blocked_host_at_the_connect(env):
    before = len(env.origin.requests)
    tunnel = env.tunnel(BLOCKED, BYOD)

    assert tunnel.status == 403, tunnel
    assert b"Blocked by the school's web filter" in tunnel.body
    (row,) = env.events("host = ? AND method = 'CONNECT' AND client_ip = ?", [BLOCKED, BYOD])
    assert (row["action"], row["reason"], row["group_name"], row["categories"]) == (
        "block", "category", "byod", "gambling")
    assert row["reference"] in tunnel.body.decode()
    assert len(env.origin.requests) == before


def test_sni_only_group_is_refused_a_blocked_host_named_only_in_the_client_hello(env):
    """The CONNECT names an allowed host; the handshake asks for a blocked one (as a client that
    fronts a blocked site behind an allowed name would). The handshake is refused: the connection
    is closed and the client gets no certificate at all, neither the origin's (passed through)
    nor one from Schoolgate (intercepted): this client would accept either."""
    before = len(env.origin.requests)
    tunnel = env.tunnel(FINE, BYOD)
    assert tunnel.status == 200, tunnel
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(tunnel, trusting_nothing_checked(), BLOCKED).close()
    tunnel.close()

    (row,) = env.events("host = ? AND method = 'TLS' AND client_ip = ?", [BLOCKED, BYOD])
    assert (row["action"], row["reason"], row["group_name"]) == ("block", "category", "byod")
    assert "decided by host name" in row["matched_rule"]
    assert len(env.origin.requests) == before


# ---------------------------------------------------------------------------------------------
# No host name: bare IP addresses and handshakes without SNI


@pytest.mark.parametrize("address", [
    "127.0.0.1",
    "::1",
    # Other spellings of 127.0.0.1 that the resolver (inet_aton) takes as the address itself,
    # so they reach the same server: decimal, hex, octal, and a shortened quad.
    "2130706433",
    "0x7f.0.0.1",
    "0177.0.0.1",
    "127.1",
])
def test_connect_to_an_ip_address_is_refused_by_default(env, address):
    before = len(env.origin.requests)
    tunnel = env.tunnel(address, PUPIL)

    assert tunnel.status == 403, tunnel
    (row,) = env.events("host = ? AND method = 'CONNECT' AND reason = 'tls:no-sni'", [address])
    assert (row["action"], row["group_name"], row["client_ip"]) == ("block", "pupils", PUPIL)
    assert f"blocks a CONNECT to the IP address {address}" in row["matched_rule"]
    assert len(env.origin.requests) == before


def test_connect_to_an_ip_address_is_let_through_and_logged_with_no_sni_log(env):
    m = marker()
    device = Browser(env.port, only_trusting(env.setup.schoolgate_ca), source=IP_LOG)
    reply = device.get(env.origin.url("https", "127.0.0.1", f"/hello?m={m}"))

    assert reply.status == 200 and reply.body == ORIGIN_BODY
    assert len(env.origin.requests_with(m)) == 1
    # Decrypted, so the request inside is recorded, with the address as its host.
    (row,) = env.events("url LIKE ?", [f"%m={m}"])
    assert (row["action"], row["group_name"], row["host"], row["client_ip"]) == (
        "allow", "iplog", "127.0.0.1", IP_LOG)
    assert read_events(env.setup.database, "method = 'CONNECT' AND client_ip = ?", [IP_LOG]) == []


def test_handshake_without_a_host_name_is_refused_by_default(env):
    tunnel = env.tunnel(FINE, PUPIL)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(tunnel, trusting_nothing_checked(), None).close()
    tunnel.close()

    (row,) = env.events("method = 'TLS' AND reason = 'tls:no-sni' AND client_ip = ?", [PUPIL])
    assert (row["action"], row["group_name"], row["host"]) == ("block", "pupils", FINE)
    assert "blocks a TLS handshake with no host name" in row["matched_rule"]


def test_handshake_without_a_host_name_is_decrypted_with_no_sni_log(env):
    m = marker()
    with handshake(env.tunnel(FINE, IP_LOG), trusting_nothing_checked(), None) as tls:
        assert issuer_cn(tls) == "Schoolgate CA - Test School"
        reply = request_over(tls, FINE, env.origin.https_port, "GET", f"/hello?m={m}")

    assert reply.status == 200 and reply.body == ORIGIN_BODY
    (row,) = env.events("url LIKE ?", [f"%m={m}"])
    assert (row["action"], row["group_name"], row["host"]) == ("allow", "iplog", FINE)
