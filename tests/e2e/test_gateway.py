"""The gateway end to end: allowed pages pass untouched, blocked hosts get the block page over
HTTP and inside intercepted HTTPS without the origin ever hearing of them, every decision is an
event row that `schoolgate event` finds, metrics count decisions with bounded labels only, and the
CA private key is private."""

from __future__ import annotations

import html
import http.client
import ipaddress
import json
import re
import stat
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from .harness import (
    GAMBLING_TITLE,
    GAMES_TITLE,
    PUPILS_TITLE,
    REFERENCE_RE,
    SCHOOL,
    TIMEOUT,
    clean_env,
    sample,
    schoolgate_command,
    schoolgate_tls,
    scrape,
    wait_for_events,
)

pytestmark = pytest.mark.e2e


def marker() -> str:
    """A unique query value, so a test finds its own requests among the session's."""
    return uuid.uuid4().hex


# ---------------------------------------------------------------------------------------------
# Allowed pages


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_allowed_page_arrives_byte_identical(scheme, origin, client):
    m = marker()
    reply = client.get(origin.url(scheme, f"/bytes?m={m}"))

    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert reply.headers["X-Schoolgate-Reference"] is None
    assert len(reply.body) == len(origin.body) == 200_000
    assert reply.body == origin.body
    assert [(r.scheme, r.path) for r in origin.requests_with(m)] == [(scheme, f"/bytes?m={m}")]


# ---------------------------------------------------------------------------------------------
# Blocked hosts


def blocked_url(origin, scheme: str, host: str, m: str) -> str:
    # `localhost` resolves to the origin and uses its real port: if the gateway let the request
    # out, the origin would see it. The other names do not resolve at all.
    if host == "localhost":
        return origin.url(scheme, f"/hello?m={m}", host="localhost")
    return f"{scheme}://{host}/hello?m={m}"


BLOCKED = [
    # host, category title on the page
    ("blocked.test", GAMBLING_TITLE),
    ("www.bet365.com", GAMBLING_TITLE),  # a subdomain of a list entry
    ("localhost", GAMES_TITLE),
]


def assert_block_page(reply, host: str, category_title: str) -> str:
    """The page names what, why, who, when and a reference; returns the reference."""
    assert reply.status == 403, reply
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    assert reply.headers["Cache-Control"] == "no-store"
    reference = reply.headers["X-Schoolgate-Reference"]
    assert reference and REFERENCE_RE.match(reference), reference
    page = reply.text
    assert "This page is blocked" in page
    assert f"<dd>{html.escape(host)}</dd>" in page
    assert f"<dd>{html.escape(category_title)}</dd>" in page
    assert f"<dd>{html.escape(PUPILS_TITLE)}</dd>" in page
    assert f'<dd class="ref">{reference}</dd>' in page
    assert f"Internet use on the {SCHOOL} network is monitored and recorded" in page
    assert "<KS3>" not in page and "Gambling & betting" not in page, "values must be escaped"

    shown = re.search(r"<dt>Time</dt><dd>([^<]+)</dd>", page)
    assert shown, page
    when, zone = shown[1].rsplit(" ", 1)
    assert zone in ("GMT", "BST")  # the school's time zone, Europe/London
    local = datetime.strptime(when, "%A %d %B %Y, %H:%M:%S")
    now = datetime.now(ZoneInfo("Europe/London")).replace(tzinfo=None)
    assert abs(now - local) < timedelta(minutes=2), (shown[1], now)
    return reference


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize(("host", "category_title"), BLOCKED)
def test_blocked_host_gets_the_block_page(scheme, host, category_title, origin, client):
    before = len(origin.requests)
    reply = client.get(blocked_url(origin, scheme, host, marker()))

    assert_block_page(reply, host, category_title)
    assert len(origin.requests) == before, "a blocked request reached the origin"


def test_https_block_page_is_served_inside_tls_signed_by_schoolgate_ca(gateway, setup, origin):
    """The handshake succeeds with only Schoolgate's CA trusted, for the blocked name itself."""
    before = len(origin.requests)
    conn = http.client.HTTPSConnection(
        "127.0.0.1", gateway.proxy_port, context=schoolgate_tls(setup.schoolgate_ca), timeout=TIMEOUT
    )
    try:
        conn.set_tunnel("blocked.test", 443)
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
        cert = conn.sock.getpeercert()
        tls_version = conn.sock.version()
    finally:
        conn.close()

    assert response.status == 403
    assert b"This page is blocked" in body
    assert ("DNS", "blocked.test") in cert["subjectAltName"]
    issuer = dict(rdn[0] for rdn in cert["issuer"])
    assert issuer["organizationName"] == "Schoolgate"
    assert issuer["commonName"] == f"Schoolgate CA - {SCHOOL}"
    assert tls_version in ("TLSv1.2", "TLSv1.3")
    assert len(origin.requests) == before


# ---------------------------------------------------------------------------------------------
# Events


ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def assert_recent_utc(ts: str, started: datetime) -> None:
    assert ISO_UTC.match(ts), ts
    when = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert started - timedelta(seconds=1) <= when <= datetime.now(UTC) + timedelta(seconds=1)


def test_block_is_recorded_with_the_reference_on_the_page(origin, client, setup, gateway):
    m = marker()
    started = datetime.now(UTC)
    reply = client.get(f"https://blocked.test/search?q=poker&m={m}")
    reference = assert_block_page(reply, "blocked.test", GAMBLING_TITLE)

    (row,) = wait_for_events(setup.database, "url LIKE ?", [f"%m={m}"], gateway=gateway)

    assert_recent_utc(row.pop("ts"), started)
    assert isinstance(row.pop("id"), int)
    assert row == {
        "user": None,
        "device": None,
        "client_ip": "127.0.0.1",
        "group_name": "pupils",
        "method": "GET",
        "scheme": "https",
        "host": "blocked.test",
        "url": f"https://blocked.test/search?q=poker&m={m}",
        "search_term": None,
        "categories": "gambling",
        "matched_rule": "group pupils blocks gambling",
        "action": "block",
        "severity": None,
        "reference": reference,
        "reason": "category",
        "theme": None,
        "engine": None,
        "search_normalised": None,
        "matched_phrase": None,
        "page_score": None,
        "page_phrases": None,
    }


def test_allow_is_recorded(origin, client, setup, gateway):
    m = marker()
    started = datetime.now(UTC)
    url = origin.url("http", f"/hello?m={m}")
    assert client.get(url).status == 200

    (row,) = wait_for_events(setup.database, "url LIKE ?", [f"%m={m}"], gateway=gateway)

    assert_recent_utc(row["ts"], started)
    assert REFERENCE_RE.match(row["reference"])
    assert {k: row[k] for k in ("client_ip", "group_name", "method", "scheme", "host", "url",
                                "categories", "matched_rule", "action")} == {
        "client_ip": "127.0.0.1",
        "group_name": "pupils",
        "method": "GET",
        "scheme": "http",
        "host": "127.0.0.1",
        "url": url,
        "categories": None,
        "matched_rule": None,
        "action": "allow",
    }


def run_event_command(setup, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*schoolgate_command(), "event", *args, "--config", str(setup.config)],
        capture_output=True, text=True, timeout=TIMEOUT, env=clean_env(),
    )


def test_event_command_finds_the_block_by_its_reference(origin, client, setup, gateway):
    m = marker()
    reply = client.get(f"http://www.bet365.com/?m={m}")
    reference = assert_block_page(reply, "www.bet365.com", GAMBLING_TITLE)
    (row,) = wait_for_events(setup.database, "reference = ?", [reference], gateway=gateway)

    found = run_event_command(setup, reference, "--json")
    assert found.returncode == 0, found.stderr
    assert [json.loads(line) for line in found.stdout.splitlines()] == [row]

    # As a pupil might read it out: lower case, no dash.
    spoken = run_event_command(setup, reference.lower().replace("-", ""))
    assert spoken.returncode == 0, spoken.stderr
    assert reference in spoken.stdout and f"http://www.bet365.com/?m={m}" in spoken.stdout

    missing = run_event_command(setup, "00000-00000")
    assert missing.returncode == 1
    assert "no event with reference 00000-00000" in missing.stderr


# ---------------------------------------------------------------------------------------------
# Metrics


def test_metrics_count_decisions_by_action_category_and_group(origin, client, gateway):
    def counts() -> dict[str, float]:
        s = scrape(gateway.metrics_url)
        return {
            "block gambling": sample(s, "schoolgate_requests_total",
                                     action="block", category="gambling", group="pupils"),
            "block games": sample(s, "schoolgate_requests_total",
                                  action="block", category="games", group="pupils"),
            "allow none": sample(s, "schoolgate_requests_total",
                                 action="allow", category="none", group="pupils"),
            "error": sample(s, "schoolgate_requests_total",
                            action="error", category="none", group="pupils"),
            "staff": sum(v for (name, labels), v in s.items()
                         if name == "schoolgate_requests_total" and ("group", "staff") in labels),
        }

    before = counts()
    m = marker()
    assert client.get(f"http://blocked.test/?m={m}").status == 403
    assert client.get(f"https://www.bet365.com/?m={m}").status == 403
    assert client.get(origin.url("https", f"/hello?m={m}", host="localhost")).status == 403
    assert client.get(origin.url("http", f"/hello?m={m}")).status == 200
    assert client.get(origin.url("https", f"/hello?m={m}")).status == 200
    after = counts()

    assert {k: after[k] - before[k] for k in before} == {
        "block gambling": 2, "block games": 1, "allow none": 2, "error": 0, "staff": 0,
    }


def test_metric_labels_never_carry_an_ip_host_or_url(origin, client, gateway):
    m = marker()
    client.get(f"http://blocked.test/?m={m}")
    client.get(origin.url("http", f"/hello?m={m}"))
    samples = scrape(gateway.metrics_url)

    requests = [dict(labels) for name, labels in samples if name == "schoolgate_requests_total"]
    assert requests
    for labels in requests:
        assert set(labels) == {"action", "category", "group"}
        assert labels["action"] in {"allow", "block", "error"}
        # Configured categories, "none", and "illegal" (every illegal-list block, by no entry).
        assert labels["category"] in {"gambling", "games", "none", "illegal"}
        assert labels["group"] in {"pupils", "staff"}

    forbidden = ("127.0.0.1", "localhost", "blocked.test", "bet365", m, "://", "/")
    for name, labels in samples:
        for key, value in labels:
            assert not any(f in value for f in forbidden), (name, key, value)
            try:
                ipaddress.ip_address(value)
            except ValueError:
                pass
            else:
                raise AssertionError(f"{name} label {key} is an IP address: {value}")


# ---------------------------------------------------------------------------------------------
# The CA


def test_ca_private_key_is_readable_by_its_owner_only(gateway, setup):
    for name in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
        mode = stat.S_IMODE((setup.ca_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {mode:o}"
    public = setup.schoolgate_ca.read_text(encoding="ascii")
    assert "PRIVATE KEY" not in public and "BEGIN CERTIFICATE" in public
