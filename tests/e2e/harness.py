"""The pieces the end-to-end tests are built from: a test PKI, an origin server, a config file,
the gateway as a subprocess, a client that only trusts Schoolgate's CA, and readers for the event
store and the metrics endpoint. Everything listens on 127.0.0.1 on ports the OS picks.

Nothing here sleeps to synchronise: waits poll a condition with a deadline and fail with the
gateway's output when the deadline passes.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import re
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

#: Seconds any single wait may take before the test fails (and says what it waited for).
TIMEOUT = 20.0

#: `--workers` for gateways whose test is not about workers: one (a supervisor and one worker,
#: the same code path as any number), which keeps the suite's CPU time near what one process
#: cost. SCHOOLGATE_E2E_WORKERS=N runs them all with N, `default` with one per core (the whole
#: suite passed so); test_workers.py always runs several, and the default once.
E2E_WORKERS = os.environ.get("SCHOOLGATE_E2E_WORKERS", "1")

#: Host names the origin's certificate covers besides 127.0.0.1 (see failing_gateway.py and
#: `resolving_script` for how the `.test` names reach the origin).
ORIGIN_NAMES = ("localhost", "fine.test", "explode.test", "www.explode.test", "blocked.test",
                "iwf-dom.test", "www.iwf-dom.test", "ctiru-dom.test", "www.ctiru-dom.test")

#: Errors the origin's handlers raised (shown when a test fails; a peer that hangs up is normal).
ORIGIN_ERRORS: list[str] = []

REFERENCE_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$")


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT,
             on_timeout: Callable[[], str] = lambda: "") -> Any:
    """Poll `predicate` until it returns something truthy; return it, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            extra = on_timeout()
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 + (f"\n{extra}" if extra else ""))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


# ---------------------------------------------------------------------------------------------
# Test PKI: a CA that signs the origin's certificate; the gateway trusts it for upstream TLS.


@dataclass(frozen=True)
class OriginPKI:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_pki(directory: Path, names: Sequence[str] = ORIGIN_NAMES) -> OriginPKI:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Schoolgate e2e tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Schoolgate e2e origin CA"),
    ])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] + [x509.DNSName(n) for n in names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=False, crl_sign=False,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = OriginPKI(directory / "origin-ca.pem", directory / "origin.pem", directory / "origin-key.pem")
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


# ---------------------------------------------------------------------------------------------
# The origin: what the gateway fetches allowed pages from. It remembers every request it gets, so
# a test can prove a blocked request never reached it.


@dataclass(frozen=True)
class OriginRequest:
    scheme: str
    method: str
    path: str
    host: str


class Origin:
    """HTTP and HTTPS servers on 127.0.0.1 in background threads.

    /bytes     a fixed random 200 kB binary body (every byte value occurs)
    /hello     a short text body
    /pages/*   the same body as /bytes, for tests that need several distinct pages on one host
    """

    def __init__(self, pki: OriginPKI):
        self.body = bytes(range(256)) + os.urandom(200_000 - 256)
        self.hello = b"hello from the origin\n"
        self._lock = threading.Lock()
        self._requests: list[OriginRequest] = []
        self.errors = ORIGIN_ERRORS

        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(pki.server_cert, pki.server_key)
        self._http = self._server("http")
        self._https = self._server("https")
        # The handshake happens in the handler thread (see _Handler.setup), so one slow client
        # cannot stall the accept loop.
        self._https.socket = tls.wrap_socket(
            self._https.socket, server_side=True, do_handshake_on_connect=False
        )
        self.http_port = self._http.server_address[1]
        self.https_port = self._https.server_address[1]
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                             name=f"origin {s.scheme}", daemon=True)
            for s in (self._http, self._https)
        ]
        for t in self._threads:
            t.start()

    def _server(self, scheme: str) -> ThreadingHTTPServer:
        origin = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                origin.errors.append(f"{scheme} {client_address}: {sys.exc_info()[1]!r}")

        server = Server(("127.0.0.1", 0), _Handler)
        server.scheme = scheme  # type: ignore[attr-defined]
        server.origin = origin  # type: ignore[attr-defined]
        return server

    def url(self, scheme: str, path: str, host: str = "127.0.0.1") -> str:
        port = self.http_port if scheme == "http" else self.https_port
        return f"{scheme}://{host}:{port}{path}"

    def record(self, request: OriginRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[OriginRequest]:
        with self._lock:
            return list(self._requests)

    def requests_with(self, text: str) -> list[OriginRequest]:
        """Requests whose path or Host header contains `text`."""
        return [r for r in self.requests if text in r.path or text in r.host]

    def close(self) -> None:
        for s in (self._http, self._https):
            s.shutdown()
            s.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds; a stuck peer cannot hold a handler thread forever
    server: Any

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        origin: Origin = self.server.origin
        origin.record(OriginRequest(self.server.scheme, "GET", self.path, self.headers.get("Host", "")))
        route = self.path.split("?", 1)[0]
        if route == "/bytes" or route.startswith("/pages/"):
            body, ctype = origin.body, "application/octet-stream"
        elif route == "/hello":
            body, ctype = origin.hello, "text/plain; charset=utf-8"
        else:
            body, ctype = b"not found\n", "text/plain; charset=utf-8"
        found = route in ("/bytes", "/hello") or route.startswith("/pages/")
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the request list is the log


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class GatewaySetup:
    config: Path
    data_dir: Path
    ca_dir: Path

    @property
    def database(self) -> Path:
        return self.data_dir / "schoolgate.sqlite3"

    @property
    def schoolgate_ca(self) -> Path:
        return self.ca_dir / "mitmproxy-ca-cert.pem"


SCHOOL = "Test School"
GAMBLING_TITLE = "Gambling & betting"  # an ampersand, so the page must escape it
GAMES_TITLE = "Online games"
PUPILS_TITLE = "Pupils <KS3>"  # angle brackets, likewise
STAFF_TITLE = "Staff"


def write_config(directory: Path, *, upstream_ca: Path, events: dict | None = None,
                 patch: Callable[[dict], None] | None = None) -> GatewaySetup:
    """A config for the tests, in `directory` with its own data and CA folders.

    `127.0.0.1` is in the pupils group, which blocks gambling (`bet365.com`, `blocked.test`, in
    `lists/gambling`) and games (`localhost`: it resolves to the origin, so a leak would reach it).
    `patch` may change the document (a dict) before it is written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    lists = directory / "lists"
    lists.mkdir(exist_ok=True)
    (lists / "gambling").write_text("# test list\nbet365.com\nblocked.test\n", encoding="utf-8")
    (lists / "games").write_text("localhost\n", encoding="utf-8")
    data_dir, ca_dir = directory / "data", directory / "ca"
    doc = {
        "school": {"name": SCHOOL, "timezone": "Europe/London"},
        "listen": {"host": "127.0.0.1", "port": 0},
        "metrics": {"host": "127.0.0.1", "port": 0},
        "data_dir": str(data_dir),
        "ca_dir": str(ca_dir),
        "upstream_trusted_ca": str(upstream_ca),
        "events": events or {"flush_interval": 0.05},
        "categories": {
            "gambling": {"title": GAMBLING_TITLE, "lists": [str(lists / "gambling")]},
            "games": {"title": GAMES_TITLE, "lists": [str(lists / "games")]},
        },
        "groups": {
            "pupils": {
                "title": PUPILS_TITLE,
                "subnets": ["127.0.0.0/8"],
                "blocked_categories": ["gambling", "games"],
                # The test origin is https://127.0.0.1:PORT, a CONNECT to an IP address, which
                # pupils are refused by default; test_tls.py proves that default.
                "no_sni": "log",
            },
            "staff": {"title": STAFF_TITLE, "subnets": ["10.30.0.0/16"], "blocked_categories": []},
        },
        "default_group": "pupils",
        # The test origins listen on ephemeral ports; test_tls.py narrows this to prove the rule.
        "circumvention": {"allowed_ports": [443, "1024-65535"]},
    }
    if patch is not None:
        patch(doc)
    path = directory / "schoolgate.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return GatewaySetup(path, data_dir, ca_dir)


def replace_file(path: Path, text: str) -> None:
    """Give `path` new contents in one step (as editors that save atomically do), so a watcher
    polling it never reads a half-written file."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def config_line(config: Path, text: str) -> int:
    """The 1-based number of the only line of `config` that contains `text`."""
    found = [n for n, line in enumerate(config.read_text(encoding="utf-8").splitlines(), 1)
             if text in line]
    assert len(found) == 1, f"{text!r} is on lines {found} of {config}"
    return found[0]


# ---------------------------------------------------------------------------------------------
# A source for lists fetched over HTTP (an illegal list's `source: http://...`)


class ListServer:
    """Serves `body` at /list.txt from 127.0.0.1 with status `status`; a test changes either at
    any time, and `served` counts the responses given with each status."""

    def __init__(self, body: str = ""):
        self.body = body
        self.status = 200
        self._lock = threading.Lock()
        self._served: dict[int, int] = {}
        lists = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                with lists._lock:
                    status, body = lists.status, lists.body.encode("utf-8")
                    if self.path != "/list.txt":
                        status, body = 404, b"no such list\n"
                    if status != 200:
                        body = b"server error\n" if status >= 500 else body
                    lists._served[status] = lists._served.get(status, 0) + 1
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/list.txt"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, name="list server",
                                        daemon=True)
        self._thread.start()

    def set(self, *, body: str | None = None, status: int | None = None) -> None:
        with self._lock:
            if body is not None:
                self.body = body
            if status is not None:
                self.status = status

    def served(self, status: int) -> int:
        with self._lock:
            return self._served.get(status, 0)

    def close(self) -> None:
        """Stop serving and close the port: fetches are then refused."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connections are refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/list.txt"


# ---------------------------------------------------------------------------------------------
# The gateway as a subprocess


_RESOLVING_SCRIPT = '''"""`schoolgate` with every `*.test` name resolving to 127.0.0.1, where the e2e origin listens,
so a request to `name.test:ORIGIN_PORT` that leaked through the gateway would reach the origin and
be counted; and every `*.invalid` name not found (RFC 6761: it never resolves), answered here as
glibc answers a name that does not exist, without asking a DNS server the tests may not have.
Written by tests/e2e/harness.py; takes the same arguments as `schoolgate`."""

import socket
import sys

from schoolgate import cli

_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if isinstance(name, str) and name.rstrip(".").lower().endswith(".test"):
        host = "127.0.0.1"
    elif isinstance(name, str) and name.rstrip(".").lower().endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
'''


def resolving_script(directory: Path) -> Path:
    """Write the `*.test`-resolving gateway script (above) into `directory`; return its path, for
    `running_gateway(..., script=...)`. Only name resolution differs from `schoolgate`."""
    path = directory / "resolving_gateway.py"
    path.write_text(_RESOLVING_SCRIPT, encoding="utf-8")
    return path



def schoolgate_command() -> list[str]:
    """The installed console script next to this Python, else the module."""
    script = Path(sys.executable).with_name("schoolgate")
    return [str(script)] if script.exists() else [sys.executable, "-m", "schoolgate.cli"]


def clean_env() -> dict[str, str]:
    """The environment for subprocesses: unbuffered output, and no proxy settings to confuse them."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("SCHOOLGATE_CONFIG", None)
    return env


def run_cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run `schoolgate ARGS...` to completion, capturing its output as text."""
    return subprocess.run([*schoolgate_command(), *args], capture_output=True, text=True,
                          timeout=timeout, env=clean_env())


class GatewayProcess:
    """One running `schoolgate run`, its output collected line by line from both pipes."""

    launched: list[GatewayProcess] = []

    def __init__(self, name: str, argv: Sequence[str]):
        self.name = name
        self.argv = list(argv)
        self.lines: list[tuple[str, str]] = []  # (stream, line), in arrival order
        self._cond = threading.Condition()
        self.started_at = time.monotonic()
        self.stopped_at: float | None = None
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=clean_env(),
        )
        GatewayProcess.launched.append(self)
        self._readers = [
            threading.Thread(target=self._read, args=(stream, label), daemon=True,
                             name=f"{name} {label}")
            for stream, label in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr"))
        ]
        for t in self._readers:
            t.start()
        self.proxy_port: int | None = None
        self.metrics_url: str | None = None

    @classmethod
    def run(cls, name: str, config: Path, *, script: Path | None = None,
            workers: int | None = None, listen: str = "127.0.0.1:0") -> GatewayProcess:
        """Start the gateway on ports the OS picks and wait until its banner says where.
        `workers`: `--workers N`; None: `E2E_WORKERS`; 0: the default (one per core)."""
        head = [sys.executable, str(script)] if script else schoolgate_command()
        if workers is None:
            workers = 0 if E2E_WORKERS == "default" else int(E2E_WORKERS)
        extra = ["--workers", str(workers)] if workers else []
        gw = cls(name, [*head, "run", "--config", str(config),
                        "--listen", listen, "--metrics", "127.0.0.1:0", *extra])
        try:
            gw.wait_for_banner()
        except BaseException:
            gw.kill()
            raise
        return gw

    def _read(self, stream, label: str) -> None:
        for line in stream:
            with self._cond:
                self.lines.append((label, line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def output(self, stream: str | None = None) -> str:
        with self._cond:
            return "\n".join(line for s, line in self.lines if stream in (None, s))

    def tail(self, n: int = 200) -> str:
        with self._cond:
            lines = [f"{s}: {line}" for s, line in self.lines[-n:]]
        return f"$ {' '.join(self.argv)}\n" + "\n".join(lines)

    def wait_for_output(self, pattern: str | re.Pattern, timeout: float = TIMEOUT) -> re.Match:
        """Wait until a line matches `pattern`; fail early if the process exits first."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for _, line in self.lines[seen:]:
                    if m := rx.search(line):
                        return m
                seen = len(self.lines)
                readers_done = not any(t.is_alive() for t in self._readers)
                if readers_done:
                    raise AssertionError(
                        f"gateway {self.name} exited (status {self.proc.wait()}) before printing "
                        f"{rx.pattern!r}\n{self.tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"gateway {self.name} printed no {rx.pattern!r} in {timeout:.0f}s\n"
                        f"{self.tail()}"
                    )
                self._cond.wait(min(left, 0.2))

    def wait_for_banner(self) -> None:
        m = self.wait_for_output(r"proxy listening on\s+127\.0\.0\.1:(\d+)\b")
        self.proxy_port = int(m[1])
        m = self.wait_for_output(r"^\s*metrics\s+(http://127\.0\.0\.1:\d+/metrics)\s*$")
        self.metrics_url = m[1]

    def curl_lines(self, count: int = 2) -> list[str]:
        """The banner's `curl ...` example commands (waits until `count` of them are printed)."""
        def found() -> list[str]:
            with self._cond:
                got = [line.strip() for _, line in self.lines if line.strip().startswith("curl ")]
            return got if len(got) >= count else []

        return wait_for(found, f"{count} curl lines in the banner", on_timeout=self.tail)

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM, as a service manager would; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"gateway {self.name} still running {timeout:.0f}s after SIGTERM\n{self.tail()}"
            ) from None
        self._finish()
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._finish()

    def _finish(self) -> None:
        for t in self._readers:
            t.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None and not any(t.is_alive() for t in self._readers):
                pipe.close()
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()


@contextlib.contextmanager
def running_gateway(name: str, config: Path, *, script: Path | None = None,
                    workers: int | None = None) -> Iterator[GatewayProcess]:
    """A started gateway, stopped with SIGTERM afterwards: it must exit with status 0.

    A test may stop it itself; an error kills it, so no gateway outlives the tests.
    """
    gw = GatewayProcess.run(name, config, script=script, workers=workers)
    try:
        yield gw
    except BaseException:
        gw.kill()
        raise
    status = gw.stop()
    assert status == 0, f"gateway {name} exited with status {status}\n{gw.tail()}"


# ---------------------------------------------------------------------------------------------
# A browser stand-in: every request through the gateway, trusting only Schoolgate's CA.


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes = field(repr=False)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _ThroughGateway(urllib.request.BaseHandler):
    """Send every request to the gateway. Unlike ProxyHandler it never honours `no_proxy`,
    which commonly lists 127.0.0.1 and would silently send requests straight to the origin."""

    handler_order = 100  # before the HTTP and HTTPS handlers, like ProxyHandler

    def __init__(self, hostport: str):
        self.hostport = hostport

    def http_open(self, req: urllib.request.Request) -> None:
        # http: absolute-form request to the proxy; https: CONNECT tunnel through it.
        req.set_proxy(self.hostport, "http")

    https_open = http_open


def schoolgate_tls(ca_file: Path) -> ssl.SSLContext:
    """Verifies certificates and host names against Schoolgate's CA and nothing else."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    return ctx


class GatewayClient:
    def __init__(self, proxy_port: int, ca_file: Path, timeout: float = 15.0):
        self.proxy_port = proxy_port
        self.ca_file = ca_file
        self.timeout = timeout
        self.tls = schoolgate_tls(ca_file)
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # replaces the default one that reads the environment
            _ThroughGateway(f"127.0.0.1:{proxy_port}"),
            urllib.request.HTTPSHandler(context=self.tls),
        )

    def get(self, url: str, headers: dict[str, str] | None = None) -> Reply:
        """GET `url` through the gateway; 4xx and 5xx are returned, not raised."""
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with self._opener.open(request, timeout=self.timeout) as r:
                return Reply(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            with e:
                return Reply(e.code, e.headers, e.read())


def direct_get(url: str, timeout: float = 10.0) -> bytes:
    """GET without any proxy (for the metrics endpoint)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as r:
        assert r.status == 200, r.status
        return r.read()


# ---------------------------------------------------------------------------------------------
# Readers: the event store (read-only) and the metrics endpoint


def read_events(database: Path, where: str = "1", params: Iterable[Any] = ()) -> list[dict]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f"SELECT * FROM events WHERE {where} ORDER BY id", tuple(params))
        return [dict(r) for r in rows]
    finally:
        conn.close()


def count_events(database: Path) -> int:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def wait_for_events(database: Path, where: str, params: Iterable[Any] = (), count: int = 1,
                    gateway: GatewayProcess | None = None) -> list[dict]:
    params = tuple(params)

    def enough() -> list[dict]:
        rows = read_events(database, where, params)
        return rows if len(rows) >= count else []

    rows = wait_for(enough, f"{count} event(s) WHERE {where} {params}",
                    on_timeout=gateway.tail if gateway else lambda: "")
    assert len(rows) == count, rows
    return rows


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics_url: str) -> Samples:
    text = direct_get(metrics_url).decode("utf-8")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}; have {[dict(ls) for n, ls in samples if n == name]}"
    return samples[key]


# ---------------------------------------------------------------------------------------------
# `schoolgate run --workers N`: which worker process serves a connection


_WORKER_RE = re.compile(r"worker (\d+) \(pid (\d+)\) accepting connections")


def worker_pids(gw: GatewayProcess) -> dict[int, int]:
    """Each worker's pid, from the supervisor's log (the latest start of each index)."""
    return {int(i): int(pid) for i, pid in _WORKER_RE.findall(gw.output())}


def _tcp_port(field: str) -> int:
    return int(field.rsplit(":", 1)[1], 16)


def serving_pid(client: Any, proxy_port: int, pids: Iterable[int]) -> int | None:
    """The pid, among `pids`, of the process holding the gateway's end of the open connection
    `client` (a socket to the proxy port): read from /proc (Linux), so nothing in what the
    gateway sends says which worker it is."""
    local_port = client.getsockname()[1]
    inode = None
    with open("/proc/net/tcp", encoding="ascii") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if _tcp_port(fields[1]) == proxy_port and _tcp_port(fields[2]) == local_port:
                inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
    return None


@dataclass
class Served:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    pid: int | None
    """The worker that answered (None: it could not be told)."""


def request_on_new_connection(proxy_port: int, pids: Iterable[int], method: str, url: str,
                              body: bytes | None = None,
                              headers: dict[str, str] | None = None) -> Served:
    """One plain-HTTP request through the proxy on a connection of its own, and which worker
    process answered it (looked up while the connection is still open)."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=15)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        reply = conn.getresponse()
        data = reply.read()
        pid = serving_pid(conn.sock, proxy_port, pids)
        return Served(reply.status, reply.headers, data, pid)
    finally:
        conn.close()
