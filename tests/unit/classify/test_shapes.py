"""Circumvention by request shape: DNS-over-HTTPS as curl, Firefox, Chrome and the JSON APIs send
it, pages that only talk about DNS, CONNECT ports and the circumvention categories. DNS messages
are built here byte by byte (RFC 1035 section 4), not with the code under test.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator, Mapping

import pytest
from mitmproxy.http import Headers

from sample_school import REPO
from schoolgate.classify.shapes import (
    CIRCUMVENTION_CATEGORIES,
    DOH_JSON,
    DOH_WIRE,
    WEB_PORTS,
    connect_port_allowed,
    doh_request,
    header_value,
    is_circumvention_category,
)

UT1 = REPO.parent / "shared" / "data" / "ut1"

# RFC 8484 section 4.1.1, verbatim: a query for www.example.com, type A, ID 0.
RFC8484_GET = "/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB"


def dns_message(
    name: str = "example.com",
    qtype: int = 1,
    *,
    flags: int = 0x0100,  # RD set, as stub resolvers send
    counts: tuple[int, int, int, int] = (1, 0, 0, 0),
    opt_padding: int | None = None,
) -> bytes:
    """A DNS message: header, one question, optionally an EDNS(0) OPT record with padding as
    Firefox and Chrome add it (RFC 7830), so the length does not give the name away."""
    qd, an, ns, ar = counts
    if opt_padding is not None:
        ar += 1
    header = struct.pack("!HHHHHH", 0, flags, qd, an, ns, ar)
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label)
    question = qname + b"\x00" + struct.pack("!HH", qtype, 1)
    if opt_padding is None:
        return header + question
    option = struct.pack("!HH", 12, opt_padding) + b"\x00" * opt_padding  # option 12: Padding
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option
    return header + question + opt


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_rfc8484_example_is_what_the_builder_makes():
    # Ties the builder to the RFC's own bytes, so the rows below test what they claim.
    assert RFC8484_GET.endswith(b64url(dns_message("www.example.com", flags=0x0100)))


# ---------------------------------------------------------------------------------------------
# DNS-over-HTTPS, as clients send it


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        # curl --doh-url https://dns.example/dns-query (and Chrome's Secure DNS): RFC 8484 POST.
        ("POST", "/dns-query",
         {"Content-Type": "application/dns-message", "Accept": "application/dns-message"},
         DOH_WIRE),
        ("POST", "/dns-query", {"content-type": "application/dns-message"}, DOH_WIRE),
        ("POST", "/family-filter", {"Content-Type": "Application/DNS-Message"}, DOH_WIRE),
        # ... the draft's media type, from early clients.
        ("POST", "/dns-query", {"Content-Type": "application/dns-udpwireformat"}, DOH_WIRE),
        # Firefox TRR, GET form: the message in dns=, the type in Accept.
        ("GET", RFC8484_GET, {"accept": "application/dns-message"}, DOH_WIRE),
        ("GET", f"/dns-query?dns={b64url(dns_message('example.org', 28, opt_padding=90))}",
         {"accept": "application/dns-message"}, DOH_WIRE),
        # ... and the same URL with no telling header at all.
        ("GET", RFC8484_GET, {}, DOH_WIRE),
        ("GET", f"/dns-query?dns={b64url(dns_message('example.org', 65, opt_padding=90))}", {},
         DOH_WIRE),
        # ... on any path (NextDNS puts the profile there), with padding or escaped padding.
        ("GET", f"/abc123?dns={b64url(dns_message('bbc.co.uk'))}", {}, DOH_WIRE),
        ("GET", f"/dns-query?ct=application/dns-message&dns={b64url(dns_message())}==", {},
         DOH_WIRE),
        ("GET", f"/dns-query?dns={b64url(dns_message('ab.example'))}%3D", {}, DOH_WIRE),
        # ... a name with a long label, an underscore, the root.
        ("GET", f"/q?dns={b64url(dns_message('_dmarc.' + 'a' * 63 + '.example'))}", {}, DOH_WIRE),
        ("GET", f"/q?dns={b64url(dns_message('', 2))}", {}, DOH_WIRE),
        # An Accept that lists the DNS type among others.
        ("GET", "/anything", {"Accept": "text/html, application/dns-message;q=0.9"}, DOH_WIRE),
        # Google's JSON API: dns.google/resolve, with or without a type.
        ("GET", "/resolve?name=example.com&type=A", {}, DOH_JSON),
        ("GET", "/resolve?name=example.com", {}, DOH_JSON),
        ("GET", "/resolve?name=example.com.&type=aaaa&do=1&cd=0", {}, DOH_JSON),
        ("GET", "/resolve?name=_dmarc.example.com&type=TXT", {}, DOH_JSON),
        ("GET", "/resolve?type=28&name=example.com", {}, DOH_JSON),
        ("GET", "/resolve?name=example.com&type=TYPE65", {}, DOH_JSON),
        # ... and asking it for the answer in wire format.
        ("GET", "/resolve?name=example.com&type=A&ct=application/dns-message", {}, DOH_WIRE),
        # Cloudflare's JSON: cloudflare-dns.com/dns-query with accept: application/dns-json.
        ("GET", "/dns-query?name=example.com&type=AAAA", {"accept": "application/dns-json"},
         DOH_JSON),
        ("GET", "/dns-query?name=example.com&type=AAAA", {}, DOH_JSON),
        ("GET", "/dns-query?name=example.com&ct=application/dns-json", {}, DOH_JSON),
        ("GET", "/v1/profile?name=example.com&ct=application%2Fdns-json", {}, DOH_JSON),
        ("GET", "/x", {"ACCEPT": "application/dns-json"}, DOH_JSON),
    ],
)
def test_doh_is_recognised(method, path, headers, expected):
    assert doh_request(method, path, headers) == expected


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        # Pages about DNS: a blog post, a search, a help page.
        ("GET", "/articles/dns-query-explained", {}),
        ("GET", "/search?q=dns-query", {}),
        ("GET", "/search?q=dns%3Dquery+name%3Dexample.com", {}),
        ("GET", "/wiki/DNS_over_HTTPS", {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}),
        ("GET", "/dns-query", {}),
        ("POST", "/dns-query", {"Content-Type": "application/json"}),
        # A parameter called dns that holds something else.
        ("GET", "/search?q=how+does+dns+work&dns=1", {}),
        ("GET", "/settings?dns=cloudflare", {}),
        ("GET", "/page?dns=hello-world-this-is-a-long-value", {}),
        # ... "hello world this is not DNS" in base64.
        ("GET", "/page?dns=aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgRE5T", {}),
        ("GET", "/page?dns=+/+/+/+/+/+/+/+/+/+/+/+/", {}),
        # ... a DNS response, a message with answers, an update, a name that runs off the end.
        ("GET", f"/q?dns={b64url(dns_message(flags=0x8180))}", {}),
        ("GET", f"/q?dns={b64url(dns_message(counts=(1, 1, 0, 0)))}", {}),
        ("GET", f"/q?dns={b64url(dns_message(counts=(2, 0, 0, 0)))}", {}),
        ("GET", f"/q?dns={b64url(dns_message(flags=0x2800))}", {}),
        ("GET", f"/q?dns={b64url(dns_message('example.com')[:-6])}", {}),
        ("GET", f"/q?dns={b64url(dns_message('a' * 64 + '.example'))}", {}),  # labels stop at 63
        # Forms with a name= that is not a DNS query.
        ("GET", "/signup?name=John&type=student", {}),
        ("GET", "/resolve?name=John+Smith", {}),
        ("GET", "/resolve?name=example.com&type=pdf", {}),
        ("GET", "/resolve?name=example.com&type=0", {}),
        ("GET", "/resolve?name=example..com", {}),
        ("GET", "/profile?name=example.com", {}),
        ("GET", "/users/dns-query/settings?name=example.com", {}),
        ("GET", "/page?name=example.com&ct=text/html", {}),
        # Ordinary traffic.
        ("GET", "/", {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}),
        ("POST", "/api/upload", {"Content-Type": "multipart/form-data; boundary=x"}),
        ("CONNECT", "dns.google:443", {}),
    ],
)
def test_pages_that_mention_dns_are_not_doh(method, path, headers):
    assert doh_request(method, path, headers) is None


def test_doh_with_mitmproxy_headers():
    # What the addon passes: mitmproxy's case-insensitive Headers, HTTP/2 lowercase names.
    headers = Headers(content_type="application/dns-message", accept="application/dns-message")
    assert doh_request("POST", "/dns-query", headers) == DOH_WIRE
    assert doh_request("GET", "/", Headers(accept="text/html")) is None


# ---------------------------------------------------------------------------------------------
# Header lookup in any mapping


class CaseSensitive(Mapping[str, str]):
    """A mapping that is not a dict and matches names exactly, like many test doubles."""

    def __init__(self, **items: str):
        self._items = {k.replace("_", "-"): v for k, v in items.items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # Whatever the case the client (or the test) used.
        ({"Content-Type": "a/b"}, "a/b"),
        ({"content-type": "a/b"}, "a/b"),
        ({"CONTENT-TYPE": "a/b"}, "a/b"),
        ({"Accept": "x/y"}, None),
        ({}, None),
        (Headers(Content_Type="a/b"), "a/b"),
        (Headers(accept="x/y"), None),
        (CaseSensitive(Content_Type="a/b"), "a/b"),
        (CaseSensitive(CONTENT_TYPE="a/b"), "a/b"),
        (CaseSensitive(Accept="x/y"), None),
    ],
)
def test_header_value_ignores_case_in_any_mapping(headers, expected):
    assert header_value(headers, "content-type") == expected
    # Twice: the second lookup goes through what the first learnt about the mapping's type.
    assert header_value(headers, "content-type") == expected


# ---------------------------------------------------------------------------------------------
# Categories and CONNECT ports


def test_circumvention_categories():
    assert CIRCUMVENTION_CATEGORIES == (
        "vpn",
        "redirector",
        "strict_redirector",
        "doh",
        "remote-control",
        "residential-proxies",
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vpn", True),
        ("redirector", True),
        ("strict_redirector", True),
        ("doh", True),
        ("remote-control", True),
        ("residential-proxies", True),
        # Names are UT1 folder names, exactly.
        ("VPN", False),
        ("proxy", False),  # UT1's alias for redirector: aliases are not indexed
        ("strong_redirector", False),
        ("dynamic-dns", False),
        ("adult", False),
        ("", False),
    ],
)
def test_is_circumvention_category(name, expected):
    assert is_circumvention_category(name) is expected


@pytest.mark.parametrize("name", CIRCUMVENTION_CATEGORIES)
def test_every_circumvention_category_is_a_ut1_folder(name):
    if not UT1.is_dir():
        pytest.skip(f"shared UT1 data not checked out at {UT1}")
    assert (UT1 / name / "domains").is_file()


@pytest.mark.parametrize(
    ("port", "allowed", "expected"),
    [
        # The web's ports, by default.
        (443, WEB_PORTS, True),
        (80, WEB_PORTS, True),
        # SSH, OpenVPN, SOCKS, HTTP proxies, alternative HTTPS: not unless the school says so.
        (22, WEB_PORTS, False),
        (1194, WEB_PORTS, False),
        (1080, WEB_PORTS, False),
        (3128, WEB_PORTS, False),
        (8080, WEB_PORTS, False),
        (8443, WEB_PORTS, False),
        (8443, (80, 443, 8443), True),
        (8443, frozenset({443, 8443}), True),
        (80, {443}, False),
        # Ranges as the config writes them ("8000-8999"), mixed with single ports.
        (8500, ((443, 443), (8000, 8999)), True),
        (8000, ((8000, 8999),), True),
        (8999, ((8000, 8999),), True),
        (9000, (443, (8000, 8999)), False),
        (443, (443, (8000, 8999)), True),
        (7999, [(8000, 8999)], False),
        # Not a port at all.
        (0, (0, 443), False),
        (65536, (65536,), False),
        (-443, (443,), False),
        ("443", WEB_PORTS, False),
    ],
)
def test_connect_port_allowed(port, allowed, expected):
    assert connect_port_allowed(port, allowed) is expected


def test_connect_port_allowed_defaults_to_the_web():
    assert connect_port_allowed(443) and connect_port_allowed(80)
    assert not connect_port_allowed(22)
