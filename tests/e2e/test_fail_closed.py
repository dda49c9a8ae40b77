"""Fail closed: a classifier that raises inside the RUNNING gateway (failing_gateway.py) blocks the
request with the 503 "filtering error" page, never contacts the origin, counts every failure in
the metrics, logs the traceback once, records an `error` event, and leaves other hosts working."""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from .harness import (
    HERE,
    PUPILS_TITLE,
    REFERENCE_RE,
    GatewayClient,
    GatewayProcess,
    Origin,
    Reply,
    running_gateway,
    sample,
    scrape,
    wait_for_events,
    write_config,
)

pytestmark = pytest.mark.e2e

STAGES = ("identify", "classify", "enforce")


@pytest.fixture(scope="module")
def failing(tmp_path_factory, pki, origin):
    setup = write_config(tmp_path_factory.mktemp("failing"), upstream_ca=pki.ca_cert)
    # One worker: "logged once" is per process (each worker logs its first failure once).
    with running_gateway("failing", setup.config, script=HERE / "failing_gateway.py",
                         workers=1) as gw:
        yield setup, gw


@dataclass
class Explosions:
    gateway: GatewayProcess
    database: Path
    marker: str
    failed: dict[str, Reply]
    fine: dict[str, Reply]
    blocked: Reply
    metrics_before: dict
    metrics_after: dict
    origin_before: int


@pytest.fixture(scope="module")
def explosions(failing, origin: Origin) -> Explosions:
    """Several requests to hosts the classifier fails on, and a few to hosts it handles."""
    setup, gw = failing
    client = GatewayClient(gw.proxy_port, setup.schoolgate_ca)
    m = uuid.uuid4().hex
    metrics_before = scrape(gw.metrics_url)
    origin_before = len(origin.requests)
    failed = {
        url: client.get(url)
        for url in (
            origin.url("http", f"/hello?m={m}", host="explode.test"),
            origin.url("https", f"/hello?m={m}", host="explode.test"),
            origin.url("http", f"/bytes?m={m}", host="www.explode.test"),
            origin.url("https", f"/bytes?m={m}", host="www.explode.test"),
        )
    }
    # fine.test resolves to the origin the same way explode.test does (see failing_gateway.py),
    # which proves a failing request that got out would have reached it.
    fine = {
        url: client.get(url)
        for url in (
            origin.url("http", f"/hello?m={m}", host="fine.test"),
            origin.url("https", f"/bytes?m={m}", host="fine.test"),
        )
    }
    blocked = client.get(f"https://blocked.test/?m={m}")
    return Explosions(gw, setup.database, m, failed, fine, blocked, metrics_before,
                      scrape(gw.metrics_url), origin_before)


def test_failing_classifier_serves_the_filtering_error_page(explosions):
    for url, reply in explosions.failed.items():
        assert reply.status == 503, url
        reference = reply.headers["X-Schoolgate-Reference"]
        assert reference and REFERENCE_RE.match(reference), url
        page = reply.text
        assert "<h1>Filtering error</h1>" in page, url
        assert "<dd>filtering error</dd>" in page, url
        assert f'<dd class="ref">{reference}</dd>' in page, url
        assert f"<dd>{html.escape(PUPILS_TITLE)}</dd>" in page, url
        assert "monitored and recorded" in page, url


def test_failing_requests_never_reach_the_origin(explosions, origin):
    assert origin.requests_with("explode") == []
    # The two fine.test requests are the only ones the origin got in the meantime.
    reached = origin.requests[explosions.origin_before:]
    assert sorted((r.scheme, r.host.split(":")[0]) for r in reached) == [
        ("http", "fine.test"), ("https", "fine.test"),
    ]


def test_every_failure_is_counted_by_stage(explosions):
    def delta(name: str, **labels: str) -> float:
        return (sample(explosions.metrics_after, name, **labels)
                - sample(explosions.metrics_before, name, **labels))

    failures = len(explosions.failed)
    assert {stage: delta("schoolgate_fail_closed_errors_total", stage=stage) for stage in STAGES} == {
        "identify": 0, "classify": failures, "enforce": 0,
    }
    assert delta("schoolgate_requests_total", action="error", category="none", group="pupils") == failures
    assert delta("schoolgate_requests_total", action="allow", category="none", group="pupils") == 2
    assert delta("schoolgate_requests_total", action="block", category="gambling", group="pupils") == 1


def test_the_error_is_logged_once_with_its_traceback(explosions):
    gw = explosions.gateway
    # Logged before the page is served; the pipe reader may lag a moment behind.
    gw.wait_for_output(r"filtering error in classify, request blocked \(fail closed\)")
    gw.wait_for_output(r"^RuntimeError: injected classifier failure \(e2e test\)$")
    # Both streams: mitmproxy's terminal log writes every level, errors included, to stdout.
    log = gw.output()

    assert log.count("filtering error in classify") == 1, log
    assert log.count("Traceback (most recent call last)") == 1, log
    assert log.count("RuntimeError: injected classifier failure (e2e test)") == 1, log
    assert "failing_gateway.py" in log  # the traceback shows where it was raised


def test_other_hosts_still_work(explosions, origin):
    hello, data = explosions.fine.values()
    assert (hello.status, hello.body) == (200, origin.hello)
    assert (data.status, data.body) == (200, origin.body)
    assert explosions.blocked.status == 403
    assert "This page is blocked" in explosions.blocked.text


def test_each_failure_is_recorded_as_an_error_event(explosions):
    m = explosions.marker
    every = len(explosions.failed) + len(explosions.fine) + 1
    rows = wait_for_events(explosions.database, "url LIKE ?", [f"%m={m}"], count=every,
                           gateway=explosions.gateway)
    by_url = {row["url"]: row for row in rows if "explode" in row["host"]}
    assert set(by_url) == set(explosions.failed)
    for url, reply in explosions.failed.items():
        row = by_url[url]
        assert row["action"] == "error"
        assert row["reference"] == reply.headers["X-Schoolgate-Reference"]
        assert row["group_name"] == "pupils"
        assert row["client_ip"] == "127.0.0.1"
        assert row["categories"] is None
        assert row["matched_rule"] == "filtering error in classify: blocked to be safe"
        assert row["severity"] == "high"
    # The hosts that did work are recorded as usual.
    actions = {r["host"]: r["action"] for r in rows}
    assert actions == {"explode.test": "error", "www.explode.test": "error",
                       "fine.test": "allow", "blocked.test": "block"}
