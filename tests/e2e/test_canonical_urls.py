"""The published Safe Browsing canonicalisation table (the Go reference client's
TestCanonicalURL vectors, ../shared/data/canonicalization/go_safebrowsing/canonical_url.tsv),
every row that has a canonical form, run through `schoolgate why --json` and through the running
gateway, each row a case:

- `why` shows the table's canonical form as `canonical_url` (the port dropped, as the table
  drops it), and gives the verdict the gateway gives;
- the gateway, with that form on an IWF-style list, blocks the request a client makes for the
  row's URL with the "access denied" page and records it: including hosts its proxy library
  refuses to parse (`host%23.com`, `%31%36%38.%31%38%38.%39%39.%32%36`, `%20leadingspace.com`),
  which the gateway reads itself so that a list entry for them can be seen to block;
- the same kinds of host, not listed, are refused with Schoolgate's 400 page, recorded, and
  never reach a server (one of them spells the test origin's own address).

A row's request is what a client puts on the request line for the row's URL: surrounding
spaces and tab, CR and LF dropped, the fragment cut, bytes a request line cannot carry
percent-escaped, `http://` added when there is no scheme, and a URL escaped whole
(`http%3A%2F%2Fwackyurl.com:80/`) sent unescaped. The Go function drops the query; the spec
(and `canonical_url`) keep it, so canonical forms are compared without it, with the spec's
uppercase escapes.
"""

from __future__ import annotations

import csv
import json
import re
import socket
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .harness import (
    REFERENCE_RE,
    TIMEOUT,
    GatewayClient,
    GatewayProcess,
    GatewaySetup,
    Origin,
    read_events,
    resolving_script,
    run_cli,
    running_gateway,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

TABLE = (Path(__file__).resolve().parents[3] / "shared" / "data" / "canonicalization"
         / "go_safebrowsing" / "canonical_url.tsv")
IWF_WORDING = "identified by the Internet Watch Foundation (IWF)"


def unescape(field: str) -> bytes:
    """A field's raw bytes (the table writes \\t, \\r, \\n and \\xHH escaped; see SOURCE.md)."""
    return field.encode("latin-1").decode("unicode_escape").encode("latin-1")


def upper_escapes(text: str) -> str:
    return re.sub(r"%[0-9a-fA-F]{2}", lambda m: m[0].upper(), text)


@dataclass(frozen=True)
class Case:
    number: int
    url: bytes
    canonical: str
    """The table's canonical form, with uppercase escapes."""

    @property
    def id(self) -> str:
        return f"{self.number}-{self.url.decode('latin-1').strip()[:40]}"

    @property
    def entry(self) -> str:
        """The list entry for the canonical form: host and path, without the scheme."""
        return self.canonical.split("://", 1)[1]

    @property
    def argument(self) -> str:
        """The URL as a command-line argument (bytes that are not UTF-8 as the shell passes
        them: surrogate escapes)."""
        return self.url.decode("utf-8", "surrogateescape")

    @property
    def target(self) -> bytes:
        """The request target a client sends for the URL (see the module's docstring)."""
        s = self.url.split(b"#", 1)[0].strip(bytes(range(0x21)))
        s = s.translate(None, b"\t\r\n")
        if m := re.match(rb"(?i)(https?)%3a%2f%2f", s):
            s = m[1] + b"://" + s[m.end():]
        if b"://" not in s:
            s = b"http://" + s
        return b"".join(bytes([b]) if 0x20 < b < 0x7F else b"%%%02X" % b for b in s)


def table_cases() -> list[Case]:
    if not TABLE.exists():
        pytest.fail(f"the canonicalisation table is missing: {TABLE}")
    with TABLE.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Case(n, unescape(r["input"]), upper_escapes(r["expected"]))
            for n, r in enumerate(rows, 1) if r["expect_error"] == "0"]


CASES = table_cases()
assert len(CASES) == 37, "the table has 37 rows with a canonical form"


@dataclass
class Env:
    setup: GatewaySetup
    gateway: GatewayProcess
    client: GatewayClient
    origin: Origin

    @property
    def port(self) -> int:
        assert self.gateway.proxy_port is not None
        return self.gateway.proxy_port


@pytest.fixture(scope="module")
def env(tmp_path_factory, pki, origin) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("canonical")
    listed = directory / "iwf.txt"
    listed.write_bytes(b"# every canonical form in the table\n"
                       + b"".join(c.entry.encode("ascii") + b"\n" for c in CASES))

    def patch(doc: dict) -> None:
        doc["illegal_lists"] = {"iwf": {"title": "IWF URL list", "kind": "iwf",
                                        "source": str(listed), "form": "plain"}}

    setup = write_config(directory, upstream_ca=pki.ca_cert, patch=patch)
    with running_gateway("canonical", setup.config, script=resolving_script(directory)) as gw:
        assert gw.proxy_port is not None
        yield Env(setup, gw, GatewayClient(gw.proxy_port, setup.schoolgate_ca), origin)


def send(env: Env, target: bytes) -> tuple[int, dict[str, str], str]:
    """One plain-HTTP proxy request for `target`, as a client writes it; the answer."""
    host = urllib.parse.urlsplit(target.decode("ascii")).netloc or "x"
    head = b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (target, host.encode())
    with socket.create_connection(("127.0.0.1", env.port), timeout=TIMEOUT) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body.decode("utf-8", "replace")


def why(env: Env, *urls: str) -> list[dict]:
    done = run_cli("why", "--json", "--config", str(env.setup.config), "--ip", "127.0.0.1",
                   *urls)
    assert done.returncode in (0, 1), done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def event_for(env: Env, reference: str) -> dict:
    (event,) = wait_for(lambda: read_events(env.setup.database, "reference = ?", [reference]),
                        f"the event {reference}", on_timeout=env.gateway.tail)
    return event


@pytest.fixture(scope="module")
def why_table(env) -> dict[int, dict]:
    """`why --json` for every row's URL, in one run (one line each, in order)."""
    return dict(zip((c.number for c in CASES), why(env, *(c.argument for c in CASES)),
                    strict=True))


@pytest.fixture(scope="module")
def why_sent(env) -> dict[int, dict]:
    """`why --json` for the request target the gateway receives for each row, in one run."""
    return dict(zip((c.number for c in CASES),
                    why(env, *(c.target.decode("ascii") for c in CASES)), strict=True))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_why_shows_the_tables_canonical_form(why_table, case):
    r = why_table[case.number]
    assert r["canonical_url"] is not None, r
    assert upper_escapes(r["canonical_url"]).split("?")[0] == case.canonical, r
    # Listed: blocked by the list, whatever the host looks like.
    assert (r["action"], r["reason"], r["illegal_list"]) == ("block", "illegal:iwf", "iwf"), r


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_gateway_blocks_the_listed_canonical_form(env, why_sent, case):
    if case.canonical.startswith("https:"):
        reply = env.client.get(case.target.decode("ascii"))
        status, headers, page = reply.status, dict(reply.headers), reply.text
    else:
        status, headers, page = send(env, case.target)
    assert status == 403, (case, status, page)
    assert "<h1>Access denied</h1>" in page and IWF_WORDING in page, page
    reference = headers["X-Schoolgate-Reference"]
    assert REFERENCE_RE.match(reference)
    event = event_for(env, reference)
    assert (event["action"], event["reason"], event["url"]) == ("block", "illegal:iwf", None)
    # And `why` says so for the very request the gateway received.
    r = why_sent[case.number]
    assert (r["action"], r["reason"]) == (event["action"], event["reason"]), r


def test_a_port_is_dropped_for_matching_and_kept_for_the_connection(env, origin):
    # Listed as www.gotaport.com/ (the table's form), blocked on any port.
    for port in (1234, 8080):
        status, _, page = send(env, b"http://www.gotaport.com:%d/" % port)
        assert status == 403 and IWF_WORDING in page, (port, page)
    # An allowed request still goes to its own port: the origin's.
    before = len(origin.requests)
    reply = env.client.get(origin.url("http", "/hello", host="allowed.test"))
    assert reply.status == 200, reply
    assert len(origin.requests) == before + 1


UNLISTED = [
    ("reserved-character", b"http://other%23host.test/page"),
    ("space", b"http://%20spaced.test/"),
    ("punctuation", b"http://we!rd.test/"),
    ("empty-labels", b"http://fine.test.../"),
    ("ftp", b"ftp://ftp.unlisted.test/file"),
]


@pytest.mark.parametrize("target", [u[1] for u in UNLISTED], ids=[u[0] for u in UNLISTED])
def test_the_same_kinds_of_host_unlisted_are_refused_and_recorded(env, target):
    before = len(env.origin.requests)
    status, headers, page = send(env, target)
    assert status == 400, page
    assert "This request could not be sent" in page and "Problem" in page, page
    assert headers["Connection"] == "close"
    event = event_for(env, headers["X-Schoolgate-Reference"])
    assert (event["action"], event["reason"]) == ("block", "bad-request")
    (r,) = why(env, target.decode("ascii"))
    assert (r["action"], r["reason"]) == ("block", "bad-request"), r
    assert r["error"] in page.replace("&#x27;", "'"), (r, page)
    assert len(env.origin.requests) == before


def test_an_escaped_address_never_reaches_the_server_it_spells(env, origin):
    # 127.0.0.1, the origin's own address, written in percent-escapes: not sent on.
    port = urllib.parse.urlsplit(origin.url("http", "/")).port
    escaped = "".join(f"%{ord(c):02X}" if c.isdigit() else c for c in "127.0.0.1")
    before = len(origin.requests)
    status, headers, page = send(env, f"http://{escaped}:{port}/escaped".encode())
    assert status == 400, page
    assert "written in percent-escapes (it spells 127.0.0.1)" in page
    assert len(origin.requests) == before
