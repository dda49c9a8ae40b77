"""The mitmproxy addons, run in their real order over test flows: block pages, the flow's decision, queued events and metrics, and fail-closed behaviour when any stage breaks."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import pytest
from mitmproxy import http
from mitmproxy.addonmanager import safecall
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook
from mitmproxy.test import taddons, tflow
from prometheus_client import CollectorRegistry

from sample_school import BASE_CONFIG
from schoolgate.config.model import Config
from schoolgate.gateway.addons import begin, decision_of
from schoolgate.gateway.bootstrap import ordered
from schoolgate.gateway.failures import FailureLog
from schoolgate.gateway.service import Gateway
from schoolgate.policy import ALLOW, BLOCK, ERROR, Policy
from schoolgate.store import events_by_reference

GROUPS = ["primary", "secondary", "sixth_form", "staff", "guest"]
CATEGORIES = ["gambling", "social_networks", "education", "none"]


class Proxy:
    """The gateway's addons inside a mitmproxy test context, called hook by hook in order.

    Each call goes through mitmproxy's `safecall`, as in the real proxy: an exception escaping a
    hook is logged as "Addon error" and swallowed, and the next addon still runs.
    """

    def __init__(self, gateway: Gateway, tctx: taddons.context, addons: list):
        self.gateway = gateway
        self.tctx = tctx
        self.addons = addons

    def hook(self, hook: type, flow: http.HTTPFlow) -> http.HTTPFlow:
        for addon in self.addons:
            with safecall():
                self.tctx.master.addons.invoke_addon_sync(addon, hook(flow))
        return flow

    def requestheaders(self, flow: http.HTTPFlow) -> http.HTTPFlow:
        return self.hook(HttpRequestHeadersHook, flow)

    def request(self, flow: http.HTTPFlow) -> http.HTTPFlow:
        return self.hook(HttpRequestHook, flow)

    def browse(self, flow: http.HTTPFlow) -> http.HTTPFlow:
        """Both hooks a request passes before mitmproxy contacts the origin."""
        self.requestheaders(flow)
        if flow.response is None:
            self.request(flow)
        return flow


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def gateway(config: Config, registry: CollectorRegistry) -> Gateway:
    return Gateway(config, registry=registry)


@pytest.fixture
def proxy(gateway: Gateway) -> Iterator[Proxy]:
    addons = ordered(gateway)
    with taddons.context(*addons) as tctx:
        yield Proxy(gateway, tctx, addons)


def flow_to(url: str, client: str = "10.20.1.2") -> http.HTTPFlow:
    """A live flow from `client` (secondary pupils by default) for `url`, before any hook ran."""
    f = tflow.tflow()
    f.request.url = url
    f.client_conn.peername = (client, 50123)
    return f


def requests_total(
    registry: CollectorRegistry, action: str, category: str, group: str
) -> float | None:
    return registry.get_sample_value(
        "schoolgate_requests_total", {"action": action, "category": category, "group": group}
    )


def fail_closed_total(registry: CollectorRegistry, stage: str) -> float | None:
    return registry.get_sample_value("schoolgate_fail_closed_errors_total", {"stage": stage})


def addon_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Exceptions that escaped a hook: mitmproxy would have let those requests through."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Addon error")]


# ---------------------------------------------------------------------------------------------
# Decisions


@pytest.mark.parametrize(
    ("client", "url", "status", "action", "category", "group"),
    [
        # Blocked by the client's group.
        ("10.20.1.2", "http://www.bet365.com/casino", 403, BLOCK, "gambling", "secondary"),
        ("10.10.3.4", "https://m.facebook.com/", 403, BLOCK, "social_networks", "primary"),
        ("::ffff:10.20.50.3", "https://www.bet365.com/", 403, BLOCK, "gambling", "sixth_form"),
        # Unknown client: the default group, guest, which blocks social media.
        ("192.0.2.77", "https://www.tiktok.com/", 403, BLOCK, "social_networks", "guest"),
        # The same site allowed for another group (sixth form may use social media; staff
        # block nothing in the sample school).
        ("10.20.50.3", "https://m.facebook.com/", None, ALLOW, "social_networks", "sixth_form"),
        ("10.30.0.9", "https://www.bet365.com/", None, ALLOW, "gambling", "staff"),
        ("fd00:30::9", "https://www.bet365.com/", None, ALLOW, "gambling", "staff"),
        # Listed but never blocked, and not listed at all.
        ("10.10.3.4", "https://www.bbc.co.uk/bitesize", None, ALLOW, "education", "primary"),
        ("10.10.3.4", "https://www.example.org/", None, ALLOW, None, "primary"),
    ],
)
def test_decision_per_group(proxy, registry, client, url, status, action, category, group):
    flow = proxy.browse(flow_to(url, client))

    verdict = decision_of(flow).verdict
    assert (verdict.action, verdict.category, verdict.group) == (action, category, group)
    assert decision_of(flow).identity.group == group
    if status is None:
        assert flow.response is None
    else:
        assert flow.response.status_code == status
    assert requests_total(registry, action, category or "none", group) == 1
    assert proxy.gateway.writer.depth == 1


def test_blocked_request_gets_the_block_page(proxy, registry):
    flow = proxy.requestheaders(flow_to("http://www.bet365.com/casino"))

    verdict = decision_of(flow).verdict
    assert verdict.rule == "group secondary blocks gambling"
    assert flow.response.status_code == 403
    assert flow.response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert flow.response.headers["Cache-Control"] == "no-store"
    assert flow.response.headers["X-Schoolgate-Reference"] == verdict.reference
    body = flow.response.get_text()
    assert "<dd>www.bet365.com</dd>" in body
    assert "<dd>Gambling</dd>" in body
    assert "<dd>Secondary pupils</dd>" in body
    assert verdict.reference in body
    # tflow's request started at 946681200 = 1999-12-31 23:00:00 UTC (GMT in London).
    assert "Friday 31 December 1999, 23:00:00 GMT" in body
    # Counted and timed once; the other series exist at zero.
    assert requests_total(registry, BLOCK, "gambling", "secondary") == 1
    assert requests_total(registry, ALLOW, "gambling", "secondary") == 0
    assert registry.get_sample_value("schoolgate_decision_seconds_count") == 1


@pytest.mark.parametrize(
    "text",
    [
        "<h1>{{ heading }}\n{% for %}\n",  # a syntax error, found when the rules are built
        "<h1>{{ heading }}</h1>\n<p>{{ details.nope.nothing }}</p>\n",  # fails when rendered
    ],
)
def test_a_schools_broken_block_page_still_blocks(make_config, tmp_path, caplog, text):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "blockpage.html").write_text(text, encoding="utf-8")
    registry = CollectorRegistry()
    gateway = Gateway(make_config(BASE_CONFIG + "templates: templates\n"), registry=registry)
    addons = ordered(gateway)
    with taddons.context(*addons) as tctx:
        flow = Proxy(gateway, tctx, addons).browse(flow_to("http://www.bet365.com/casino"))
    # Never fails open, and not even closed: the real block page, from the package's template.
    assert flow.response.status_code == 403
    assert "<h1>This page is blocked</h1>" in flow.response.get_text()
    assert "<dd>Gambling</dd>" in flow.response.get_text()
    assert addon_errors(caplog) == [] and not fail_closed_total(registry, "enforce")
    assert f"{folder / 'blockpage.html'}:2" in caplog.text


def test_allowed_request_passes_both_hooks_untouched_and_is_counted_once(proxy, registry):
    flow = flow_to("https://www.bbc.co.uk/news", client="10.10.3.4")
    proxy.requestheaders(flow)
    proxy.request(flow)
    proxy.request(flow)  # a hook seen twice must not count or record twice

    assert flow.response is None
    assert decision_of(flow).verdict.action == ALLOW
    assert decision_of(flow).classification.categories == ("education",)
    assert requests_total(registry, ALLOW, "education", "primary") == 1
    assert proxy.gateway.writer.depth == 1
    assert registry.get_sample_value("schoolgate_decision_seconds_count") == 1


def test_classification_uses_the_connection_host_not_a_forged_host_header(proxy):
    flow = flow_to("http://www.bet365.com/")
    flow.request.headers["Host"] = "www.bbc.co.uk"
    proxy.requestheaders(flow)
    assert decision_of(flow).verdict.action == BLOCK
    assert flow.response.status_code == 403


def test_every_known_series_exists_from_the_start(registry, gateway):
    for group in GROUPS:
        for category in CATEGORIES:
            for action in (ALLOW, BLOCK):
                assert requests_total(registry, action, category, group) == 0
        assert requests_total(registry, ERROR, "none", group) == 0
    for stage in ("identify", "classify", "enforce"):
        assert fail_closed_total(registry, stage) == 0


def test_queue_depth_metric_follows_the_writer(proxy, registry):
    assert registry.get_sample_value("schoolgate_event_queue_depth") == 0
    for n in range(3):
        proxy.browse(flow_to(f"http://site{n}.example/"))
    assert proxy.gateway.writer.depth == 3
    assert registry.get_sample_value("schoolgate_event_queue_depth") == 3


@pytest.mark.parametrize(
    "make_flow",
    [
        # Answered by another addon (or an earlier hook) before ours: leave it alone.
        lambda: tflow.tflow(resp=True),
        # Not live (loaded from a file, not on its way to a server): nothing to decide.
        lambda: tflow.tflow(live=False),
    ],
    ids=["already-answered", "not-live"],
)
def test_flows_that_need_no_decision_are_left_alone(proxy, registry, make_flow):
    flow = make_flow()
    response_before = flow.response
    proxy.requestheaders(flow)
    proxy.request(flow)
    assert flow.response is response_before
    assert decision_of(flow) is None or decision_of(flow).verdict is None
    assert proxy.gateway.writer.depth == 0
    assert registry.get_sample_value("schoolgate_decision_seconds_count") == 0


@pytest.mark.asyncio
async def test_decisions_reach_the_store(config, registry):
    gateway = Gateway(config, registry=registry)
    await gateway.start(serve_metrics=False)
    try:
        addons = ordered(gateway)
        with taddons.context(*addons) as tctx:
            p = Proxy(gateway, tctx, addons)
            blocked = p.browse(flow_to("https://www.bet365.com/casino?x=1", client="10.20.50.3"))
            p.browse(flow_to("https://www.bbc.co.uk/", client="10.20.50.3"))
    finally:
        await gateway.stop()

    assert gateway.writer.written == 2
    assert registry.get_sample_value("schoolgate_events_written_total") == 2
    reference = decision_of(blocked).verdict.reference
    (row,) = events_by_reference(config.database_path, reference)
    assert {k: row[k] for k in ("client_ip", "group_name", "action", "method", "scheme", "host",
                                "url", "categories", "matched_rule", "reference")} == {
        "client_ip": "10.20.50.3",
        "group_name": "sixth_form",
        "action": "block",
        "method": "GET",
        "scheme": "https",
        "host": "www.bet365.com",
        "url": "https://www.bet365.com/casino?x=1",
        "categories": "gambling",
        "matched_rule": "group sixth_form blocks gambling",
        "reference": reference,
    }
    assert row["ts"] == "1999-12-31T23:00:00.000Z"


# ---------------------------------------------------------------------------------------------
# Fail closed: a broken stage blocks the request with a 503, counts it and logs it once.


class Broken:
    """Stands in for any stage's object: every method raises the same error."""

    def __init__(self, message: str = "list index corrupted"):
        self.message = message

    def _fail(self, *args, **kwargs):
        raise RuntimeError(self.message)

    identify = classify = classify_host = decide = render = must_log_in = _fail


def _break(part: str):
    def apply(g: Gateway) -> None:
        g.rules = dataclasses.replace(g.rules, **{part: Broken()})
    return apply


BREAK = {
    # stage: how to break it on a gateway
    "identify": _break("identity"),
    "classify": _break("classifier"),
    "enforce": _break("policy"),
}


@pytest.mark.parametrize(
    ("stage", "client", "group"),
    [
        # Identify failed: nobody knows the group, so the default group's name is recorded.
        ("identify", "10.20.1.2", "guest"),
        # Later stages failed: the client's own group is known and recorded.
        ("classify", "10.20.1.2", "secondary"),
        ("enforce", "10.30.0.9", "staff"),
    ],
)
def test_broken_stage_fails_closed(proxy, registry, caplog, stage, client, group):
    BREAK[stage](proxy.gateway)
    caplog.set_level(logging.ERROR)

    # The first request: blocked with the filtering-error page, counted once.
    flow = proxy.browse(flow_to("https://www.example.org/", client))
    assert flow.response.status_code == 503
    assert "Filtering error" in flow.response.get_text()
    verdict = decision_of(flow).verdict
    assert (verdict.action, verdict.group) == (ERROR, group)
    assert verdict.reason == f"filtering-error:{stage}"
    assert flow.response.headers["X-Schoolgate-Reference"] == verdict.reference
    assert fail_closed_total(registry, stage) == 1

    # More requests, even to sites the group may see: every one blocked and counted...
    for url in ("https://www.bbc.co.uk/", "http://www.example.org/a", "http://www.example.org/b"):
        assert proxy.browse(flow_to(url, client)).response.status_code == 503
    assert fail_closed_total(registry, stage) == 4
    assert requests_total(registry, ERROR, "none", group) == 4
    assert proxy.gateway.writer.depth == 4
    # ...and no other stage was blamed.
    assert [fail_closed_total(registry, s) for s in BREAK if s != stage] == [0, 0]

    # ...but the failure is logged once, with its traceback, not once per request.
    logged = [r for r in caplog.records if r.getMessage().startswith(f"filtering error in {stage}")]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert "list index corrupted" in logged[0].getMessage()
    assert "Traceback" in logged[0].getMessage()
    # Nothing escaped to mitmproxy, which would have let the request out.
    assert addon_errors(caplog) == []


def test_broken_classifier_fails_closed_after_one_request(proxy, registry):
    proxy.gateway.rules = dataclasses.replace(proxy.gateway.rules, classifier=Broken())
    flow = proxy.requestheaders(flow_to("http://www.bbc.co.uk/"))
    assert flow.response.status_code == 503
    assert decision_of(flow).verdict.action == ERROR
    assert fail_closed_total(registry, "classify") == 1
    assert requests_total(registry, ERROR, "none", "secondary") == 1


def test_the_destination_decides_not_a_forged_host_header(proxy):
    # mitmproxy connects to request.host; a Host header naming an allowed site changes nothing,
    # and the event and the block page name the real destination.
    flow = flow_to("http://www.bet365.com/", "10.20.1.2")
    flow.request.headers["Host"] = "www.bbc.co.uk"
    proxy.browse(flow)
    assert flow.response.status_code == 403
    assert b"www.bet365.com" in flow.response.content
    assert b"bbc" not in flow.response.content
    assert proxy.gateway.writer.depth == 1
    event = proxy.gateway.writer._queue.get_nowait()
    assert (event.host, event.url) == ("www.bet365.com", "http://www.bet365.com/")


def test_a_malformed_host_is_a_bad_request_not_a_filtering_error(proxy, registry, caplog):
    # The client is at fault: 400, recorded as a block, never sent on, and no filtering error.
    flow = flow_to("http://www.example.org/")
    flow.request.host = "bad host!"
    proxy.browse(flow)
    assert flow.response.status_code == 400
    # Schoolgate's page, in the block page's style, saying what is wrong.
    assert flow.response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"This request could not be sent" in flow.response.content
    assert b"&#x27;bad%20host!&#x27; is not a host name any server can have" in \
        flow.response.content
    assert flow.response.headers["Connection"] == "close"
    verdict = decision_of(flow).verdict
    assert flow.response.headers["X-Schoolgate-Reference"] == verdict.reference
    assert (verdict.action, verdict.reason) == (BLOCK, "bad-request")
    assert fail_closed_total(registry, "classify") == 0
    assert proxy.gateway.writer.depth == 1
    assert addon_errors(caplog) == []


class BrokenElsewhere:
    """A second, different bug: another exception type raised from another line."""

    def classify(self, url, **request):
        raise KeyError(url)


def test_different_failures_are_each_logged_once(proxy, caplog):
    caplog.set_level(logging.ERROR)
    # The same bug with different messages (a message often holds the host) is one failure;
    # a bug elsewhere is another.
    for classifier in (Broken("first host"), Broken("second host"), BrokenElsewhere(), Broken("x")):
        proxy.gateway.rules = dataclasses.replace(proxy.gateway.rules, classifier=classifier)
        proxy.browse(flow_to("http://www.example.org/"))
    logged = [m for r in caplog.records if (m := r.getMessage()).startswith("filtering error")]
    assert len(logged) == 2
    assert "RuntimeError: first host" in logged[0] and "KeyError" in logged[1]


def test_broken_block_page_still_blocks_with_plain_text(proxy, registry, caplog):
    proxy.gateway.rules = dataclasses.replace(proxy.gateway.rules,
                                              block_page=Broken("template missing"))
    flow = proxy.browse(flow_to("http://www.bet365.com/"))
    assert flow.response.status_code == 503
    assert flow.response.get_text() == "Filtering error: this request was blocked."
    assert flow.response.headers["Content-Type"] == "text/plain"
    assert decision_of(flow).verdict.action == ERROR
    assert fail_closed_total(registry, "enforce") == 1
    assert addon_errors(caplog) == []


def test_unknown_client_address_fails_closed_and_the_loss_of_its_event_is_counted(
    proxy, registry, caplog
):
    flow = flow_to("http://www.example.org/")
    flow.client_conn.peername = None  # no address at all: no identity, no IP to record
    proxy.browse(flow)
    assert flow.response.status_code == 503
    assert decision_of(flow).verdict.reason == "filtering-error:identify"
    assert fail_closed_total(registry, "identify") == 1
    # Record could not build the event: counted as dropped, logged, and the block still stands.
    assert proxy.gateway.writer.depth == 0
    assert registry.get_sample_value("schoolgate_events_dropped_total") == 1
    assert any("could not build the event" in r.getMessage() for r in caplog.records)
    assert requests_total(registry, ERROR, "none", "guest") == 1
    assert addon_errors(caplog) == []


# ---------------------------------------------------------------------------------------------
# The last line of defence: nothing reaches the origin without an allow verdict.


@pytest.mark.parametrize(
    "prepare",
    [
        # requestheaders never ran our addons (a future code path, another addon interfering).
        lambda gateway, f: None,
        # A verdict that is not "allow", but whose block page was removed by someone else.
        lambda gateway, f: setattr(begin(gateway, f), "verdict",
                                   Policy.failed("guest", "classify")),
    ],
    ids=["no-verdict", "non-allow-verdict-without-response"],
)
def test_request_without_an_allow_verdict_is_blocked_at_the_request_hook(
    proxy, registry, caplog, prepare
):
    flow = flow_to("http://www.bbc.co.uk/", client="10.30.0.9")
    prepare(proxy.gateway, flow)
    proxy.request(flow)

    assert flow.response.status_code == 503
    assert "Filtering error" in flow.response.get_text()
    verdict = decision_of(flow).verdict
    assert (verdict.action, verdict.reason) == (ERROR, "filtering-error:enforce")
    # No identity was made, so the default group is recorded.
    assert verdict.group == "guest"
    assert fail_closed_total(registry, "enforce") == 1
    assert requests_total(registry, ERROR, "none", "guest") == 1
    assert proxy.gateway.writer.depth == 1
    assert addon_errors(caplog) == []


def test_request_hook_leaves_allowed_flows_alone(proxy, registry):
    flow = proxy.requestheaders(flow_to("http://www.bbc.co.uk/"))
    proxy.request(flow)
    assert flow.response is None
    assert fail_closed_total(registry, "enforce") == 0


# ---------------------------------------------------------------------------------------------
# FailureLog: once with a traceback, then a periodic count.


def test_failure_log_repeats_as_a_count_after_the_interval(monkeypatch, caplog):
    now = [1000.0]
    monkeypatch.setattr("schoolgate.gateway.failures.time.monotonic", lambda: now[0])
    failures = FailureLog(repeat_every=60)
    caplog.set_level(logging.ERROR, logger="schoolgate")
    error = RuntimeError("disk on fire")

    failures.report("classify", error)  # logged with traceback
    for _ in range(5):
        now[0] += 10
        failures.report("classify", error)  # 10..50 s later: quiet
    now[0] += 10
    failures.report("classify", error)  # 60 s after the first log: a count
    now[0] += 1
    failures.report("classify", error)  # quiet again

    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    # The error as Python prints it (a never-raised error has no traceback lines to show).
    assert messages[0] == (
        "filtering error in classify, request blocked (fail closed): disk on fire\n"
        "RuntimeError: disk on fire"
    )
    assert messages[1] == (
        "filtering error in classify repeated 6 times in the last 60s: RuntimeError: disk on fire"
    )
