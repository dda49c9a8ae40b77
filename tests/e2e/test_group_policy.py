"""Group policies end to end, through the running gateway: schedules switch exactly at their
boundaries in school time (Europe/London, summer and winter); a walled garden opens only its
categories and allow entries; safe search is locked in what the search engines actually receive
(query parameters, DuckDuckGo's form body, the YouTube-Restrict header) at each group's level;
circumvention is caught by category (a VPN site), by request shape (DNS-over-HTTPS to an
ordinary host) and by port (a CONNECT outside `circumvention.allowed_ports`), blocked for pupils
and logged for staff.

Clients stand in for machines in different groups by their loopback address (127.0.0.1 pupils,
127.0.0.2 staff, 127.0.0.3 sixth form, 127.0.0.4 infants). The search engines' names, and every
`*.test` name, resolve to the test origin (`policy_gateway.py`), which records each request whole;
the URLs carry the origin's port. The schedule clock is injected: the test writes the time the
gateway's policy reads at its next decision.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
    only_trusting,
    open_tunnel,
    request_over,
    set_school_clock,
    sources_available,
    start_gateway,
)

pytestmark = pytest.mark.e2e

PUPILS, STAFF, SIXTH, INFANTS = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"
ENGINES = ("www.google.com", "www.bing.com", "duckduckgo.com", "html.duckduckgo.com",
           "search.yahoo.com", "www.youtube.com", "www.ecosia.org")
SOCIAL, VPN, EDU, FINE = "social.test", "vpn-service.test", "edu.test", "fine.test"
ECOSIA = "www.ecosia.org"  # a search engine with no safe mode the gateway can lock


def marker() -> str:
    return uuid.uuid4().hex


@dataclass
class Env:
    setup: GatewaySetup
    gateway: GatewayProcess
    origin: RecordingOrigin
    clock_file: Path

    @property
    def port(self) -> int:
        assert self.gateway.proxy_port is not None
        return self.gateway.proxy_port

    def browser(self, source: str) -> Browser:
        return Browser(self.port, only_trusting(self.setup.schoolgate_ca), source=source)

    def url(self, scheme: str, host: str, path: str) -> str:
        return self.origin.url(scheme, host, path)

    def event(self, m: str) -> dict:
        (row,) = wait_for_events(self.setup.database, "url LIKE ?", [f"%{m}%"],
                                 gateway=self.gateway)
        return row


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    sources_available(PUPILS, STAFF, SIXTH, INFANTS)
    directory = tmp_path_factory.mktemp("group-policy")
    pki = make_pki(directory / "pki", (*ORIGIN_NAMES, *ENGINES, SOCIAL, VPN, EDU, FINE))
    origin = RecordingOrigin(pki)
    lists = directory / "more-lists"
    lists.mkdir()
    for name, host in (("social", SOCIAL), ("vpn", VPN), ("education", EDU)):
        (lists / name).write_text(f"{host}\n", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["categories"].update({
            "social": {"title": "Social networks", "lists": [str(lists / "social")]},
            "vpn": {"title": "VPN services", "lists": [str(lists / "vpn")]},
            "education": {"title": "Education", "lists": [str(lists / "education")]},
        })
        doc["schedules"] = {"lessons": {"title": "Lessons", "windows": ["Mon-Fri 08:30-15:30"]}}
        doc["groups"] = {
            "pupils": {"subnets": ["127.0.0.0/8"], "blocked_categories": ["gambling"],
                       "blocked_during": {"lessons": ["social"]}},
            "staff": {"subnets": [f"{STAFF}/32"], "blocked_categories": [],
                      "safe_search": "off", "youtube": "off", "circumvention": "log"},
            "sixth": {"subnets": [f"{SIXTH}/32"], "blocked_categories": ["gambling"],
                      "safe_search": "moderate", "youtube": "moderate"},
            "infants": {"subnets": [f"{INFANTS}/32"], "walled_garden": True,
                        "allowed_categories": ["education"],
                        "allow": [{"target": f"{FINE}/open/", "reason": "class page"}]},
        }
        # CONNECT only to 443 and the origin's HTTPS port: its HTTP port is "unusual".
        doc["circumvention"] = {"allowed_ports": [443, origin.https_port]}

    setup = write_config(directory, upstream_ca=pki.ca_cert, patch=patch)
    clock_file = directory / "clock"
    try:
        with start_gateway("group-policy", setup.config, resolve=ENGINES,
                           clock_file=clock_file) as gw:
            yield Env(setup, gw, origin, clock_file)
    finally:
        origin.close()


# ---------------------------------------------------------------------------------------------
# Schedules


@pytest.fixture
def clock(env: Env) -> Iterator[Path]:
    """The schedule clock file; the gateway goes back to the real time afterwards."""
    yield env.clock_file
    env.clock_file.unlink(missing_ok=True)


SCHOOL_DAY = [
    # (school time, pupils blocked from social networks?): Monday 23 November 2026, GMT ...
    ("2026-11-23T08:29:59", False),
    ("2026-11-23T08:29:59.999", False),
    ("2026-11-23T08:30:00", True),  # the window's start is included, to the second
    ("2026-11-23T12:00:00", True),
    ("2026-11-23T15:29:59.999", True),
    ("2026-11-23T15:30:00", False),  # its end is not
    # ... Monday 15 June 2026, BST: the same wall-clock times, an hour earlier in UTC.
    ("2026-06-15T08:29:59", False),
    ("2026-06-15T08:30:00", True),
    ("2026-06-15T15:29:59", True),
    ("2026-06-15T15:30:00", False),
    # Saturday: no lessons.
    ("2026-11-28T10:00:00", False),
]


def test_schedule_switches_exactly_at_its_boundaries_in_school_time(env, clock):
    pupil = env.browser(PUPILS)
    seen = []
    for when, _ in SCHOOL_DAY:
        set_school_clock(clock, when)
        m = marker()
        reply = pupil.get(env.url("http", SOCIAL, f"/hello?m={m}"))
        assert reply.status in (200, 403), (when, reply)
        seen.append((when, reply.status == 403))
        row = env.event(m)
        if reply.status == 403:
            assert "This page is blocked" in reply.text
            assert (row["action"], row["categories"], row["matched_rule"]) == (
                "block", "social", "group pupils blocks social during Lessons"), when
        else:
            assert reply.body == ORIGIN_BODY and row["action"] == "allow", when
            assert len(env.origin.requests_with(m)) == 1

    assert seen == SCHOOL_DAY


def test_schedule_blocks_only_the_groups_that_use_it(env, clock):
    set_school_clock(clock, "2026-11-23T10:00:00")
    m_pupil, m_staff = marker(), marker()
    assert env.browser(PUPILS).get(env.url("http", SOCIAL, f"/hello?m={m_pupil}")).status == 403
    reply = env.browser(STAFF).get(env.url("http", SOCIAL, f"/hello?m={m_staff}"))
    assert reply.status == 200 and reply.body == ORIGIN_BODY
    assert env.event(m_staff)["group_name"] == "staff"
    assert env.origin.requests_with(m_pupil) == []


# ---------------------------------------------------------------------------------------------
# Walled garden


@pytest.mark.parametrize(("host", "path", "allowed"), [
    (EDU, "/lesson", True),  # an allowed category
    (FINE, "/open/worksheet", True),  # the group's allow entry (a URL prefix)
    (FINE, "/closed", False),  # the same host outside the entry: in no allowed category
    ("bet365.com", "/", False),  # blocked elsewhere by category; here simply outside the garden
])
def test_walled_garden_opens_only_its_categories_and_allow_entries(env, host, path, allowed):
    m = marker()
    reply = env.browser(INFANTS).get(env.url("https", host, f"{path}?m={m}"))

    row = env.event(m)
    assert row["group_name"] == "infants"
    if allowed:
        assert reply.status == 200 and reply.body == ORIGIN_BODY
        assert row["action"] == "allow"
    else:
        assert reply.status == 403 and "This page is blocked" in reply.text
        assert (row["action"], row["reason"]) == ("block", "walled-garden")
        assert row["matched_rule"] == "group infants is a walled garden: only education is open"
        assert env.origin.requests_with(m) == []


# ---------------------------------------------------------------------------------------------
# Safe search, as the origin receives it


SEARCHES = [
    # (client, scheme, host, path sent; M is the marker) -> the path the engine receives.
    # Pupils: strict. Whatever the user asked for is replaced.
    (PUPILS, "https", "www.google.com", "/search?q=cats&M&safe=off",
     "/search?q=cats&M&safe=active"),
    (PUPILS, "http", "www.google.com", "/search?q=cats&M", "/search?q=cats&M&safe=active"),
    (PUPILS, "https", "www.google.com", "/search?SAFE=images&q=cats&M&safe=off",
     "/search?q=cats&M&safe=active"),
    (PUPILS, "https", "www.bing.com", "/search?q=cats&M&adlt=off", "/search?q=cats&M&adlt=strict"),
    (PUPILS, "https", "duckduckgo.com", "/?q=cats&M&kp=-2", "/?q=cats&M&kp=1"),
    (PUPILS, "https", "search.yahoo.com", "/search?p=cats&M&vm=p", "/search?p=cats&M&vm=r"),
    # Sixth form: moderate (Google has no lockable moderate: it gets the filter).
    (SIXTH, "https", "www.google.com", "/search?q=cats&M", "/search?q=cats&M&safe=active"),
    (SIXTH, "https", "www.bing.com", "/search?q=cats&M&adlt=off", "/search?q=cats&M&adlt=moderate"),
    (SIXTH, "https", "duckduckgo.com", "/?q=cats&M", "/?q=cats&M&kp=-1"),
    # Staff: off. Nothing is touched.
    (STAFF, "https", "www.google.com", "/search?q=cats&M&safe=off", "/search?q=cats&M&safe=off"),
    (STAFF, "https", "www.bing.com", "/search?q=cats&M&adlt=off", "/search?q=cats&M&adlt=off"),
]


@pytest.mark.parametrize(("client", "scheme", "host", "sent", "received"), SEARCHES)
def test_safe_search_parameters_are_locked_in_what_the_engine_receives(
        env, client, scheme, host, sent, received):
    m = marker()
    reply = env.browser(client).get(env.url(scheme, host, sent.replace("M", f"m={m}", 1)))

    assert reply.status == 200 and reply.body == ORIGIN_BODY, reply
    (got,) = env.origin.requests_with(m)
    assert (got.scheme, got.path) == (scheme, received.replace("M", f"m={m}", 1))


def test_duckduckgo_form_post_has_its_body_locked(env):
    """DuckDuckGo's no-JavaScript page sends the search in a form body."""
    m = marker()
    body = f"q=cats&kp=-2&m={m}".encode()
    reply = env.browser(PUPILS).request(
        "POST", env.url("https", "html.duckduckgo.com", "/html/"), body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert reply.status == 200, reply
    (got,) = env.origin.requests_with(m)
    assert got.method == "POST" and got.path == "/html/?kp=1"
    assert got.body == f"q=cats&m={m}&kp=1".encode()
    assert got.header("Content-Length") == [str(len(got.body))]


YOUTUBE = [
    # (client, method, path, header the client sent or None) -> YouTube-Restrict received
    (PUPILS, "GET", "/results?search_query=cats&M", None, ["Strict"]),
    (PUPILS, "GET", "/watch?v=abc&M", "Moderate", ["Strict"]),  # a client cannot relax it
    (PUPILS, "POST", "/youtubei/v1/search?M", None, ["Strict"]),  # the app's API search
    (SIXTH, "GET", "/results?search_query=cats&M", None, ["Moderate"]),
    (STAFF, "GET", "/results?search_query=cats&M", None, []),
]


@pytest.mark.parametrize(("client", "method", "path", "sent", "received"), YOUTUBE)
def test_youtube_gets_the_groups_restricted_mode_header(env, client, method, path, sent,
                                                          received):
    m = marker()
    headers = {"YouTube-Restrict": sent} if sent else {}
    body = None
    if method == "POST":
        body = b'{"context": {"client": {"clientName": "WEB"}}, "query": "cats"}'
        headers["Content-Type"] = "application/json"
    reply = env.browser(client).request(
        method, env.url("https", "www.youtube.com", path.replace("M", f"m={m}")),
        headers=headers, body=body)

    assert reply.status == 200, reply
    (got,) = env.origin.requests_with(m)
    assert got.method == method
    assert got.header("YouTube-Restrict") == received
    assert got.body == (body or b"")


def test_search_engine_without_a_lockable_safe_mode_is_blocked_where_safe_search_is_on(env):
    m_pupil, m_staff = marker(), marker()
    reply = env.browser(PUPILS).get(env.url("https", ECOSIA, f"/search?q=cats&m={m_pupil}"))
    assert reply.status == 403 and "This page is blocked" in reply.text
    row = env.event(m_pupil)
    assert (row["action"], row["reason"]) == ("block", "no-safe-search")
    assert env.origin.requests_with(m_pupil) == []

    # Staff have safe search off: the same engine is theirs to use.
    reply = env.browser(STAFF).get(env.url("https", ECOSIA, f"/search?q=cats&m={m_staff}"))
    assert reply.status == 200 and len(env.origin.requests_with(m_staff)) == 1


# ---------------------------------------------------------------------------------------------
# Circumvention


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_vpn_site_is_blocked_for_pupils_with_the_circumvention_theme(env, scheme):
    m = marker()
    reply = env.browser(PUPILS).get(env.url(scheme, VPN, f"/download?m={m}"))

    assert reply.status == 403 and "This page is blocked" in reply.text
    assert "<dd>getting round the school&#x27;s filter</dd>" in reply.text
    row = env.event(m)
    assert {k: row[k] for k in ("action", "reason", "theme", "categories", "group_name")} == {
        "action": "block", "reason": "circumvention", "theme": "circumvention",
        "categories": "vpn", "group_name": "pupils"}
    assert env.origin.requests_with(m) == []


def test_vpn_site_is_logged_not_blocked_for_a_group_that_logs_circumvention(env):
    m = marker()
    reply = env.browser(STAFF).get(env.url("https", VPN, f"/download?m={m}"))

    assert reply.status == 200 and reply.body == ORIGIN_BODY
    row = env.event(m)
    assert (row["action"], row["theme"], row["group_name"]) == ("allow", "circumvention", "staff")


def dns_query(name: str) -> bytes:
    """An RFC 1035 query for the A record of `name` (id 0, recursion desired)."""
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


DOH_SHAPES = [
    # RFC 8484 POST: the body is a DNS message.
    ("POST", "/dns-query?m=M", {"Content-Type": "application/dns-message",
                                "Accept": "application/dns-message"}, dns_query("example.com")),
    # RFC 8484 GET: the query in base64url in `dns=`, on any path.
    ("GET", "/any/path?dns=" + base64.urlsafe_b64encode(dns_query("example.com")).decode()
     .rstrip("=") + "&m=M", {}, None),
]


@pytest.mark.parametrize(("method", "path", "headers", "body"), DOH_SHAPES,
                         ids=["post-dns-message", "get-dns-param"])
def test_dns_over_https_on_an_ordinary_host_is_blocked_by_its_shape(env, method, path, headers,
                                                                     body):
    """fine.test is in no category: only the shape of the request gives it away."""
    m = marker()
    reply = env.browser(PUPILS).request(method, env.url("https", FINE, path.replace("M", m)),
                                        headers=headers, body=body)

    assert reply.status == 403 and "This page is blocked" in reply.text
    row = env.event(m)
    assert {k: row[k] for k in ("action", "reason", "theme", "method", "host")} == {
        "action": "block", "reason": "circumvention:doh", "theme": "circumvention",
        "method": method, "host": FINE}
    assert "DNS-over-HTTPS" in row["matched_rule"]
    assert env.origin.requests_with(m) == []


def test_dns_over_https_is_logged_for_a_group_that_logs_circumvention(env):
    m = marker()
    method, path, headers, body = DOH_SHAPES[0]
    reply = env.browser(STAFF).request(method, env.url("https", FINE, path.replace("M", m)),
                                       headers=headers, body=body)

    assert reply.status == 200
    (got,) = env.origin.requests_with(m)
    assert got.body == body
    row = env.event(m)
    assert (row["action"], row["reason"], row["theme"]) == (
        "allow", "circumvention:doh", "circumvention")


def test_connect_to_a_port_outside_the_allowed_ones_is_refused_for_pupils(env):
    host = f"port-{marker()}.test"
    before = len(env.origin.requests)
    tunnel = open_tunnel(env.port, host, env.origin.http_port, source=PUPILS)

    assert tunnel.status == 403, tunnel
    assert f"tunnels to port {env.origin.http_port}".encode() in tunnel.body
    (row,) = wait_for_events(env.setup.database, "host = ?", [host], gateway=env.gateway)
    assert {k: row[k] for k in ("action", "reason", "theme", "method", "group_name")} == {
        "action": "block", "reason": "circumvention:port", "theme": "circumvention",
        "method": "CONNECT", "group_name": "pupils"}
    assert row["reference"] in tunnel.body.decode()
    assert len(env.origin.requests) == before

    # The allowed port, same host, same client: the tunnel opens.
    ok = open_tunnel(env.port, host, env.origin.https_port, source=PUPILS)
    assert ok.status == 200
    ok.close()


def test_connect_to_an_unusual_port_is_logged_for_a_group_that_logs_circumvention(env):
    host, m = f"port-{marker()}.test", marker()
    tunnel = open_tunnel(env.port, host, env.origin.http_port, source=STAFF)
    assert tunnel.status == 200, tunnel
    assert tunnel.sock is not None
    try:
        reply = request_over(tunnel.sock, host, env.origin.http_port, "GET", f"/hello?m={m}")
    finally:
        tunnel.close()

    assert reply.status == 200 and reply.body == ORIGIN_BODY
    assert len(env.origin.requests_with(m)) == 1
    rows = wait_for_events(env.setup.database, "host = ? AND method = 'CONNECT'", [host],
                           gateway=env.gateway)
    assert (rows[0]["action"], rows[0]["reason"], rows[0]["theme"]) == (
        "allow", "circumvention:port", "circumvention")
    assert read_events(env.setup.database, "host = ? AND action != 'allow'", [host]) == []
