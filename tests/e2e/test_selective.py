"""Selective decryption end to end, through the real gateway with a real TLS client: in a group
with `https: selective`, a host that some decision needs the URL of (a local block entry with a
path, a URL-level illegal-list entry, even on a do-not-decrypt host) is intercepted with the
school's certificate and decided page by page; a host nothing decides by URL is relayed with the
origin's own certificate and recorded as passed through with its SNI; a blocked host that needs
no decrypting is refused at the CONNECT, or at the handshake when only the ClientHello names it.
And `schoolgate why --json` says the same about each host as the gateway did.

127.0.0.6 is a device in the selective group (every `*.test` name resolves to the test origin,
so a connection that leaked would be counted there).
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .harness import (
    GatewayProcess,
    GatewaySetup,
    make_pki,
    read_events,
    run_cli,
    sample,
    scrape,
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

DEVICE = "127.0.0.6"
RELAYED = "relay.test"  # in no list: decided by its name, relayed
PAGES = "pages.test"  # a local block entry with a path: decrypted
ILLEGAL = "illegal-pages.test"  # a URL-level IWF entry: decrypted
BANK = "bank.test"  # do-not-decrypt, with a URL-level IWF entry: decrypted all the same
BLOCKED = "blocked.test"  # gambling, by its domain: refused undecrypted
BLOCKED_PAGE = "/casino/table"
ILLEGAL_PAGE = "/gallery/image-1.jpg"
BANK_PAGE = "/hidden/page.html"


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

    def tunnel(self, host: str) -> Tunnel:
        return open_tunnel(self.port, host, self.origin.https_port, source=DEVICE)

    def events(self, where: str, params=(), count: int = 1) -> list[dict]:
        return wait_for_events(self.setup.database, where, params, count=count,
                               gateway=self.gateway)

    def why(self, host: str) -> dict:
        done = run_cli("why", "--json", "--config", str(self.setup.config), "--ip", DEVICE,
                       f"https://{host}/")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    sources_available(DEVICE)
    directory = tmp_path_factory.mktemp("selective")
    pki = make_pki(directory / "pki", ("localhost", RELAYED, PAGES, ILLEGAL, BANK, BLOCKED))
    origin = RecordingOrigin(pki)
    iwf = directory / "iwf.txt"
    iwf.write_text(f"# made-up\n{ILLEGAL}{ILLEGAL_PAGE}\n{BANK}{BANK_PAGE}\n", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["groups"]["selective"] = {
            "subnets": [f"{DEVICE}/32"], "https": "selective",
            "blocked_categories": ["gambling"],
            "block": [{"target": f"{PAGES}{BLOCKED_PAGE}", "reason": "One page, not the site"}],
        }
        doc["illegal_lists"] = {"iwf": {"kind": "iwf", "source": str(iwf), "form": "plain"}}
        doc["tls"] = {"do_not_decrypt_hosts": [BANK]}

    setup = write_config(directory, upstream_ca=pki.ca_cert, patch=patch)
    try:
        with start_gateway("selective", setup.config) as gw:
            yield Env(setup, gw, origin)
    finally:
        origin.close()


def handshake(tunnel: Tunnel, ctx: ssl.SSLContext, sni: str) -> ssl.SSLSocket:
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


def tls_handshakes(env: Env, mode: str) -> float:
    assert env.gateway.metrics_url is not None
    return sample(scrape(env.gateway.metrics_url), "schoolgate_tls_handshakes_total", mode=mode)


# ---------------------------------------------------------------------------------------------
# Decrypted: a host some decision needs the URL of


@pytest.mark.parametrize(("host", "page", "reason", "decrypt_reason"), [
    (PAGES, BLOCKED_PAGE, "override", "override-url"),
    (ILLEGAL, ILLEGAL_PAGE, "illegal:iwf", "illegal-url-entry"),
    # The do-not-decrypt list never beats an illegal list's URL entry.
    (BANK, BANK_PAGE, "illegal:iwf", "illegal-url-entry"),
])
def test_a_host_needing_a_url_decision_is_intercepted_and_decided_page_by_page(
        env, host, page, reason, decrypt_reason):
    before = tls_handshakes(env, "decrypted")
    # The school's certificate, not the origin's: a client trusting only the origin refuses it.
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(env.tunnel(host), only_trusting(env.origin.ca_cert), host)
    with handshake(env.tunnel(host), only_trusting(env.setup.schoolgate_ca), host) as tls:
        assert issuer_cn(tls) == "Schoolgate CA - Test School"
    assert tls_handshakes(env, "decrypted") >= before + 2

    device = Browser(env.port, only_trusting(env.setup.schoolgate_ca), source=DEVICE)
    m = marker()
    reply = device.get(env.origin.url("https", host, f"{page}?m={m}"))
    assert reply.status == 403, reply
    assert env.origin.requests_with(m) == []
    # By host: an illegal-list hit is recorded with its host and list only, never its URL.
    (row,) = env.events("host = ? AND action = 'block' AND client_ip = ?", [host, DEVICE])
    assert (row["action"], row["reason"], row["group_name"], row["method"]) == (
        "block", reason, "selective", "GET")

    # Any other page of the host is fetched, and recorded with its URL.
    m = marker()
    reply = device.get(env.origin.url("https", host, f"/other?m={m}"))
    assert reply.status == 200 and reply.body == ORIGIN_BODY
    assert len(env.origin.requests_with(m)) == 1
    (row,) = env.events("url LIKE ?", [f"%m={m}"])
    assert (row["action"], row["host"], row["method"]) == ("allow", host, "GET")
    assert read_events(env.setup.database, "host = ? AND reason = 'tls:passthrough'", [host]) == []

    why = env.why(host)
    assert (why["group"], why["decrypt"], why["decrypt_reason"]) == (
        "selective", True, decrypt_reason)


# ---------------------------------------------------------------------------------------------
# Relayed: a host nothing decides by URL


def test_a_host_needing_no_url_decision_is_relayed_with_the_origins_certificate(env):
    """The client trusts the origin's CA and nothing else: the handshake succeeds only if no
    Schoolgate certificate is in the way, and the certificate is the origin's, byte for byte."""
    before = tls_handshakes(env, "passed_through")
    m = marker()
    with handshake(env.tunnel(RELAYED), only_trusting(env.origin.ca_cert), RELAYED) as tls:
        assert tls.getpeercert(binary_form=True) == env.origin.server_cert_der
        reply = request_over(tls, RELAYED, env.origin.https_port, "GET", f"/page?m={m}")

    assert reply.status == 200 and reply.body == ORIGIN_BODY
    (received,) = env.origin.requests_with(m)
    assert received.host == f"{RELAYED}:{env.origin.https_port}"
    (row,) = env.events("host = ? AND method = 'TLS'", [RELAYED])
    assert {k: row[k] for k in ("action", "reason", "group_name", "client_ip", "url")} == {
        "action": "allow", "reason": "tls:passthrough", "group_name": "selective",
        "client_ip": DEVICE, "url": None}
    assert "decrypts selectively" in row["matched_rule"]
    # Nothing inside was seen: no request of it was recorded.
    assert read_events(env.setup.database, "url LIKE ?", [f"%{m}%"]) == []
    assert tls_handshakes(env, "passed_through") >= before + 1

    why = env.why(RELAYED)
    assert (why["action"], why["decrypt"], why["decrypt_reason"]) == ("allow", False, "host-only")


# ---------------------------------------------------------------------------------------------
# Blocked, and needing no decrypting: refused undecrypted


def test_a_blocked_host_needing_no_url_decision_is_refused_at_the_connect(env):
    before = len(env.origin.requests)
    tunnel = env.tunnel(BLOCKED)

    assert tunnel.status == 403, tunnel
    assert b"Blocked by the school's web filter" in tunnel.body
    (row,) = env.events("host = ? AND method = 'CONNECT' AND client_ip = ?", [BLOCKED, DEVICE])
    assert (row["action"], row["reason"], row["group_name"], row["categories"]) == (
        "block", "category", "selective", "gambling")
    assert len(env.origin.requests) == before

    why = env.why(BLOCKED)
    assert (why["action"], why["decrypt"], why["decrypt_reason"]) == ("block", False, "host-only")


def test_a_blocked_host_named_only_in_the_client_hello_is_refused_at_the_handshake(env):
    """The CONNECT names a relayed host, the ClientHello a blocked one: the connection is closed
    without any certificate, neither the origin's nor the school's (this client takes either)."""
    before = len(env.origin.requests)
    refused = tls_handshakes(env, "refused")
    tunnel = env.tunnel(RELAYED)
    assert tunnel.status == 200, tunnel
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(tunnel, trusting_nothing_checked(), BLOCKED).close()
    tunnel.close()

    (row,) = env.events("host = ? AND method = 'TLS' AND client_ip = ?", [BLOCKED, DEVICE])
    assert (row["action"], row["reason"], row["group_name"]) == ("block", "category", "selective")
    assert "decided by host name" in row["matched_rule"]
    assert len(env.origin.requests) == before
    assert tls_handshakes(env, "refused") >= refused + 1


def test_the_same_host_is_decrypted_for_a_group_that_decrypts_everything(env):
    """The contrast that gives the relaying its meaning: pupils (`https: decrypt`, the default)
    get the school's certificate for the host the selective device was relayed to."""
    pupil = open_tunnel(env.port, RELAYED, env.origin.https_port, source="127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(pupil, only_trusting(env.origin.ca_cert), RELAYED)
    done = run_cli("why", "--json", "--config", str(env.setup.config), "--group", "pupils",
                   f"https://{RELAYED}/")
    assert done.returncode == 0, done.stderr
    why = json.loads(done.stdout)
    assert (why["decrypt"], why["decrypt_reason"]) == (True, "group-decrypts-all")
