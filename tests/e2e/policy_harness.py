"""Pieces for the end-to-end tests of group policies, identity, TLS decisions and emergency blocks:

- `RecordingOrigin`: HTTP and HTTPS servers that answer any method and remember each request
  whole (method, path, headers, body), so a test asserts on what the origin actually received.
- `Browser`: a browser stand-in that can browse from any loopback address (to the gateway,
  127.0.0.2 is another machine than 127.0.0.1, so it can be in another group), with or without
  a proxy login, trusting the TLS context the test gives it.
- `open_tunnel`: a CONNECT sent by hand, so a test sees the proxy's own answer (403, 407) and,
  after a 200, can make its own TLS handshake and read the certificate the far end presents.
- `start_gateway`: `policy_gateway.py` (the real gateway, with test-only name resolution and an
  injectable schedule clock) with its sidecar file written.

Everything listens on 127.0.0.1 on ports the OS picks. Nothing sleeps to synchronise.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from .harness import (
    ORIGIN_ERRORS,
    TIMEOUT,
    GatewayProcess,
    OriginPKI,
    Reply,
    replace_file,
    running_gateway,
)

HERE = Path(__file__).resolve().parent
POLICY_GATEWAY = HERE / "policy_gateway.py"

#: The body of every answer the recording origin gives.
ORIGIN_BODY = b"hello from the recording origin\n"


# ---------------------------------------------------------------------------------------------
# The origin


@dataclass(frozen=True)
class ReceivedRequest:
    scheme: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = field(repr=False)

    @property
    def host(self) -> str:
        return self.header("Host")[0] if self.header("Host") else ""

    def header(self, name: str) -> list[str]:
        """Every value of header `name` (case-insensitive), in the order received."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


class RecordingOrigin:
    """HTTP and HTTPS on 127.0.0.1. Every request of any method is answered 200 with
    `ORIGIN_BODY`, and recorded with its headers and body."""

    def __init__(self, pki: OriginPKI):
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self.ca_cert = pki.ca_cert
        self.server_cert_der = ssl.PEM_cert_to_DER_cert(pki.server_cert.read_text())
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(pki.server_cert, pki.server_key)
        self._http = self._server("http")
        self._https = self._server("https")
        self._https.socket = tls.wrap_socket(self._https.socket, server_side=True,
                                             do_handshake_on_connect=False)
        self.http_port = self._http.server_address[1]
        self.https_port = self._https.server_address[1]
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                                          name=f"recording origin {s.scheme}", daemon=True)
                         for s in (self._http, self._https)]
        for t in self._threads:
            t.start()

    def _server(self, scheme: str) -> ThreadingHTTPServer:
        origin = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                ORIGIN_ERRORS.append(f"recording {scheme} {client_address}: {sys.exc_info()[1]!r}")

        server = Server(("127.0.0.1", 0), _Handler)
        server.scheme = scheme  # type: ignore[attr-defined]
        server.origin = origin  # type: ignore[attr-defined]
        return server

    def port(self, scheme: str) -> int:
        return self.http_port if scheme == "http" else self.https_port

    def url(self, scheme: str, host: str, path: str) -> str:
        return f"{scheme}://{host}:{self.port(scheme)}{path}"

    def record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_with(self, text: str) -> list[ReceivedRequest]:
        """Requests whose path, Host header or body contains `text`."""
        raw = text.encode()
        return [r for r in self.requests if text in r.path or text in r.host or raw in r.body]

    def close(self) -> None:
        for s in (self._http, self._https):
            s.shutdown()
            s.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: Any

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.origin.record(ReceivedRequest(
            self.server.scheme, self.command, self.path, tuple(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(ORIGIN_BODY)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(ORIGIN_BODY)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _answer  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the request list is the log


# ---------------------------------------------------------------------------------------------
# CONNECT tunnels and the browser stand-in


def basic(user: str, password: str) -> str:
    """A `Basic` credentials value, as a browser sends in Proxy-Authorization."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def only_trusting(ca_file: Path) -> ssl.SSLContext:
    """Verifies certificates and host names against `ca_file` and nothing else."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    return ctx


def trusting_nothing_checked() -> ssl.SSLContext:
    """A context that completes any handshake, for reading whatever certificate is presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class Tunnel:
    """The proxy's answer to a CONNECT; `sock` is the open tunnel after a 200, else None."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes
    sock: socket.socket | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def open_tunnel(proxy_port: int, host: str, port: int, *, source: str = "127.0.0.1",
                proxy_authorization: str | None = None, timeout: float = TIMEOUT) -> Tunnel:
    """Send `CONNECT host:port` to the gateway from the address `source`."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout,
                                    source_address=(source, 0))
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy_authorization is not None:
        head.append(f"Proxy-Authorization: {proxy_authorization}")
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("ascii"))
        response = http.client.HTTPResponse(sock, method="CONNECT")
        response.begin()
        if response.status == 200:
            # Nothing follows a 200 until the client speaks, so the reader holds no tunnel bytes.
            headers = response.msg
            response.close()
            return Tunnel(200, headers, b"", sock)
        body = response.read()
        response.close()
    except BaseException:
        sock.close()
        raise
    sock.close()
    return Tunnel(response.status, response.msg, body)


def request_over(sock: socket.socket, host: str, port: int, method: str, path: str,
                 headers: dict[str, str] | None = None, body: bytes | None = None,
                 timeout: float = TIMEOUT) -> Reply:
    """One HTTP/1.1 request on an already open (tunnelled, maybe TLS) socket."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.msg, response.read())
    finally:
        conn.close()


class TunnelRefused(Exception):
    """The gateway answered the CONNECT with something other than 200."""

    def __init__(self, tunnel: Tunnel):
        super().__init__(f"CONNECT answered {tunnel.status}: {tunnel.body[:200]!r}")
        self.tunnel = tunnel


class Browser:
    """Requests through the gateway from the loopback address `source`, with an optional proxy
    login, trusting `tls` for HTTPS (which goes through a CONNECT tunnel, as browsers do).

    A CONNECT the gateway refuses comes back as a `Reply` with the proxy's status and body, as a
    browser would show it."""

    def __init__(self, proxy_port: int, tls: ssl.SSLContext, *, source: str = "127.0.0.1",
                 login: tuple[str, str] | None = None, timeout: float = TIMEOUT):
        self.proxy_port = proxy_port
        self.tls = tls
        self.source = source
        self.login = login
        self.timeout = timeout

    def get(self, url: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", url, headers=headers)

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> Reply:
        parts = urlsplit(url)
        assert parts.hostname is not None, url
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = dict(headers or {})
        auth = basic(*self.login) if self.login else None
        if parts.scheme == "http":
            if auth:
                headers["Proxy-Authorization"] = auth
            conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=self.timeout,
                                              source_address=(self.source, 0))
            try:
                conn.request(method, url, body=body, headers=headers)
                response = conn.getresponse()
                return Reply(response.status, response.msg, response.read())
            finally:
                conn.close()
        assert parts.scheme == "https", url
        port = parts.port or 443
        tunnel = open_tunnel(self.proxy_port, parts.hostname, port, source=self.source,
                             proxy_authorization=auth, timeout=self.timeout)
        if tunnel.sock is None:
            return Reply(tunnel.status, tunnel.headers, tunnel.body)
        tls_sock = self.tls.wrap_socket(tunnel.sock, server_hostname=parts.hostname)
        return request_over(tls_sock, parts.hostname, port, method, path, headers, body,
                            self.timeout)


# ---------------------------------------------------------------------------------------------
# The gateway under test


def write_sidecar(config: Path, *, resolve: Sequence[str] = (), clock_file: Path | None = None
                  ) -> None:
    """What `policy_gateway.py` changes for this config (see its docstring)."""
    data = {"resolve": list(resolve), "clock_file": str(clock_file) if clock_file else None}
    Path(str(config) + ".e2e.json").write_text(json.dumps(data), encoding="utf-8")


@contextlib.contextmanager
def start_gateway(name: str, config: Path, *, resolve: Sequence[str] = (),
                  clock_file: Path | None = None) -> Iterator[GatewayProcess]:
    """The real gateway for `config` (see `policy_gateway.py`), stopped (status 0) afterwards."""
    write_sidecar(config, resolve=resolve, clock_file=clock_file)
    with running_gateway(name, config, script=POLICY_GATEWAY) as gw:
        yield gw


def set_school_clock(clock_file: Path, when: str, timezone: str = "Europe/London") -> float:
    """Make the gateway's schedule clock read `when` (ISO date and time, in `timezone`); return
    it as Unix time. Takes effect at the next decision."""
    ts = datetime.fromisoformat(when).replace(tzinfo=ZoneInfo(timezone)).timestamp()
    replace_file(clock_file, repr(ts))
    return ts


def sources_available(*addresses: str) -> None:
    """Fail with a clear message when a loopback address cannot be bound (every 127/8 address
    can on Linux; the tests rely on it to stand in for other machines)."""
    for address in addresses:
        with socket.socket() as s:
            try:
                s.bind((address, 0))
            except OSError as e:
                raise AssertionError(f"cannot bind {address} as a client address: {e}") from None
