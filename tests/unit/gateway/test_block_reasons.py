"""Blocks are counted by the rule that decided (#15): every kind of rule a block page can name has
its own value of `schoolgate_blocks_total`'s `reason` label, and the block page and the metric
take the kind from the same reason code.

The verdicts here are the gateway's own, reached through `schoolgate.gateway.decision` (the
functions the addons call) on a school whose policy uses every rule; the pages are rendered by
the real `BlockPage`.
"""

from __future__ import annotations

import ast
import base64
import html
import re
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
from mitmproxy.test import taddons, tflow
from prometheus_client import CollectorRegistry

from sample_school import BASE_CONFIG, BASE_LISTS, replace_once
from schoolgate.classify.pages import page_findings, top_phrases
from schoolgate.config.loader import load_config
from schoolgate.gateway.addons import decision_of
from schoolgate.gateway.bootstrap import ordered
from schoolgate.gateway.decision import explain
from schoolgate.gateway.metrics import BLOCK_REASONS, block_reason
from schoolgate.gateway.rules import Rules, build_rules
from schoolgate.gateway.service import Gateway
from schoolgate.identify import Identity
from schoolgate.policy import BLOCK, Policy, Verdict, block_kind
from schoolgate.sources.illegal import without_fetching

PACKAGE = Path(__file__).resolve().parents[3] / "proxy" / "schoolgate"
LESSON = datetime(2026, 11, 23, 10, 0, tzinfo=UTC).timestamp()  # a Monday, in lessons

CONFIG = replace_once(BASE_CONFIG, "groups:\n", """\
  vpn:
    title: VPN services
    lists: [lists/vpn]
schedules:
  lessons:
    title: Lessons
    windows: ["Mon-Fri 08:30-15:30"]
circumvention:
  categories: [vpn]
illegal_lists:
  iwf:
    kind: iwf
    source: lists/illegal
    form: plain
groups:
  infants:
    title: Infants
    subnets: [10.5.0.0/16]
    walled_garden: true
    allowed_categories: [education]
""")
CONFIG = replace_once(CONFIG, "    blocked_categories: [gambling]\n", """\
    blocked_categories: [gambling]
    blocked_during:
      lessons: [social_networks]
    block:
      - {target: example.org/private/, reason: Not for the sixth form}
""")
LISTS = dict(BASE_LISTS, vpn="vpn.example\n", illegal="illegal.example/gallery/image.jpg\n")
# An RFC 8484 GET's query for example.com's A record (id 0, recursion desired), base64url.
DNS_QUERY = base64.urlsafe_b64encode(
    struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00"
    + struct.pack("!HH", 1, 1)).decode("ascii").rstrip("=")
KEYWORDS = ("theme: suicide_selfharm\ntitle: Suicide and self-harm\nseverity: high\n"
            "phrases:\n  - kill myself\n")


@pytest.fixture
def rules(write_config, tmp_path: Path) -> Rules:
    folder = tmp_path / "keywords"
    folder.mkdir()
    (folder / "selfharm.yaml").write_text(KEYWORDS, encoding="utf-8")
    config = load_config(write_config(CONFIG + f"keywords:\n  library: {folder}\n", LISTS))
    return build_rules(config, without_fetching(config))


# (what the row is, group, URL, whether the gateway answers it with the block page)
CASES = [
    ("category", "sixth_form", "https://www.bet365.com/", True),
    ("schedule", "sixth_form", "https://www.facebook.com/", True),
    ("override", "sixth_form", "https://example.org/private/page", True),
    ("walled garden", "infants", "https://example.com/", True),
    ("circumvention category", "sixth_form", "https://vpn.example/", True),
    ("dns-over-https", "sixth_form", f"https://example.com/dns-query?dns={DNS_QUERY}", True),
    ("no safe search", "sixth_form", "https://www.ecosia.org/search?q=volcanoes", True),
    ("keywords", "sixth_form", "https://www.bing.com/search?q=kill+myself", True),
    ("illegal", "staff", "https://illegal.example/gallery/image.jpg", True),
    # Answered before any page: a CONNECT refused with text, a 400.
    ("connect port", "sixth_form", "https://example.com:2222/", False),
    ("connect to an address", "sixth_form", "https://192.0.2.1/", False),
    ("bad request", "sixth_form", "http://bad!host.example/", False),
]


def _verdicts(rules: Rules) -> Iterator[tuple[str, Verdict, bool]]:
    for name, group, url, page in CASES:
        found = explain(rules, Identity(ip="", group=group, source="override"), url, now=LESSON)
        assert found.verdict.action == BLOCK, (name, found)
        yield name, found.verdict, page
    # A page blocked by its text (ScanPages, at `response`): the request itself was allowed.
    allowed = explain(rules, Identity(ip="", group="sixth_form", source="override"),
                      "https://example.com/", now=LESSON).verdict
    library = rules.classifier.library
    assert library is not None
    flags = page_findings(library, "<p>I want to kill myself</p>")
    page = rules.policy.page_verdict(allowed, flags, top_phrases(flags))
    assert page is not None and page.action == BLOCK
    yield "page content", page, True
    # What `fail_closed` serves when filtering itself failed.
    yield "filtering error", Policy.failed("sixth_form", "classify"), True


def _shown_reason(rules: Rules, verdict: Verdict) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The reason a block page gives: its heading and its detail rows but for the site, the
    group and the time; a category row by its label (the category is not the reason)."""
    page = rules.block_page.render(verdict, "host.example", datetime.now(UTC)).body.decode()
    heading = html.unescape(re.search(r"<h1>(.*?)</h1>", page, re.S)[1])
    rows = tuple(
        (label, "" if label == "Category" else html.unescape(value))
        for label, value in re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", page)
        if label not in ("Site", "Policy", "Time", "Reference")
    )
    return heading, rows


def test_every_reason_a_block_page_shows_has_its_own_label(rules):
    pages: dict[tuple, set[str]] = {}
    labels: dict[str, set[tuple]] = {}
    for name, verdict, page in _verdicts(rules):
        label = block_reason(verdict)
        assert label in BLOCK_REASONS, (name, label)  # created at start-up: a zero, not a gap
        if page:
            shown = _shown_reason(rules, verdict)
            pages.setdefault(shown, set()).add(label)
            labels.setdefault(label, set()).add(shown)
    # One label per reason shown, and one reason shown per label.
    assert {s: ls for s, ls in pages.items() if len(ls) > 1} == {}
    assert {label: s for label, s in labels.items() if len(s) > 1} == {}
    assert "keywords" in labels and "category" in labels


def test_every_label_but_the_fallback_is_reached_and_no_reason_falls_back(rules):
    reached = {block_reason(v) for _, v, _ in _verdicts(rules)}
    assert set(BLOCK_REASONS) - reached == {"other"}
    # Every reason code the package gives a verdict maps to a kind of its own, not the
    # fallback: a new code without a label fails here instead of being counted as another.
    for code in _reason_codes():
        if code in ALLOW_ONLY or code in CHECK_ONLY:
            continue
        verdict = Verdict(action=BLOCK, group="g", reference="r", reason=code)
        assert block_kind(verdict) != "other", code


ALLOW_ONLY = {"no-block", "tls:passthrough"}
"""Reason codes of allowed requests only: never a block."""
CHECK_ONLY = {"connect"}
"""`schoolgate check`'s description of a CONNECT refused by no verdict: never counted, no page."""


def _reason_codes() -> set[str]:
    """The reason codes in the package's source: every `reason=` given to a `Verdict(...)`, a
    `dataclasses.replace(...)` or the policy's `changes.update(...)`, a formatted one by its
    constant prefix (`illegal:`)."""
    codes = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in ("Verdict", "replace", "update"):
                continue
            for kw in node.keywords:
                if kw.arg != "reason":
                    continue
                if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    codes.add(kw.value.value)
                elif isinstance(kw.value, ast.JoinedStr) and isinstance(
                        kw.value.values[0], ast.Constant):
                    codes.add(str(kw.value.values[0].value))
    assert {"keywords", "category", "illegal:", "filtering-error:"} <= codes, codes
    return codes


def test_a_keyword_block_is_counted_as_keywords_not_category(rules):
    """Through the gateway's addons, in their order: the blocks metric of a search blocked for
    its words."""
    registry = CollectorRegistry()
    gateway = Gateway(rules.config, registry=registry)
    addons = ordered(gateway)
    flow = tflow.tflow()
    flow.request.url = "http://www.bing.com/search?q=kill+myself"
    flow.client_conn.peername = ("10.20.50.3", 50123)  # sixth form
    with taddons.context(*addons) as tctx:
        for addon in addons:
            tctx.master.addons.invoke_addon_sync(addon, HttpRequestHeadersHook(flow))
    verdict = decision_of(flow).verdict
    assert (verdict.action, verdict.reason) == (BLOCK, "keywords")
    assert flow.response.status_code == 403
    assert "<dd>words in this search or address</dd>" in flow.response.get_text()

    def blocks(reason: str) -> float | None:
        return registry.get_sample_value("schoolgate_blocks_total", {"reason": reason})

    assert (blocks("keywords"), blocks("category")) == (1, 0)



