"""`schoolgate why` gives the gateway's verdict: a table of requests, each sent through the running
gateway by a real client and asked of `schoolgate why --json` with the same config, client
address and school time, must get the same action and reason from both.

The rows cover every rule that decides (illegal lists, local allow and block entries, blocked
categories always and in a schedule, circumvention by category, by request shape and by port,
a walled garden, a search engine with no lockable safe mode, keywords in a search term, in an
address and in a form body, bad requests) and every place the gateway decides (the CONNECT, the
TLS handshake for connections it does not decrypt, the request, the request's body), for groups
that decrypt everything, selectively or nothing, and a client whose group comes from the IP map.

The gateway's verdict is read from the event it recorded for the request (action and reason),
and checked against what the client got (the block page, a refused CONNECT, the origin's body).
Every `*.test` name and the search engines resolve to the test origin (`policy_gateway.py`),
which counts every request it gets, so a blocked request that leaked would be seen.
"""

from __future__ import annotations

import base64
import json
import ssl
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .harness import (
    ROOT,
    GatewayProcess,
    GatewaySetup,
    Reply,
    Samples,
    make_pki,
    read_events,
    run_cli,
    scrape,
    wait_for,
    write_config,
)
from .policy_harness import (
    ORIGIN_BODY,
    Browser,
    RecordingOrigin,
    set_school_clock,
    sources_available,
    start_gateway,
)

pytestmark = pytest.mark.e2e

PUPILS = "127.0.0.1"  # decrypts everything; refuses connections with no host name
INFANTS = "127.0.0.2"  # a walled garden: only education is open
BYOD = "127.0.0.3"  # https: sni-only, nothing is decrypted
SELECTIVE = "127.0.0.4"  # https: selective
STAFF = "127.0.0.5"  # keyword threshold 20: one high-severity phrase is recorded, not blocked
MAPPED = "127.0.0.7"  # in the pupils' subnet, but the IP map names a member of staff

ENGINES = ("www.google.com", "www.bing.com", "html.duckduckgo.com", "www.ecosia.org")
HOSTS = ("fine.test", "bet365.test", "fun-games.test", "proxy-site.test", "edu.test",
         "casino-allowed.test", "illegal.test")
LESSON_TIME = "2026-11-23T10:00:00"  # a Monday, in lessons


def dns_query(name: str) -> str:
    """An RFC 1035 query for the A record of `name`, base64url as RFC 8484's GET sends it."""
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    message = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    return base64.urlsafe_b64encode(message).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Row:
    client: str
    scheme: str
    host: str
    path: str
    expect: tuple[str, str]
    """(action, reason) the row is there to exercise: both sides must give it."""
    method: str = "GET"
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    """The port to ask for instead of the origin's."""
    recorded: bool = True
    """Whether the gateway records an event (a request the proxy cannot parse has none)."""
    received: str | None = None
    """For an allowed request: what the origin must receive in its path (safe search locked)."""


FORM = {"Content-Type": "application/x-www-form-urlencoded"}

ROWS = {
    # A blocked category, over HTTP and inside intercepted HTTPS.
    "category-http": Row(PUPILS, "http", "bet365.test", "/", ("block", "category")),
    "category-https": Row(PUPILS, "https", "bet365.test", "/", ("block", "category")),
    "allowed-site": Row(PUPILS, "http", "fine.test", "/hello", ("allow", "no-block")),
    # The group's local entries: an allow over a blocked category, a block of one page.
    "override-allow": Row(PUPILS, "http", "casino-allowed.test", "/", ("allow", "override")),
    "override-block": Row(PUPILS, "https", "fine.test", "/closed/page", ("block", "override")),
    # A category blocked in lessons only (the clock is in a lesson).
    "schedule": Row(PUPILS, "http", "fun-games.test", "/", ("block", "category")),
    # The walled garden: an open category, then a site outside it.
    "walled-garden-open": Row(INFANTS, "http", "edu.test", "/lesson", ("allow", "no-block")),
    "walled-garden-closed": Row(INFANTS, "https", "fine.test", "/", ("block", "walled-garden")),
    # Safe search: locked, and an engine that has no safe mode to lock.
    "safe-search-locked": Row(PUPILS, "https", "www.google.com", "/search?q=volcanoes",
                              ("allow", "no-block"), received="/search?q=volcanoes&safe=active"),
    "no-safe-search": Row(PUPILS, "https", "www.ecosia.org", "/search?q=volcanoes",
                          ("block", "no-safe-search")),
    # Circumvention: a proxy site by category, DNS-over-HTTPS by its shape, a CONNECT to a port
    # outside the allowed ones, a CONNECT to a bare IP address (no host name to decide by).
    "circumvention-category": Row(PUPILS, "http", "proxy-site.test", "/",
                                  ("block", "circumvention")),
    "doh-get": Row(PUPILS, "https", "fine.test", f"/dns-query?dns={dns_query('example.com')}",
                   ("block", "circumvention:doh")),
    "doh-accept-header": Row(PUPILS, "https", "fine.test", "/resolve?name=example.com",
                             ("block", "circumvention:doh"),
                             headers={"Accept": "application/dns-json"}),
    "connect-port": Row(PUPILS, "https", "fine.test", "/", ("block", "circumvention:port"),
                        port=1000),
    "connect-ip": Row(PUPILS, "https", "127.0.0.1", "/hello", ("block", "tls:no-sni")),
    # Keywords: in a search term, in an address that is no search, in a form body.
    "keyword-search-http": Row(PUPILS, "http", "www.bing.com", "/search?q=kill+myself",
                               ("block", "keywords")),
    "keyword-search-https": Row(PUPILS, "https", "www.bing.com", "/search?q=kill+myself",
                                ("block", "keywords")),
    "keyword-address": Row(PUPILS, "http", "fine.test", "/how-to-kill-myself",
                           ("block", "keywords")),
    "keyword-search-in-body": Row(PUPILS, "http", "html.duckduckgo.com", "/html/",
                                  ("block", "keywords"), method="POST", body="q=kill+myself",
                                  headers=FORM),
    "search-in-body-harmless": Row(PUPILS, "http", "html.duckduckgo.com", "/html/",
                                   ("allow", "no-block"), method="POST", body="q=volcanoes",
                                   headers=FORM),
    "keyword-below-threshold": Row(STAFF, "http", "www.bing.com", "/search?q=kill+myself",
                                   ("allow", "no-block")),
    # A combination rule: no phrase in these words, yet together a concern (#16).
    "combination-search": Row(PUPILS, "https", "www.bing.com",
                              "/search?q=my+boyfriend+is+24+and+im+13", ("block", "keywords")),
    "combination-address": Row(PUPILS, "http", "fine.test",
                               "/forum/my-boyfriend-is-24-and-im-13", ("block", "keywords")),
    # The illegal-content list, over HTTP and HTTPS.
    "illegal-http": Row(PUPILS, "http", "illegal.test", "/gallery/image.jpg",
                        ("block", "illegal:iwf")),
    "illegal-https": Row(PUPILS, "https", "illegal.test", "/gallery/image.jpg",
                         ("block", "illegal:iwf")),
    # Nothing decrypted: decided by the host name at the CONNECT or the handshake; what is in
    # the path is never seen.
    "sni-only-blocked-host": Row(BYOD, "https", "bet365.test", "/", ("block", "category")),
    "sni-only-keyword-path": Row(BYOD, "https", "fine.test", "/how-to-kill-myself",
                                 ("allow", "tls:passthrough")),
    "selective-relayed": Row(SELECTIVE, "https", "fine.test", "/how-to-kill-myself",
                             ("allow", "tls:passthrough")),
    "selective-search-engine": Row(SELECTIVE, "https", "www.bing.com", "/search?q=kill+myself",
                                   ("block", "keywords")),
    # The IP map names who is at an address, and their group decides.
    "ip-map-identity": Row(MAPPED, "http", "bet365.test", "/", ("allow", "no-block")),
    # A host name no server can have: refused with 400, and recorded (the gateway reads the
    # request its proxy would refuse, so a list entry for that form could block it).
    "bad-request": Row(PUPILS, "http", "bad!name.test", "/", ("block", "bad-request")),
    # A request line nothing can read (a port no port can be): refused by the proxy before
    # any decision, so no event.
    "unreadable": Row(PUPILS, "http", "fine.test", "/", ("block", "bad-request"), port=99999,
                      recorded=False),
}


@dataclass
class Env:
    setup: GatewaySetup
    gateway: GatewayProcess
    origin: RecordingOrigin
    tls: ssl.SSLContext

    @property
    def proxy_port(self) -> int:
        assert self.gateway.proxy_port is not None
        return self.gateway.proxy_port

    def url(self, row: Row) -> str:
        port = row.port if row.port is not None else self.origin.port(row.scheme)
        return f"{row.scheme}://{row.host}:{port}{row.path}"

    def send(self, row: Row) -> Reply:
        browser = Browser(self.proxy_port, self.tls, source=row.client)
        body = row.body.encode() if row.body is not None else None
        return browser.request(row.method, self.url(row), headers=dict(row.headers), body=body)

    def why(self, row: Row) -> dict:
        args = ["why", "--json", "--config", str(self.setup.config), "--ip", row.client,
                "--at", LESSON_TIME]
        if row.method != "GET":
            args += ["--method", row.method]
        if row.body is not None:
            args += ["--data", row.body]
        for name, value in row.headers.items():
            args += ["--header", f"{name}: {value}"]
        done = run_cli(*args, self.url(row))
        assert done.returncode in (0, 1), done.stderr
        (line,) = done.stdout.splitlines()
        return json.loads(line)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    sources_available(PUPILS, INFANTS, BYOD, SELECTIVE, STAFF, MAPPED)
    directory = tmp_path_factory.mktemp("why-agrees")
    pki = make_pki(directory / "pki", ("localhost", *ENGINES, *HOSTS))
    origin = RecordingOrigin(pki)
    lists = directory / "more-lists"
    lists.mkdir()
    for name, text in (("gambling", "bet365.test\ncasino-allowed.test\n"),
                       ("games", "fun-games.test\n"), ("proxies", "proxy-site.test\n"),
                       ("education", "edu.test\n")):
        (lists / name).write_text(text, encoding="utf-8")
    iwf = directory / "iwf.txt"
    iwf.write_text("# made-up entry\nillegal.test/gallery/image.jpg\n", encoding="utf-8")
    identity = directory / "identity"
    identity.mkdir()
    (identity / "ip-map.csv").write_text(f"ip,user\n{MAPPED},teacher1\n", encoding="utf-8")
    (identity / "user-groups.csv").write_text("user,group\nteacher1,staff\n", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["categories"] = {
            "gambling": {"title": "Gambling", "lists": [str(lists / "gambling")]},
            "games": {"title": "Games", "lists": [str(lists / "games")]},
            "proxies": {"title": "Proxies", "lists": [str(lists / "proxies")]},
            "education": {"title": "Education", "lists": [str(lists / "education")]},
        }
        doc["schedules"] = {"lessons": {"title": "Lessons", "windows": ["Mon-Fri 08:30-15:30"]}}
        doc["groups"] = {
            "pupils": {"subnets": ["127.0.0.0/8"], "blocked_categories": ["gambling"],
                       "blocked_during": {"lessons": ["games"]},
                       "allow": [{"target": "casino-allowed.test", "reason": "maths project"}],
                       "block": [{"target": "fine.test/closed/", "reason": "not for pupils"}]},
            "infants": {"subnets": [f"{INFANTS}/32"], "walled_garden": True,
                        "allowed_categories": ["education"]},
            "byod": {"subnets": [f"{BYOD}/32"], "https": "sni-only",
                     "blocked_categories": ["gambling"]},
            "selective": {"subnets": [f"{SELECTIVE}/32"], "https": "selective",
                          "blocked_categories": ["gambling"]},
            "staff": {"subnets": [f"{STAFF}/32", "10.30.0.0/16"], "blocked_categories": [],
                      "safe_search": "off", "youtube": "off", "keyword_threshold": 20},
        }
        doc["default_group"] = "pupils"
        doc["circumvention"] = {"categories": ["proxies"],
                                "allowed_ports": [443, "1024-65535"]}
        doc["illegal_lists"] = {"iwf": {"kind": "iwf", "source": str(iwf), "form": "plain"}}
        doc["keywords"] = {"library": str(ROOT / "keywords")}
        doc["identity"] = {"ip_map": str(identity / "ip-map.csv"),
                           "user_groups": str(identity / "user-groups.csv")}

    setup = write_config(directory, upstream_ca=pki.ca_cert, patch=patch)
    clock_file = directory / "clock"
    set_school_clock(clock_file, LESSON_TIME)
    # Connections passed through undecrypted meet the origin's own certificate.
    tls = ssl.create_default_context(cafile=str(pki.ca_cert))
    try:
        with start_gateway("why-agrees", setup.config, resolve=ENGINES,
                           clock_file=clock_file) as gw:
            tls.load_verify_locations(cafile=str(setup.schoolgate_ca))
            yield Env(setup, gw, origin, tls)
    finally:
        origin.close()


def last_event_id(database: Path) -> int:
    rows = read_events(database, "id = (SELECT max(id) FROM events)")
    return rows[0]["id"] if rows else 0


@pytest.mark.parametrize("name", ROWS)
def test_why_gives_the_gateways_verdict(env: Env, name: str) -> None:
    row = ROWS[name]
    before = last_event_id(env.setup.database)
    seen_before = len(env.origin.requests)

    reply = env.send(row)
    if row.recorded:
        (event, *_) = wait_for(
            lambda: read_events(env.setup.database, "id > ?", [before]),
            f"the event of row {name}", on_timeout=env.gateway.tail)
        gateway = (event["action"], event["reason"])
    else:
        # Refused before any decision: 400, and no event. A request sent after it is the
        # first event recorded since, so this one made none.
        assert reply.status == 400, (name, reply)
        env.send(ROWS["allowed-site"])
        (event, *_) = wait_for(
            lambda: read_events(env.setup.database, "id > ?", [before]),
            "the event of the request sent after it", on_timeout=env.gateway.tail)
        assert event["url"].startswith("http://fine.test:"), event
        gateway = ("block", "bad-request")
        seen_before += 1

    why = env.why(row)
    assert (why["action"], why["reason"]) == gateway, (name, why)
    assert gateway == row.expect, (name, event)
    # The search the gateway recorded is the one why shows, with the phrase that decided.
    if row.recorded and event["search_term"] is not None:
        search = why["search"]
        assert (search["engine"], search["term"], search["normalised"]) == (
            event["engine"], event["search_term"], event["search_normalised"]), name
        # The event names the rule that matched (a phrase, or a combination's name).
        rules = [m["rule"] for m in search["matches"]]
        assert (event["matched_phrase"] in rules) if event["matched_phrase"] else not rules
        assert (search["score"] >= search["threshold"]) == (gateway[1] == "keywords"), name
    elif why["search"] is not None:
        # A search the gateway never saw: the connection was decided before it was decrypted.
        assert why["stage"] in ("connect", "handshake"), (name, why)

    # What the client got says the same as the event.
    if row.expect[0] == "allow":
        assert reply.status == 200 and reply.body == ORIGIN_BODY, (name, reply)
        assert len(env.origin.requests) == seen_before + 1, name
        if row.received is not None:
            assert env.origin.requests[-1].path == row.received, name
    else:
        assert reply.status in (400, 403), (name, reply)
        assert len(env.origin.requests) == seen_before, f"{name}: a blocked request leaked"


def blocks_since(before: Samples, metrics_url: str) -> dict[str, float]:
    """How much each `schoolgate_blocks_total{reason}` grew since `before` (only those that did)."""
    after = scrape(metrics_url)
    name = "schoolgate_blocks_total"
    return {dict(labels)["reason"]: value - before.get((n, labels), 0)
            for (n, labels), value in after.items()
            if n == name and value != before.get((n, labels), 0)}


@pytest.mark.parametrize(("name", "label"), [
    ("keyword-search-http", "keywords"),
    ("category-http", "category"),
    ("schedule", "schedule"),
    ("walled-garden-closed", "walled_garden"),
    ("no-safe-search", "no_safe_search"),
    ("override-block", "override"),
    ("doh-get", "circumvention"),
])
def test_blocks_are_counted_by_the_rule_that_decided(env: Env, name: str, label: str) -> None:
    """`schoolgate_blocks_total{reason}` counts each block under its own rule: a search blocked
    for its words is `keywords`, not `category`."""
    metrics_url = env.gateway.metrics_url
    assert metrics_url is not None
    before = scrape(metrics_url)
    assert env.send(ROWS[name]).status == 403

    grown = wait_for(lambda: blocks_since(before, metrics_url),
                     f"the block of row {name} counted", on_timeout=env.gateway.tail)
    assert grown == {label: 1}, name


def test_a_combination_search_is_explained_by_its_rule(env: Env) -> None:
    """`why --json` names the combination that flagged a search no single phrase flags, with
    its theme and severity and the words it matched, as the gateway recorded it (#16)."""
    reply = env.send(ROWS["combination-search"])
    assert reply.status == 403, reply
    reference = reply.headers["X-Schoolgate-Reference"]
    (event,) = wait_for(lambda: read_events(env.setup.database, "reference = ?", [reference]),
                        "the combination search's event", on_timeout=env.gateway.tail)
    search = env.why(ROWS["combination-search"])["search"]
    assert (search["engine"], search["term"], search["normalised"]) == (
        "bing", "my boyfriend is 24 and im 13", "my boyfriend is 24 and im 13")
    (match,) = search["matches"]
    assert match == {"rule": "a partner with an adult's age and a child's age", "phrase": None,
                     "theme": "cse_grooming", "severity": "high",
                     "matched": "boyfriend is 24 and im 13"}
    assert (event["matched_phrase"], event["theme"], event["severity"]) == (
        match["rule"], "cse_grooming", "high")
