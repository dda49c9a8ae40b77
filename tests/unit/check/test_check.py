"""`schoolgate check`: the suite builder (which canary, expecting what, for which group), judging
the gateway's answers, the check header and answer headers, the `check` config section, the
check-mode addons over test flows (header stripped, token required, never recorded or sent to a
server), the record and metric of a run, the table and the governors' HTML, and the timetable."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mitmproxy import connection, http
from mitmproxy.addonmanager import safecall
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.http import HttpConnectHook, HttpRequestHeadersHook, HttpRequestHook
from mitmproxy.test import taddons, tflow
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sample_school import REPO, replace_once
from schoolgate.check import run as check_run
from schoolgate.check.answers import (
    CHECK_HEADER,
    Observation,
    answer_headers,
    observation_from,
    parse_check_header,
)
from schoolgate.check.judging import Result, evaluate
from schoolgate.check.run import CheckRun, format_table, run_check
from schoolgate.check.suite import FAIL, PASS, SKIP, WARN, Canary, build_suite
from schoolgate.check.summary import render_summary, write_summary
from schoolgate.check.timetable import next_run
from schoolgate.classify.illegal import IllegalLists
from schoolgate.config.loader import load_config
from schoolgate.config.model import ConfigError
from schoolgate.config.times import parse_run_time
from schoolgate.gateway.addons import decision_of
from schoolgate.gateway.addons.check import CheckMode
from schoolgate.gateway.bootstrap import ordered
from schoolgate.gateway.rules import build_rules
from schoolgate.gateway.service import Gateway
from schoolgate.policy import ALLOW, BLOCK, Verdict
from schoolgate.sources.illegal import sources_for
from schoolgate.store.checks import latest_run, record_run

ILLEGAL = REPO / "categories" / "illegal"

SCHOOL = f"""\
school:
  name: Check <Academy>
  timezone: Europe/London
listen: {{host: 127.0.0.1, port: 0}}
metrics: {{host: 127.0.0.1, port: 0}}
data_dir: data
illegal_lists:
  iwf: {{kind: iwf, source: {ILLEGAL / "iwf-test.txt"}, form: plain}}
  ctiru: {{kind: ctiru, source: {ILLEGAL / "ctiru-test.sha256"}, form: sha256}}
categories:
  gambling: {{title: Gambling, lists: [lists/gambling]}}
  games: {{title: Online games, lists: [lists/games]}}
  education: {{title: Education, lists: [lists/education]}}
  vpn: {{title: VPNs, lists: [lists/vpn]}}
schedules:
  school_day: {{title: the school day, windows: ["Mon-Fri 08:30-15:30"]}}
circumvention:
  categories: [vpn]
groups:
  pupils:
    title: Pupils <KS3>
    subnets: [10.20.0.0/16]
    blocked_categories: [gambling]
    blocked_during: {{school_day: [games]}}
    allow:
      - {{target: first-bet.test, reason: a deliberate exception}}
  infants:
    title: Infants
    subnets: [10.10.0.0/16]
    walled_garden: true
    allowed_categories: [education]
    blocked_categories: [gambling]
  byod:
    title: Own devices
    subnets: [172.17.0.0/16]
    https: sni-only
    blocked_categories: [gambling]
  staff:
    title: Staff
    subnets: [10.30.0.0/16]
    blocked_categories: []
    safe_search: "off"
    youtube: moderate
    circumvention: log
default_group: pupils
"""
LISTS = {
    # The first gambling entry is allowed for pupils by their own entry: their canary is the next.
    "gambling": "# gambling\n192.0.2.7\nfirst-bet.test\nbet365.com\n",
    "games": "roblox.com\n",
    # Also a game: no group blocking games may be given it as its education page.
    "education": "roblox.com\nthenational.academy\n",
    "vpn": "nordvpn.com\n",
}
MONDAY_10AM = datetime(2026, 11, 23, 10, 0, tzinfo=UTC).timestamp()
SUNDAY = datetime(2026, 11, 22, 10, 0, tzinfo=UTC).timestamp()


def school_rules(make_config, text: str = SCHOOL, lists: dict | None = None):
    config = make_config(text, LISTS if lists is None else lists)
    sources = sources_for(config)
    for source in sources:
        assert source.refresh()
    return config, build_rules(config, IllegalLists([s.list for s in sources]))


@pytest.fixture
def school(make_config):
    return school_rules(make_config)


def rows(suite, group):
    return {(c.kind, c.target or c.name): c for c in suite if c.group == group}


# ---------------------------------------------------------------------------------------------
# The suite


def test_illegal_canaries_are_the_shipped_test_entries_the_lists_really_hold(school):
    config, rules = school
    suite = rows(build_suite(config, rules.classifier, rules.policy, now=MONDAY_10AM), "pupils")
    iwf, ctiru = suite[("illegal", "iwf")], suite[("illegal", "ctiru")]
    # Decrypted groups get the page entries: they prove URL-level matching through TLS.
    assert iwf.url == "https://iwf-test.example.org/gallery/test-image-1.jpg"
    assert ctiru.url == "https://ctiru-test.example.net/videos/test-video.html"
    assert (iwf.expected, ctiru.expected) == (
        "block: illegal list iwf", "block: illegal list ctiru")
    # Never more than the host is shown.
    assert (iwf.shown, ctiru.shown) == ("iwf-test.example.org", "ctiru-test.example.net")


def test_sni_only_groups_get_a_domain_entry_they_can_decide_by_host_name(school):
    config, rules = school
    suite = rows(build_suite(config, rules.classifier, rules.policy, now=MONDAY_10AM), "byod")
    assert suite[("illegal", "iwf")].url == "https://iwf-test-domain.example.net/"
    assert suite[("illegal", "ctiru")].url == "https://ctiru-test.example.com/"


def test_a_list_without_a_test_address_is_a_warning_naming_the_key(make_config, tmp_path):
    real = tmp_path / "real-iwf.txt"
    real.write_text("some-real-entry.test/page\n", encoding="utf-8")
    text = replace_once(SCHOOL, str(ILLEGAL / "iwf-test.txt"), str(real))
    config, rules = school_rules(make_config, text)
    canary = rows(build_suite(config, rules.classifier, rules.policy), "pupils")[("illegal", "iwf")]
    assert (canary.url, canary.preset) == (None, WARN)
    assert "check.canaries.illegal.iwf" in canary.note
    assert evaluate(canary, None).status == WARN


def test_configured_canaries_replace_the_defaults(make_config):
    text = SCHOOL + """\
check:
  canaries:
    illegal: {iwf: "https://provider-test.example/check"}
    categories: {gambling: "https://casino.example/"}
    education: "https://www.bbc.co.uk/bitesize"
    outside_garden: "http://not-here.example/"
"""
    config, rules = school_rules(make_config, text)
    suite = build_suite(config, rules.classifier, rules.policy, now=MONDAY_10AM)
    pupils, infants = rows(suite, "pupils"), rows(suite, "infants")
    assert pupils[("illegal", "iwf")].url == "https://provider-test.example/check"
    assert pupils[("category", "gambling")].url == "https://casino.example/"
    assert pupils[("education", "Education site")].url == "https://www.bbc.co.uk/bitesize"
    assert infants[("walled-garden", "Outside the walled garden")].url == "http://not-here.example/"


def test_category_canaries_come_from_the_lists_skipping_what_the_group_decides_itself(school):
    config, rules = school
    suite = build_suite(config, rules.classifier, rules.policy, now=MONDAY_10AM)
    # An IP address is no canary; pupils allow first-bet.test themselves.
    assert rows(suite, "pupils")[("category", "gambling")].url == "https://bet365.com/"
    assert rows(suite, "infants")[("category", "gambling")].url == "https://first-bet.test/"


@pytest.mark.parametrize(
    ("now", "preset", "note"),
    [
        # In the school day the scheduled block is in force, and tested.
        (MONDAY_10AM, None, "blocked during the school day"),
        # At the weekend it does not apply: skipped, never expected to be allowed.
        (SUNDAY, SKIP, "blocked only during the school day: not in force now"),
    ],
)
def test_scheduled_categories_are_tested_only_while_in_force(school, now, preset, note):
    config, rules = school
    games = rows(build_suite(config, rules.classifier, rules.policy, now=now), "pupils")[
        ("category", "games")]
    assert (games.url, games.preset, games.note) == ("https://roblox.com/", preset, note)


def test_education_page_is_one_the_group_does_not_block(school):
    config, rules = school
    suite = build_suite(config, rules.classifier, rules.policy, now=MONDAY_10AM)
    # roblox.com is also a game: blocked for pupils in the school day, so theirs is the next.
    assert rows(suite, "pupils")[("education", "Education site")].url == \
        "https://thenational.academy/"
    assert rows(suite, "staff")[("education", "Education site")].url == "https://roblox.com/"


def test_group_shapes_decide_which_tests_exist(school):
    config, rules = school
    suite = build_suite(config, rules.classifier, rules.policy, now=MONDAY_10AM)
    infants, staff, pupils = rows(suite, "infants"), rows(suite, "staff"), rows(suite, "pupils")
    assert ("walled-garden", "Outside the walled garden") in infants
    assert not any(k == "walled-garden" for k, _ in pupils)
    # Circumvention: a VPN site and a DNS-over-HTTPS query for blocking groups ...
    assert pupils[("circumvention", "vpn")].url == "https://nordvpn.com/"
    assert pupils[("doh", "DNS-over-HTTPS")].expected == "block"
    # ... one skipped row for a group that only logs it.
    (circ,) = [c for (k, _), c in staff.items() if k == "circumvention"]
    assert circ.preset == SKIP and "circumvention: log" in circ.note
    # Safe search off: the person's own setting must survive, and engines are not blocked.
    assert staff[("safe-search", "google")].expected == "safe=off kept (off for this group)"
    assert staff[("safe-search", "youtube")].expected == "YouTube-Restrict: Moderate"
    assert staff[("unsafe-engine", "Search engine without safe mode")].preset == SKIP
    assert pupils[("safe-search", "bing")].expected == "adlt=strict"
    assert pupils[("unsafe-engine", "ecosia.org")].url == "https://ecosia.org/search?q=schoolgate+check"


def test_groups_can_be_chosen(school):
    config, rules = school
    suite = build_suite(config, rules.classifier, rules.policy, groups=["byod"])
    assert {c.group for c in suite} == {"byod"}


def test_no_illegal_lists_is_a_warning_for_every_group(make_config):
    text = SCHOOL.split("illegal_lists:")[0] + "categories:" + SCHOOL.split("categories:", 1)[1]
    config = make_config(text, LISTS)
    rules = build_rules(config, IllegalLists())
    suite = build_suite(config, rules.classifier, rules.policy)
    warnings = [c for c in suite if c.kind == "illegal"]
    assert len(warnings) == len(config.groups) and all(c.preset == WARN for c in warnings)


# ---------------------------------------------------------------------------------------------
# Judging answers

def canary(kind: str, **kw) -> Canary:
    defaults = {"group": "pupils", "name": kind, "url": "https://x.test/", "expected": "block"}
    return Canary(kind=kind, **{**defaults, **kw})


@pytest.mark.parametrize(
    ("c", "seen", "status"),
    [
        # Illegal lists: blocked, and by that very list.
        (canary("illegal", target="iwf"), Observation("block", illegal_list="iwf",
                                                        reason="illegal:iwf"), PASS),
        (canary("illegal", target="iwf"), Observation("block", reason="category",
                                                        category="adult"), FAIL),
        (canary("illegal", target="iwf"), Observation("allow"), FAIL),
        # Blocked categories, circumvention, walled gardens: any block passes.
        (canary("category", target="gambling"), Observation("block", reason="category"), PASS),
        (canary("category", target="gambling"), Observation("block", reason="override"), PASS),
        (canary("category", target="gambling"), Observation("allow"), FAIL),
        (canary("walled-garden"), Observation("allow"), FAIL),
        (canary("doh"), Observation("block", reason="circumvention:doh"), PASS),
        # DoH passed through undecrypted: its shape cannot be seen, a warning, not a pass.
        (canary("doh"), Observation("allow", stage="tls", reason="tls:passthrough"), WARN),
        (canary("circumvention"), Observation("allow", stage="tls"), FAIL),
        # Education must stay open, whether decrypted or passed through.
        (canary("education", expected="allow"), Observation("allow"), PASS),
        (canary("education", expected="allow"), Observation("allow", stage="tls"), PASS),
        (canary("education", expected="allow"), Observation("block", reason="category"), FAIL),
        # A filtering error or no check answer at all is a failure, never a pass.
        (canary("category"), Observation("error", reason="filtering-error:classify"), FAIL),
        (canary("education"), Observation(None, error="timed out"), FAIL),
        # Not sent at all.
        (canary("category", url=None, preset=SKIP, note="n/a"), None, SKIP),
    ],
)
def test_evaluate(c, seen, status):
    assert evaluate(c, seen).status == status


def search(engine: str, level: str) -> Canary:
    return canary("safe-search", target=engine, level=level, expected="")


@pytest.mark.parametrize(
    ("c", "seen", "status"),
    [
        # Locked at the group's level, whatever the person sent; exactly once.
        (search("google", "strict"), Observation("allow", path="/search?q=a&safe=active"), PASS),
        (search("google", "strict"), Observation("allow", path="/search?q=a&safe=off"), FAIL),
        (search("google", "strict"),
         Observation("allow", path="/search?q=a&safe=off&safe=active"), FAIL),
        (search("google", "moderate"), Observation("allow", path="/search?safe=active"), PASS),
        (search("bing", "moderate"), Observation("allow", path="/search?adlt=moderate"), PASS),
        (search("bing", "strict"), Observation("allow", path="/search?adlt=moderate"), FAIL),
        (search("duckduckgo", "strict"), Observation("allow", path="/?q=a&kp=1"), PASS),
        # Safe search off for the group: the person's own setting is kept.
        (search("google", "off"), Observation("allow", path="/search?q=a&safe=off"), PASS),
        (search("google", "off"), Observation("allow", path="/search?q=a&safe=active"), FAIL),
        # YouTube: the header, exactly; none when off.
        (search("youtube", "strict"),
         Observation("allow", headers=(("YouTube-Restrict", "Strict"),)), PASS),
        (search("youtube", "strict"),
         Observation("allow", headers=(("YouTube-Restrict", "Moderate"),)), FAIL),
        (search("youtube", "strict"), Observation("allow"), FAIL),
        (search("youtube", "off"), Observation("allow"), PASS),
        # Blocked outright is stricter than safe search; passed through is a warning (DNS).
        (search("google", "strict"), Observation("block", reason="walled-garden"), PASS),
        (search("google", "strict"), Observation("allow", stage="tls"), WARN),
    ],
)
def test_evaluate_safe_search(c, seen, status):
    assert evaluate(c, seen).status == status


# ---------------------------------------------------------------------------------------------
# The wire


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("abc group=ks3", ("abc", "ks3")),
        ("  abc   group=ks3 ", ("abc", "ks3")),
        ("abc", None),
        ("abc group=", None),
        ("abc ks3", None),
        ("abc group=ks3 extra", None),
        ("", None),
    ],
)
def test_parse_check_header(value, parsed):
    got = parse_check_header(value)
    assert (None if got is None else (got.token, got.group)) == parsed


def test_answer_headers_round_trip_and_never_carry_an_illegal_path():
    verdict = Verdict(action=ALLOW, group="staff", reference="AAAAA-BBBBB",
                      rule="group staff allows café (local override: “reason”)", reason="override")
    headers = answer_headers(verdict, "request", path="/search?q=a%20b&safe=active",
                             set_headers=[("YouTube-Restrict", "Moderate")])
    assert all(v.isascii() for v in headers.values())
    seen = observation_from(200, headers, "request")
    assert (seen.action, seen.rule, seen.path, seen.headers) == (
        ALLOW, verdict.rule, "/search?q=a%20b&safe=active", (("YouTube-Restrict", "Moderate"),))
    illegal = Verdict(action=BLOCK, group="staff", reference="R", reason="illegal:iwf",
                      illegal_list="iwf", rule="illegal-content list iwf")
    headers = answer_headers(illegal, "request", path="/gallery/secret.jpg")
    assert "X-Schoolgate-Check-Path" not in headers
    assert observation_from(403, headers, "request").illegal_list == "iwf"


def test_an_answer_without_a_verdict_is_an_error():
    seen = observation_from(502, {}, "request")
    assert seen.action is None and "502" in seen.error


# ---------------------------------------------------------------------------------------------
# Config


def test_check_section_is_read(make_config):
    config = make_config(SCHOOL + """\
check:
  schedule: ["Mon 07:00", "weekdays 12:30"]
  canaries:
    illegal: {iwf: ["https://a.example/x", "https://b.example/"]}
    education: https://edu.example/
""", LISTS)
    s = config.check
    assert [(sorted(t.days), t.at.isoformat(timespec="minutes")) for t in s.schedule] == [
        ([0], "07:00"), ([0, 1, 2, 3, 4], "12:30")]
    assert s.illegal == {"iwf": ("https://a.example/x", "https://b.example/")}
    assert s.education == "https://edu.example/"
    # A single time may be written without the list.
    assert make_config(SCHOOL + 'check: {schedule: "daily 06:00"}\n', LISTS).check.schedule[
        0].days == frozenset(range(7))


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ('check: {schedule: ["Mon 7am"]}', "check.schedule[0]", "is not DAYS HH:MM"),
        ('check: {schedule: ["Someday 07:00"]}', "check.schedule[0]", "is not a day"),
        ("check: {canaries: {illegal: {nope: [https://x.example/]}}}",
         "check.canaries.illegal.nope",
         "no illegal list 'nope'"),
        ("check: {canaries: {categories: {gamblng: https://x.example/}}}",
         "check.canaries.categories.gamblng", "unknown category 'gamblng'"),
        ("check: {canaries: {education: ftp://x.example/}}", "check.canaries.education",
         "is not an http:// or https:// URL"),
        ("check: {canaries: {educaton: https://x.example/}}", "check.canaries.educaton",
         "did you mean 'education'?"),
    ],
)
def test_check_section_mistakes_name_file_line_and_key(write_config, section, key, message):
    path = write_config(SCHOOL + section + "\n", LISTS)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    (problem,) = e.value.problems
    line = SCHOOL.count("\n") + 1
    assert problem.startswith(f"{path}:{line}: {key}: "), problem
    assert message in problem


@pytest.mark.parametrize(
    ("text", "days", "at"),
    [("Mon 07:00", {0}, "07:00"), ("Mon-Fri 6:45", set(range(5)), "06:45"),
     ("weekends 23:59", {5, 6}, "23:59")],
)
def test_parse_run_time(text, days, at):
    t = parse_run_time(text)
    assert (set(t.days), t.at.isoformat(timespec="minutes"), t.text) == (days, at, text)


def test_next_run_is_in_school_time():
    times = (parse_run_time("Mon 07:00"), parse_run_time("Wed 07:00"))
    # Sunday 22 November 2026 (GMT): next Monday 07:00 GMT.
    after = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert next_run(after, times, "Europe/London") == datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    # Monday 1 June 2026 at 06:30 BST: the same day, 07:00 BST = 06:00 UTC.
    after = datetime(2026, 6, 1, 5, 30, tzinfo=UTC)
    assert next_run(after, times, "Europe/London") == datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
    # Just after Monday's run: Wednesday's.
    after = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
    assert next_run(after, times, "Europe/London") == datetime(2026, 6, 3, 6, 0, tzinfo=UTC)
    assert next_run(after, (), "Europe/London") is None


# ---------------------------------------------------------------------------------------------
# The addons: check mode over test flows


class Proxy:
    """The real addons in their order, each hook through mitmproxy's `safecall`."""

    def __init__(self, gateway: Gateway, tctx, addons: list):
        self.gateway, self.tctx, self.addons = gateway, tctx, addons
        self.mode: CheckMode = addons[0]

    def hook(self, hook, flow):
        for addon in self.addons:
            with safecall():
                self.tctx.master.addons.invoke_addon_sync(addon, hook(flow))
        return flow

    def browse(self, flow: http.HTTPFlow) -> http.HTTPFlow:
        self.hook(HttpRequestHeadersHook, flow)
        return self.hook(HttpRequestHook, flow)


@pytest.fixture
def proxy(make_config) -> Iterator[Proxy]:
    config = make_config(SCHOOL, LISTS)
    gateway = Gateway(config, registry=CollectorRegistry())
    gateway.load_illegal_lists()
    addons = ordered(gateway)
    assert isinstance(addons[0], CheckMode), "check mode must run before anything reads the request"
    with taddons.context(*addons) as tctx:
        yield Proxy(gateway, tctx, addons)


def flow_to(url: str, header: str | None = None, client: str = "10.20.1.2") -> http.HTTPFlow:
    f = tflow.tflow()
    f.request.url = url
    f.client_conn.peername = (client, 50123)
    if header is not None:
        f.request.headers[CHECK_HEADER] = header
    return f


def check_connections(gateway: Gateway) -> list:
    """The client connections the gateway treats as `schoolgate check` connections."""
    return [state for state in gateway.clients.values() if state.check is not None]


def sample(gateway: Gateway, name: str, **labels) -> float:
    text = generate_latest(gateway.metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    raise AssertionError(f"no {name}{labels}")


def test_an_allowed_check_request_is_answered_by_the_gateway_with_its_verdict(proxy):
    # Staff (by header) from a pupil's address: the header decides the group.
    f = proxy.browse(flow_to("http://www.bing.com/search?q=a&adlt=off",
                             f"{proxy.mode.token} group=staff"))
    assert CHECK_HEADER not in f.request.headers
    assert decision_of(f).identity.group == "staff" and decision_of(f).identity.source == "check"
    r = f.response
    assert r is not None and r.status_code == 200
    assert b"nothing was fetched" in r.content
    seen = observation_from(r.status_code, r.headers, "request")
    assert (seen.action, seen.path) == (ALLOW, "/search?q=a&adlt=off")  # staff: safe search off
    # Not browsing: never an event, never in schoolgate_requests_total; counted as a check.
    assert proxy.gateway.writer.depth == 0
    assert sample(proxy.gateway, "schoolgate_requests_total", action="allow", category="none",
                  group="staff") == 0
    assert sample(proxy.gateway, "schoolgate_filter_check_requests_total", action="allow") == 1


def test_a_blocked_check_request_gets_the_block_page_with_the_verdict(proxy):
    f = proxy.browse(flow_to("http://bet365.com/", f"{proxy.mode.token} group=pupils"))
    assert f.response.status_code == 403
    assert b"blocked" in f.response.content
    seen = observation_from(403, f.response.headers, "request")
    assert (seen.action, seen.reason, seen.category) == (BLOCK, "category", "gambling")
    assert f.response.headers["X-Schoolgate-Check-Group"] == "pupils"
    assert proxy.gateway.writer.depth == 0


def test_safe_search_rewrite_is_reported(proxy):
    token = proxy.mode.token
    f = proxy.browse(flow_to("http://www.google.com/search?q=x&safe=off", f"{token} group=pupils"))
    assert observation_from(200, f.response.headers, "request").path == "/search?q=x&safe=active"
    f = proxy.browse(flow_to("http://www.youtube.com/results?search_query=x",
                             f"{token} group=staff"))
    assert observation_from(200, f.response.headers, "request").headers == (
        ("YouTube-Restrict", "Moderate"),)


def test_an_illegal_check_is_blocked_and_never_recorded_or_alerted(proxy):
    f = proxy.browse(flow_to("http://iwf-test.example.org/gallery/test-image-1.jpg",
                             f"{proxy.mode.token} group=staff"))
    seen = observation_from(f.response.status_code, f.response.headers, "request")
    assert (seen.action, seen.illegal_list, seen.path) == (BLOCK, "iwf", "")
    assert proxy.gateway.writer.depth == 0


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("wrong-token group=staff", 403),
        ("group=staff", 403),
        ("", 403),
        ("t\udcff group=staff", 403),  # a byte that is not UTF-8, as mitmproxy decodes it
    ],
)
def test_a_wrong_token_is_refused_without_check_mode(proxy, header, status):
    f = proxy.browse(flow_to("http://thenational.academy/", header))
    assert f.response.status_code == status
    assert CHECK_HEADER not in f.request.headers
    assert decision_of(f) is None or (decision_of(f).check is None
                                       and decision_of(f).verdict is None)
    assert not check_connections(proxy.gateway)
    assert sample(proxy.gateway, "schoolgate_filter_check_requests_total", action="refused") == 1


def test_the_token_for_an_unknown_group_is_refused(proxy):
    f = proxy.browse(flow_to("http://thenational.academy/", f"{proxy.mode.token} group=nobody"))
    assert f.response.status_code == 400 and not check_connections(proxy.gateway)


def test_a_header_given_twice_is_refused(proxy):
    f = flow_to("http://thenational.academy/")
    f.request.headers.add(CHECK_HEADER, f"{proxy.mode.token} group=staff")
    f.request.headers.add(CHECK_HEADER, f"{proxy.mode.token} group=pupils")
    proxy.browse(f)
    assert f.response.status_code == 403 and CHECK_HEADER not in f.request.headers


def test_real_traffic_is_untouched_and_a_check_connection_never_reaches_a_server(proxy):
    pupil = proxy.browse(flow_to("http://thenational.academy/"))
    assert pupil.response is None and decision_of(pupil).identity.source != "check"
    assert proxy.gateway.writer.depth == 1  # an event, as for any browsing
    checked = flow_to("http://thenational.academy/", f"{proxy.mode.token} group=pupils")
    proxy.browse(checked)
    for flow, refused in ((checked, True), (pupil, False)):
        data = server_hooks.ServerConnectionHookData(
            server=connection.Server(address=("thenational.academy", 80)), client=flow.client_conn)
        proxy.mode.server_connect(data)
        assert (data.server.error is not None) == refused


def test_the_connect_of_a_check_opens_check_mode_for_the_tunnel(proxy):
    connect = flow_to("https://bet365.com/", f"{proxy.mode.token} group=byod")
    connect.request.method = "CONNECT"
    connect.request.host, connect.request.port = "bet365.com", 443
    proxy.hook(HttpConnectHook, connect)
    assert CHECK_HEADER not in connect.request.headers
    # byod is SNI-only: the CONNECT itself is the decision, refused with the check's verdict.
    seen = observation_from(connect.response.status_code, connect.response.headers, "connect")
    assert (connect.response.status_code, seen.action, seen.stage, seen.category) == (
        403, BLOCK, "connect", "gambling")
    # A request inside the same connection needs no header: the connection is a check's.
    inside = tflow.tflow()
    inside.client_conn = connect.client_conn
    inside.request.url = "https://thenational.academy/"
    proxy.browse(inside)
    assert inside.response.status_code == 200 and decision_of(inside).identity.group == "byod"
    assert proxy.gateway.writer.depth == 0


@pytest.mark.asyncio
async def test_the_token_file_is_private_and_removed_at_shutdown(make_config):
    config = make_config(SCHOOL, LISTS)
    mode = CheckMode(Gateway(config, registry=CollectorRegistry()))
    path = config.data_dir / "check-token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("old\n")
    path.chmod(0o644)
    mode.running()
    assert path.read_text().strip() == mode.token and len(mode.token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await mode.done()
    assert not path.exists()


# ---------------------------------------------------------------------------------------------
# A run: recorded, measured, printed, summarised


def fake_gateway(answers: dict[str, Observation]):
    """A `send` that answers from `answers` by URL prefix, allowing anything else."""

    def send(address, token, group, url, ca_file, timeout):
        for prefix, seen in answers.items():
            if url.startswith(prefix):
                return seen
        return Observation("allow", path="/search?q=schoolgate+check&safe=active&adlt=strict&kp=1",
                           headers=(("YouTube-Restrict", "Strict"),))

    return send


def test_run_record_metric_table_and_summary(school, tmp_path):
    config, rules = school
    answers = {
        "https://iwf-test": Observation("block", illegal_list="iwf", reason="illegal:iwf"),
        "https://ctiru-test": Observation("block", illegal_list="ctiru", reason="illegal:ctiru"),
        # A gambling site let through: the failure the check exists to catch.
        "https://bet365.com/": Observation("allow"),
    }
    run = run_check(config, rules, ("127.0.0.1", 9), "t", groups=["pupils"], now=MONDAY_10AM,
                    send=fake_gateway(answers))
    assert not run.passed and run.count(FAIL) >= 1
    failed = [r for r in run.results if r.status == FAIL]
    assert ("pupils", "Gambling", "allow") in {
        (r.canary.group, r.canary.name, r.got) for r in failed}

    table = format_table(run)
    assert table.isascii()
    assert "FAIL    pupils  Gambling" in table
    assert table.splitlines()[-1].startswith("FAILED:")

    db = config.database_path
    assert latest_run(db) is None
    run_id = record_run(db, run)
    summary = latest_run(db)
    assert (summary.id, summary.failed, summary.passed) == (
        run_id, run.count(FAIL), run.count(PASS))
    assert abs(summary.ts - run.ts) < 0.001
    conn = sqlite3.connect(db)
    (detail,) = conn.execute("SELECT detail FROM check_runs").fetchone()
    conn.close()
    detail = json.loads(detail)
    # Illegal-list test addresses are kept as their host only.
    assert "test-image-1.jpg" not in json.dumps(detail)
    assert detail["failed"] == run.count(FAIL) and len(detail["results"]) == len(run.results)

    # The gateway's metrics read the last run at scrape time.
    gateway = Gateway(config, registry=CollectorRegistry())
    assert sample(gateway, "schoolgate_filter_check_failures") == run.count(FAIL)
    assert sample(gateway, "schoolgate_filter_check_last_run_timestamp_seconds") == \
        pytest.approx(run.ts, abs=0.001)

    path = write_summary(config, run, tmp_path / "out" / "check.html")
    html = path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Escaped, self-contained, with the verdict in words.
    assert "Check &lt;Academy&gt;" in html and "Pupils &lt;KS3&gt;" in html
    assert "<Academy>" not in html and "<script" not in html and "http-equiv" in html
    assert run.verdict.split(":")[0] in html and "What each test proves" in html
    assert "iwf-test.example.org" in html and "test-image-1.jpg" not in html


def test_the_metrics_say_never_before_a_first_run(make_config):
    gateway = Gateway(make_config(SCHOOL, LISTS), registry=CollectorRegistry())
    assert sample(gateway, "schoolgate_filter_check_last_run_timestamp_seconds") == 0
    assert sample(gateway, "schoolgate_filter_check_failures") == 0


def test_a_passing_run_says_so_in_plain_english(school):
    config, rules = school
    run = CheckRun(MONDAY_10AM, "S", "Europe/London", "127.0.0.1:1", "command", ("pupils",),
                   (Result(canary("category"), PASS, "block"),
                    Result(canary("illegal", url=None, preset=WARN), WARN, "not checked", "why")))
    assert run.passed
    assert run.verdict.startswith("PASSED: the 1 test across 1 group got the answer")
    assert "1 could not be checked" in run.verdict
    html = render_summary(run, {"pupils": "Pupils"})
    assert "could not be checked" in html


def test_the_timetable_runs_the_check_when_due(proxy, monkeypatch, caplog):
    mode = proxy.mode
    due = [datetime.now(UTC)]
    monkeypatch.setattr("schoolgate.gateway.addons.check.next_run",
                        lambda after, times, tz: due.pop() if due else None)
    monkeypatch.setattr(mode, "listen_address", lambda: ("127.0.0.1", 9))
    sent = []

    def send(address, token, group, url, ca_file, timeout):
        sent.append((address, token, group))
        return Observation("block", illegal_list="iwf", reason="illegal:iwf")

    monkeypatch.setattr(check_run, "probe", send)

    async def main():
        task = asyncio.create_task(mode._scheduled_checks())
        for _ in range(500):
            if latest_run(proxy.gateway.config.database_path) is not None:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.INFO, logger="schoolgate.check"):
        asyncio.run(main())
    run = latest_run(proxy.gateway.config.database_path)
    assert run is not None and run.failed > 0  # every canary "blocked": education fails
    assert sent and {s[:2] for s in sent} == {(("127.0.0.1", 9), mode.token)}
    assert any("filter check 1 (schedule): FAILED" in r.message for r in caplog.records)
    reports = Path(proxy.gateway.config.data_dir / "reports")
    assert [p.name.startswith("filter-check-") for p in reports.iterdir()] == [True]


# ---------------------------------------------------------------------------------------------
# Layers (DESIGN.md): check sits above the store and below the gateway and the CLI


def _imports(package: Path, dotted: str) -> set[tuple[str, str]]:
    """(module file, absolute module imported) for every import in `package`'s modules."""
    found = set()
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {(module.name, a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = dotted.split(".")[: len(dotted.split(".")) - node.level + 1] if node.level \
                    else []
                target = ".".join(base + ([node.module] if node.module else []))
                found.add((module.name, target))
                found |= {(module.name, f"{target}.{a.name}") for a in node.names}
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("check", ("schoolgate.gateway", "schoolgate.cli")),
        ("store", ("schoolgate.check", "schoolgate.alerts", "schoolgate.reports",
                   "schoolgate.gateway", "schoolgate.cli")),
    ],
)
def test_a_layer_imports_nothing_above_it(package, forbidden):
    folder = Path(check_run.__file__).parent.parent / package
    wrong = sorted((f, m) for f, m in _imports(folder, f"schoolgate.{package}")
                   if m.startswith(forbidden))
    assert wrong == []
