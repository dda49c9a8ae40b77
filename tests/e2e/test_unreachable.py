"""Failures are Schoolgate's own (issue #15, point 7): a site the gateway cannot reach (its name
not found, the connection refused, its certificate not trusted) gets Schoolgate's page in the
block page's style, with the school's name, what happened in plain words (not blocked), the time
and the request's reference, 502 (504 when it did not answer in time); a request mitmproxy cannot read gets Schoolgate's 400; and no
response the gateway makes names mitmproxy, in a header or in words.

Through the real gateway (`schoolgate run`, its names resolved by the harness's resolving script:
`*.invalid` is never found, `*.test` is the origin) with real clients: urllib over HTTP/1.1, curl
over HTTP/2, and raw sockets for requests no client library would send.
"""

from __future__ import annotations

import html
import http.client
import json
import re
import shutil
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from schoolgate.check.answers import CHECK_HEADER, TOKEN_FILE

from .harness import (
    REFERENCE_RE,
    SCHOOL,
    TIMEOUT,
    GatewayClient,
    GatewayProcess,
    GatewaySetup,
    Origin,
    Reply,
    clean_env,
    read_events,
    resolving_script,
    running_gateway,
    sample,
    scrape,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

PUSH_TOKEN = "p" * 40
PUSH_RE = r"IP map push endpoint on 127\.0\.0\.1:(\d+)"


@dataclass
class Env:
    setup: GatewaySetup
    gateway: GatewayProcess
    origin: Origin
    client: GatewayClient
    push_port: int
    silent_port: int
    """A port that never answers a connection attempt (its accept queue is full)."""

    @property
    def port(self) -> int:
        assert self.gateway.proxy_port is not None
        return self.gateway.proxy_port


@pytest.fixture(scope="module")
def env(tmp_path_factory, pki, origin) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("unreachable")
    (directory / "push-token").write_text(PUSH_TOKEN + "\n", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["identity"] = {"push": {"listen": {"host": "127.0.0.1", "port": 0},
                                    "token_file": str(directory / "push-token")}}
        doc["upstream_connect_timeout"] = "1s"

    setup = write_config(directory, upstream_ca=pki.ca_cert, patch=patch)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    # Backlog 0 still queues one connection; with two waiting the kernel drops further
    # attempts unanswered, as a dead address or a dropping firewall does.
    fillers = [socket.socket() for _ in range(2)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(silent.getsockname())
    try:
        with running_gateway("unreachable", setup.config,
                             script=resolving_script(directory)) as gw:
            push_port = int(gw.wait_for_output(PUSH_RE)[1])
            assert gw.proxy_port is not None
            yield Env(setup, gw, origin, GatewayClient(gw.proxy_port, setup.schoolgate_ca),
                      push_port, silent.getsockname()[1])
    finally:
        for sock in (*fillers, silent):
            sock.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_not_mitmproxy(headers: http.client.HTTPMessage | dict, body: bytes = b"") -> None:
    """Nothing in the answer says which proxy software made it, nor its exception text."""
    items = list(headers.items())
    for name, value in items:
        assert "mitmproxy" not in f"{name}: {value}".lower(), items
    text = body.decode("utf-8", "replace")
    for word in ("mitmproxy", "Errno", "Connect call failed", "validate_inbound_headers",
                 "--mode", "Traceback"):
        assert word not in text, (word, text)


def today() -> str:
    return datetime.now(ZoneInfo("Europe/London")).strftime("%d %B %Y")


def assert_schoolgate_page(reply: Reply | tuple[int, http.client.HTTPMessage, bytes], *,
                           status: int, heading: str, what: str,
                           site: str | None = None) -> str:
    """Schoolgate's page in the block page's style; returns its reference."""
    code, headers, body = ((reply.status, reply.headers, reply.body) if isinstance(reply, Reply)
                           else reply)
    text = body.decode("utf-8")
    assert code == status, (code, text)
    assert_not_mitmproxy(headers, body)
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    reference = headers["X-Schoolgate-Reference"]
    assert REFERENCE_RE.match(reference), reference
    assert f"<h1>{heading}</h1>" in text, text
    assert f"<title>{heading} – {SCHOOL}</title>" in text, text
    assert f"<dt>What happened</dt><dd>{html.escape(what)}</dd>" in text, text
    assert f'<dd class="ref">{reference}</dd>' in text
    assert "<dt>Time</dt>" in text and today() in text, text
    if site is not None:
        assert f"<dt>Site</dt><dd>{site}</dd>" in text, text
    assert "This is not a block." in text
    return reference


# -- a site that cannot be reached ------------------------------------------------------------

# (case, URL (ORIGIN: the origin's HTTPS port; CLOSED: a port nothing listens on; SILENT: one
#  that never answers), the status, the host the page names, the metric's kind, what the page
#  says happened)
UNREACHABLE = [
    # The name does not exist: over plain HTTP, and inside an intercepted HTTPS tunnel.
    ("dns-http", "http://nonexistent.invalid/page", 502, "nonexistent.invalid", "dns",
     "the site's name was not found"),
    ("dns-https", "https://nonexistent.invalid/page", 502, "nonexistent.invalid", "dns",
     "the site's name was not found"),
    # Nothing listens on the port.
    ("refused-http", "http://127.0.0.1:CLOSED/", 502, "127.0.0.1", "refused",
     "the site refused the connection"),
    ("refused-https", "https://127.0.0.1:CLOSED/", 502, "127.0.0.1", "refused",
     "the site refused the connection"),
    # The server's certificate does not name the host: TLS to the server fails.
    ("tls", "https://wrong-name.test:ORIGIN/", 502, "wrong-name.test", "tls",
     "the site's secure connection could not be checked"),
    # The server never answers: 504 once `upstream_connect_timeout` (1s here) has passed.
    ("timeout-http", "http://127.0.0.1:SILENT/", 504, "127.0.0.1", "timeout",
     "the site did not answer in time"),
    ("timeout-https", "https://127.0.0.1:SILENT/", 504, "127.0.0.1", "timeout",
     "the site did not answer in time"),
]


@pytest.mark.parametrize(("url", "status", "host", "kind", "what"),
                         [c[1:] for c in UNREACHABLE], ids=[c[0] for c in UNREACHABLE])
def test_a_site_that_cannot_be_reached_gets_schoolgates_page(env, url, status, host, kind, what):
    url = (url.replace("CLOSED", str(closed_port())).replace("ORIGIN", str(env.origin.https_port))
           .replace("SILENT", str(env.silent_port)))
    before = scrape(env.gateway.metrics_url)

    reply = env.client.get(url)

    reference = assert_schoolgate_page(reply, status=status,
                                       heading="This site could not be reached",
                                       what=what, site=host)
    assert ("The school&#x27;s web filter has not blocked this page: the site could not be "
            "reached.") in reply.text
    # The page's reference is the request's own decision, already in the store: an allow.
    events = wait_for(lambda: read_events(env.setup.database, "reference = ?", (reference,)),
                      f"the event with reference {reference}", on_timeout=env.gateway.tail)
    assert {(e["action"], e["host"]) for e in events} == {("allow", host)}, events
    after = scrape(env.gateway.metrics_url)
    assert (sample(after, "schoolgate_error_pages_total", kind=kind)
            == sample(before, "schoolgate_error_pages_total", kind=kind) + 1)


def test_a_head_request_gets_the_pages_headers_without_its_body(env):
    with socket.create_connection(("127.0.0.1", env.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"HEAD http://nonexistent.invalid/ HTTP/1.1\r\nHost: nonexistent.invalid\r\n"
                     b"\r\n")
        response = http.client.HTTPResponse(sock, method="HEAD")
        response.begin()
        assert response.status == 502
        assert_not_mitmproxy(response.msg)
        assert int(response.msg["Content-Length"]) > 0
        assert response.read() == b""
        sock.settimeout(2)
        assert sock.recv(1) == b"", "a body followed the HEAD answer"


def test_over_http2_the_page_is_schoolgates_too(env):
    curl = shutil.which("curl")
    assert curl, "curl is needed (.ci/run installs it)"
    done = subprocess.run(
        [curl, "-s", "-D", "-", "-o", "/dev/null", "-w", "\\n%{http_version} %{http_code}",
         "--http2", "--cacert", str(env.setup.schoolgate_ca), "-x",
         f"http://127.0.0.1:{env.port}", "https://nonexistent.invalid/"],
        capture_output=True, text=True, timeout=TIMEOUT, env=clean_env())
    head = done.stdout
    assert head.rstrip().endswith("\n2 502"), done  # HTTP/2 to the client, and the status
    assert "mitmproxy" not in head.lower(), head
    assert re.search(r"^x-schoolgate-reference: [0-9A-Z]{5}-[0-9A-Z]{5}\r?$", head, re.M), head


# -- a request that cannot be read ------------------------------------------------------------


def raw(env: Env, data: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Send `data` as it is to the proxy port; the answer's status, headers and body."""
    with socket.create_connection(("127.0.0.1", env.port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.msg, response.read()


BAD_REQUESTS = [
    ("not-http", b"hello there\r\n\r\n"),
    ("broken-header", b"GET http://fine.test/ HTTP/1.1\r\nHost fine.test\r\n\r\n"),
    ("bad-connect", b"CONNECT bad request HTTP/1.1\r\n\r\n"),
    # Both lengths: refused against request smuggling (mitmproxy's page told the reader to
    # switch its check off).
    ("smuggling", b"POST http://fine.test/ HTTP/1.1\r\nHost: fine.test\r\nContent-Length: 3\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("no-host", b"GET / HTTP/1.0\r\n\r\n"),
]


@pytest.mark.parametrize("data", [c[1] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_a_request_that_cannot_be_read_gets_schoolgates_400(env, data):
    answer = raw(env, data)
    assert_schoolgate_page(answer, status=400, heading="This request could not be sent",
                           what="the request was not valid")
    assert answer[1]["Connection"] == "close"


def test_opening_the_proxy_itself_says_what_it_is(env):
    # A technician types the gateway's address into a browser that does not use it as a proxy.
    answer = raw(env, f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{env.port}\r\n\r\n".encode())
    assert_schoolgate_page(answer, status=400, heading="This is the school&#x27;s web filter",
                           what="this address is the web filter")
    assert "set it as the proxy" in answer[2].decode()


# -- every answer the gateway makes itself ----------------------------------------------------


def test_no_response_schoolgate_makes_names_mitmproxy(env):
    # The block page, over HTTP and inside a decrypted tunnel.
    for url in ("http://blocked.test/", "https://blocked.test/"):
        reply = env.client.get(url)
        assert reply.status == 403, reply
        assert_not_mitmproxy(reply.headers, reply.body)
    # The problem-report page.
    reply = env.client.get("http://fine.test/.well-known/schoolgate/report-site")
    assert reply.status == 200, reply
    assert_not_mitmproxy(reply.headers, reply.body)
    # A check answer, and a check refused for a wrong token.
    token = (env.setup.data_dir / TOKEN_FILE).read_text(encoding="ascii").strip()
    for value, status in ((f"{token} group=pupils", 403), ("wrong-token group=pupils", 403)):
        reply = env.client.get("http://blocked.test/", headers={CHECK_HEADER: value})
        assert reply.status == status, reply
        assert_not_mitmproxy(reply.headers, reply.body)
    # The answer to a CONNECT.
    with socket.create_connection(("127.0.0.1", env.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"CONNECT fine.test:443 HTTP/1.1\r\nHost: fine.test:443\r\n\r\n")
        response = http.client.HTTPResponse(sock, method="CONNECT")
        response.begin()
        assert response.status == 200
        assert_not_mitmproxy(response.msg)
    # The metrics endpoint and the push API (refused without its token).
    metrics = urllib.parse.urlsplit(env.gateway.metrics_url)
    conn = http.client.HTTPConnection("127.0.0.1", metrics.port, timeout=TIMEOUT)
    conn.request("GET", metrics.path)
    response = conn.getresponse()
    assert response.status == 200
    assert_not_mitmproxy(response.msg)
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", env.push_port, timeout=TIMEOUT)
    conn.request("POST", "/v1/ip-map", body=json.dumps({"ip": "10.0.0.1", "user": "x"}),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 401, response.status
    assert_not_mitmproxy(response.msg, response.read())
    conn.close()
