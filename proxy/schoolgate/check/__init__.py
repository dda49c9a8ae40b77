"""`schoolgate check`: prove, group by group, that the running gateway filters as configured (the
illegal lists' test addresses, a known site of each blocked category, safe search, an education
page that must stay open), like SWGfL's Test Filtering but without fetching anything from the web.

Each canary is a real proxy request to the gateway's own listen address carrying the check header
(the token the gateway writes to `<data_dir>/check-token`, and the group to decide as). The gateway
decides it through its real pipeline and answers every one itself (`schoolgate.addons.check`):
nothing is sent to a website. Building the suite and judging the answers is pure code; `probe` is
the only part that touches the network, and `record_run` / `write_summary` the only disk writes.
"""

from __future__ import annotations

import functools
import http.client
import json
import re
import socket
import sqlite3
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from zoneinfo import ZoneInfo

from ..config.model import CheckSettings, Config, RunTime

__all__ = [
    "ADDRESS_FILE",
    "CHECK_HEADER",
    "TOKEN_FILE",
    "Canary",
    "CheckRun",
    "CheckSettings",
    "Observation",
    "Result",
    "RunTime",
    "build_suite",
    "evaluate",
    "format_table",
    "latest_run",
    "next_run",
    "parse_check_header",
    "parse_run_time",
    "probe",
    "record_run",
    "run_check",
    "write_summary",
]

CHECK_HEADER = "X-Schoolgate-Check"
"""Sent by the check client: `<token> group=<group>`. Always taken off the request by the gateway."""
ANSWER = "X-Schoolgate-Check-"
"""Prefix of the headers the gateway puts on its answer to a check request (see `answer_headers`)."""
TOKEN_FILE = "check-token"
"""In the data directory, mode 0600: whoever can read it can run checks."""
ADDRESS_FILE = "listen-address"
"""In the data directory: `HOST:PORT` the running gateway listens on (written once it does)."""

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
"""A result: as expected; not as expected; could not be checked (not configured, or not
enforceable this way: a warning, never a pass); not applicable now (a schedule not in force)."""

# The kinds of test, in the order they run and are shown.
ILLEGAL = "illegal"
CATEGORY = "category"
CIRCUMVENTION = "circumvention"
DOH = "doh"
SAFE_SEARCH = "safe-search"
UNSAFE_ENGINE = "unsafe-engine"
EDUCATION = "education"
WALLED_GARDEN = "walled-garden"

PROVES = {
    ILLEGAL: "Pages on the IWF list (child sexual abuse imagery) and the police CTIRU list "
    "(unlawful terrorist content) are blocked for everyone. Tested with the lists' own test "
    "addresses, which contain nothing illegal.",
    CATEGORY: "A known site in each category this group blocks is blocked (for a category blocked "
    "only at certain times, while that time is in force).",
    CIRCUMVENTION: "Tools for getting round the filter (VPNs, web proxies) are blocked.",
    DOH: "Encrypted DNS (DNS-over-HTTPS), which would let a device look up blocked sites "
    "unseen, is blocked.",
    SAFE_SEARCH: "Google, Bing and DuckDuckGo searches are forced into safe mode even when the "
    "person turns it off, and YouTube into Restricted Mode.",
    UNSAFE_ENGINE: "Search engines whose safe mode cannot be locked are blocked.",
    EDUCATION: "An education site stays open: the filter does not over-block teaching.",
    WALLED_GARDEN: "In a walled garden, a site outside the open categories is blocked.",
}

KIND_TITLES = {
    ILLEGAL: "Illegal-content lists",
    CATEGORY: "Blocked categories",
    CIRCUMVENTION: "Filter-bypass tools",
    DOH: "DNS-over-HTTPS",
    SAFE_SEARCH: "Safe search",
    UNSAFE_ENGINE: "Search engines without safe mode",
    EDUCATION: "Education sites",
    WALLED_GARDEN: "Walled garden",
}

TEST_LIST_CANARIES: tuple[tuple[str, bool], ...] = (
    # The made-up entries of the shipped test lists (categories/illegal/README.md): used for a
    # configured list only when that list really holds them. (URL, is it a domain entry?)
    ("https://iwf-test.example.org/gallery/test-image-1.jpg", False),
    ("https://iwf-test-domain.example.net/", True),
    ("https://ctiru-test.example.net/videos/test-video.html", False),
    ("https://ctiru-test.example.com/", True),
)

OUTSIDE_GARDEN = "https://uncategorised.schoolgate-check.example/"
"""Default canary for walled gardens: a reserved name on no list."""
DOH_CANARY = "https://doh.schoolgate-check.example/resolve?name=example.com&type=A"
"""A DNS-over-HTTPS JSON query on a host no list names: caught by its shape alone."""
SEARCHES: tuple[tuple[str, str], ...] = (
    ("google", "https://www.google.com/search?q=schoolgate+check&safe=off"),
    ("bing", "https://www.bing.com/search?q=schoolgate+check&adlt=off"),
    ("duckduckgo", "https://duckduckgo.com/?q=schoolgate+check&kp=-2"),
    ("youtube", "https://www.youtube.com/results?search_query=schoolgate+check"),
)
_LOCKED = {  # engine -> level -> the parameter the rewritten query must carry
    "google": {"strict": "safe=active", "moderate": "safe=active"},
    "bing": {"strict": "adlt=strict", "moderate": "adlt=moderate"},
    "duckduckgo": {"strict": "kp=1", "moderate": "kp=-1"},
}
_SENT = {"google": "safe=off", "bing": "adlt=off", "duckduckgo": "kp=-2"}
_YOUTUBE = {"strict": "Strict", "moderate": "Moderate"}
_TITLES = {"google": "Google", "bing": "Bing", "duckduckgo": "DuckDuckGo", "youtube": "YouTube"}


# ---------------------------------------------------------------------------------------------
# Settings (the config's `check` section)


# ---------------------------------------------------------------------------------------------
# The suite


@dataclass(frozen=True, slots=True)
class Canary:
    """One test for one group: what to ask the gateway, and what it must answer."""

    group: str
    kind: str
    """One of the kinds above (`illegal`, `category`, `safe-search`, ...)."""
    name: str
    """What is tested, in words: `IWF list (iwf)`, `Gambling`, `Google safe search`."""
    url: str | None
    """What to request; None when nothing can be sent (`preset` says why)."""
    expected: str
    """What must happen, in words, as the table shows it."""
    shown: str = ""
    """The address as printed and stored: host only for an illegal-list test."""
    target: str | None = None
    """The illegal list, category or search engine under test."""
    level: str | None = None
    """For safe search: the group's level (`strict`, `moderate`, `off`)."""
    preset: str | None = None
    """`warn` or `skip` when nothing is sent; `note` says why."""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """What the gateway said about one canary (from its check headers)."""

    action: str | None
    """`allow`, `block` or `error`; None when the answer was not a check answer (`error` says)."""
    stage: str = "request"
    """Where it was decided: `request` (the URL), `connect` (the CONNECT, by host name) or `tls`
    (the handshake, by host name: `reason` says passed through or refused)."""
    reason: str = ""
    category: str = ""
    illegal_list: str = ""
    rule: str = ""
    schedule: str = ""
    reference: str = ""
    path: str = ""
    """The path and query the gateway would have sent, after its safe-search rewrite."""
    headers: tuple[tuple[str, str], ...] = ()
    """Headers the gateway set on the request (such as YouTube-Restrict)."""
    status: int | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    canary: Canary
    status: str
    """`pass`, `fail`, `warn` or `skip`."""
    got: str
    """What happened, in words."""
    note: str = ""


def build_suite(
    config: Config,
    classifier: Any,
    policy: Any,
    *,
    groups: Sequence[str] | None = None,
    now: float | None = None,
    read: Callable[..., Any] | None = None,
) -> list[Canary]:
    """Every canary for `groups` (default: all), in run order. `classifier` and `policy` are the
    rules' (the illegal lists loaded, to find their test addresses); `now` decides which
    scheduled blocks are in force (default: the policy's clock). Reads category list files."""
    from ..classify.formats import read_list

    settings: CheckSettings = getattr(config, "check", None) or CheckSettings()
    when = policy.clock() if now is None else now
    picker = _Picker(config, classifier, policy, read or read_list, when)
    illegal = {name: _illegal_urls(name, settings, classifier) for name in config.illegal_lists}
    suite: list[Canary] = []
    for name in groups or list(config.groups):
        g = config.groups[name]
        suite += _illegal_canaries(config, g, illegal)
        suite += _category_canaries(config, g, policy, picker, settings, when)
        suite += _circumvention_canaries(config, g, picker, settings)
        suite += _search_canaries(config, g)
        suite += _education_canaries(config, g, picker, settings)
        if g.walled_garden:
            url = settings.outside_garden or OUTSIDE_GARDEN
            suite.append(Canary(name, WALLED_GARDEN, "Outside the walled garden", url, "block",
                                shown=_show(url)))
    return suite


def _illegal_urls(name: str, settings: CheckSettings, classifier: Any) -> tuple[str, ...]:
    configured = settings.illegal.get(name)
    if configured:
        return tuple(configured)
    found = []
    for url, _ in TEST_LIST_CANARIES:
        match = classifier.illegal_match(url)
        if match is not None and match.name == name:
            found.append(url)
    return tuple(found)


def _is_domain_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.path in ("", "/") and not parts.query


def _illegal_canaries(config: Config, g, illegal: Mapping[str, tuple[str, ...]]) -> list[Canary]:
    if not config.illegal_lists:
        return [Canary(g.name, ILLEGAL, "Illegal-content lists", None, "block",
                       preset=WARN, note="no illegal-content list is configured (the IWF list is "
                       "expected of every school: see illegal_lists in the README)")]
    out = []
    for name, lst in config.illegal_lists.items():
        title = f"{lst.kind.upper() if lst.kind != 'other' else lst.title} list ({name})"
        expected = f"block: illegal list {name}"
        urls = illegal[name]
        if not urls:
            out.append(Canary(g.name, ILLEGAL, title, None, expected, target=name, preset=WARN,
                              note=f"no test address for list {name}: set "
                              f"check.canaries.illegal.{name} to the test URL your provider gives"))
            continue
        domain = [u for u in urls if _is_domain_url(u)]
        page = [u for u in urls if not _is_domain_url(u)]
        note = ""
        if g.https == "sni-only":
            # HTTPS is decided by host name alone here: a page entry can only be seen in plain
            # HTTP, a domain entry in both.
            if domain:
                url = domain[0]
            else:
                url = "http://" + page[0].split("://", 1)[1]
                note = "plain HTTP: this group's HTTPS is decided by host name only"
        else:
            url = (page or domain)[0]
        out.append(Canary(g.name, ILLEGAL, title, url, expected, target=name,
                          shown=urlsplit(url).hostname or "", note=note))
    return out


def _category_canaries(config: Config, g, policy, picker: _Picker, settings: CheckSettings,
                       when: float) -> list[Canary]:
    in_force = policy.blocked_categories(g.name, when)
    scheduled: dict[str, list[str]] = {}
    for sb in g.blocked_during:
        for cat in sb.categories:
            scheduled.setdefault(cat, []).append(config.schedules[sb.schedule].title)
    out = []
    for cat, category in config.categories.items():
        if cat not in g.blocked_categories and cat not in scheduled:
            continue
        when_text = "" if cat in g.blocked_categories else " or ".join(scheduled[cat])
        url = settings.categories.get(cat) or picker.blocked(g, cat)
        if cat not in in_force:
            out.append(Canary(g.name, CATEGORY, category.title, url, "block", target=cat,
                              shown=_show(url) if url else "", preset=SKIP,
                              note=f"blocked only during {when_text}: not in force now"))
            continue
        if url is None:
            out.append(Canary(g.name, CATEGORY, category.title, None, "block", target=cat,
                              preset=WARN, note="no domain in its lists to test with: set "
                              f"check.canaries.categories.{cat}"))
            continue
        out.append(Canary(g.name, CATEGORY, category.title, url, "block", target=cat,
                          shown=_show(url),
                          note=f"blocked during {when_text}" if when_text else ""))
    return out


def _circumvention_canaries(config: Config, g, picker: _Picker,
                            settings: CheckSettings) -> list[Canary]:
    if g.circumvention != "block":
        return [Canary(g.name, CIRCUMVENTION, "Filter-bypass tools", None, "block", preset=SKIP,
                       note=f"group {g.name} logs circumvention instead of blocking it "
                       "(circumvention: log)")]
    out = []
    tested = g.blocked_categories
    for cat in config.categories:  # config order: the same canary every run
        if cat not in config.circumvention.categories or cat in tested:
            continue  # not a circumvention tool, or already tested as a blocked category
        url = settings.categories.get(cat) or picker.blocked(g, cat)
        if url is not None:
            out.append(Canary(g.name, CIRCUMVENTION, config.categories[cat].title, url, "block",
                              target=cat, shown=_show(url)))
            break
    out.append(Canary(g.name, DOH, "DNS-over-HTTPS", DOH_CANARY, "block", shown=_show(DOH_CANARY)))
    return out


def _search_canaries(config: Config, g) -> list[Canary]:
    from ..policy.safesearch import NO_SAFE_MODE_ENGINES

    out = []
    for engine, url in SEARCHES:
        level = g.youtube if engine == "youtube" else g.safe_search
        if engine == "youtube":
            expected = (f"YouTube-Restrict: {_YOUTUBE[level]}" if level in _YOUTUBE
                        else "no YouTube-Restrict (off for this group)")
        else:
            expected = (_LOCKED[engine][level] if level in _LOCKED[engine]
                        else f"{_SENT[engine]} kept (off for this group)")
        out.append(Canary(g.name, SAFE_SEARCH, f"{_TITLES[engine]} safe search", url, expected,
                          shown=_show(url), target=engine, level=level))
    engines = (NO_SAFE_MODE_ENGINES if config.block_search_engines is None
               else config.block_search_engines)
    if engines:
        url = f"https://{engines[0].lstrip('*.')}/search?q=schoolgate+check"
        if g.safe_search == "off":
            out.append(Canary(g.name, UNSAFE_ENGINE, "Search engine without safe mode", url,
                              "block", shown=_show(url), preset=SKIP,
                              note="safe search is off for this group"))
        else:
            out.append(Canary(g.name, UNSAFE_ENGINE, "Search engine without safe mode", url,
                              "block", shown=_show(url), target=engines[0]))
    return out


def _education_canaries(config: Config, g, picker: _Picker,
                        settings: CheckSettings) -> list[Canary]:
    url = settings.education or picker.education(g)
    if url is None:
        return [Canary(g.name, EDUCATION, "Education site", None, "allow", preset=WARN,
                       note="no education page to test with: define an `education` category or "
                       "set check.canaries.education")]
    return [Canary(g.name, EDUCATION, "Education site", url, "allow", shown=_show(url))]


def _show(url: str) -> str:
    return url.split("://", 1)[-1]


class _Picker:
    """Chooses each group's canary from a category's own lists: the first domain entry that the
    lists really classify so, that no illegal list holds, and that the group's own allow and
    block entries leave to the category."""

    SCAN = 200  # entries looked at per category at most

    def __init__(self, config: Config, classifier: Any, policy: Any, read: Callable[..., Any],
                 when: float):
        self.config, self.classifier, self.policy, self.read = config, classifier, policy, read
        self.when = when
        self._domains: dict[str, list[str]] = {}

    def domains(self, category: str) -> list[str]:
        if category not in self._domains:
            from ..sources.lists import category_sources
            from ..classify.formats import ListFormat

            found: list[str] = []
            for source in category_sources(self.config):
                if source.category != category or len(found) >= self.SCAN:
                    continue
                if source.format not in (None, ListFormat.DOMAINS, ListFormat.URLS):
                    continue  # expressions, usage: no domain to take
                try:
                    parsed = self.read(source.path, source.format)
                except OSError:
                    continue
                names = [n for n, _ in parsed.block] if parsed.block is not None else []
                if parsed.urls is not None:
                    names += [e.host for e in parsed.urls if not e.path]
                found += [n for n in names[: self.SCAN] if not _looks_like_ip(n)]
            self._domains[category] = found[: self.SCAN]
        return self._domains[category]

    def _usable(self, g, domain: str) -> Any:
        url = f"https://{domain}/"
        try:
            c = self.classifier.classify(url)
        except ValueError:
            return None
        if c.illegal is not None:
            return None
        found = self.policy.override_for(g.name, c.host, c.path)
        if found is not None:
            return None  # the group's own entry decides this host, not the category
        return c

    def blocked(self, g, category: str) -> str | None:
        for domain in self.domains(category):
            c = self._usable(g, domain)
            if c is not None and category in c.categories:
                return f"https://{domain}/"
        return None

    def education(self, g) -> str | None:
        if "education" not in self.config.categories:
            return None
        blocked = (self.policy.blocked_categories(g.name, self.when)
                   | self.config.circumvention.categories)
        for domain in self.domains("education"):
            c = self._usable(g, domain)
            if c is not None and "education" in c.categories and not blocked & set(c.categories):
                return f"https://{domain}/"
        return None


def _looks_like_ip(name: str) -> bool:
    return bool(re.fullmatch(r"[\d.]+|\[?[0-9a-f:]+\]?", name))


# ---------------------------------------------------------------------------------------------
# Judging an answer


def evaluate(canary: Canary, seen: Observation | None) -> Result:
    """Whether the gateway's answer is what the canary expects. Pure."""
    if canary.preset is not None or seen is None:
        return Result(canary, canary.preset or WARN, "not checked", canary.note)
    if seen.action is None:
        return Result(canary, FAIL, f"error: {seen.error or 'no answer'}", canary.note)
    got = _describe(seen)
    note = canary.note
    if seen.action == "error":
        return Result(canary, FAIL, got, note or "the gateway failed closed: see its log")
    kind = canary.kind
    if kind == ILLEGAL:
        ok = seen.action == "block" and seen.illegal_list == canary.target
        return Result(canary, PASS if ok else FAIL, got, note)
    if kind in (CATEGORY, CIRCUMVENTION, DOH, UNSAFE_ENGINE, WALLED_GARDEN):
        if seen.action == "block":
            return Result(canary, PASS, got, note)
        if kind == DOH and seen.stage == "tls":
            return Result(canary, WARN, got, "passed through undecrypted, so its request shape "
                          "cannot be seen; known resolvers are still blocked by name (doh category)")
        return Result(canary, FAIL, got, note)
    if kind == EDUCATION:
        return Result(canary, PASS if seen.action == "allow" else FAIL, got, note)
    if kind == SAFE_SEARCH:
        return _judge_search(canary, seen, got)
    raise ValueError(f"unknown kind of test {kind!r}")


def _judge_search(canary: Canary, seen: Observation, got: str) -> Result:
    if seen.action == "block":
        return Result(canary, PASS, got, "blocked for this group, which is stricter than safe search")
    if seen.stage == "tls":
        return Result(canary, WARN, got, "passed through undecrypted: safe search for this group "
                      "depends on the school's DNS (forcesafesearch.google.com and the like)")
    engine, level = canary.target or "", canary.level or ""
    if engine == "youtube":
        values = [v for k, v in seen.headers if k.lower() == "youtube-restrict"]
        want = _YOUTUBE.get(level)
        ok = values == [want] if want else not values
        return Result(canary, PASS if ok else FAIL, got, canary.note)
    params = (seen.path.split("?", 1) + [""])[1].split("&")
    want = _LOCKED[engine].get(level)
    if want is None:  # safe search off: the person's own setting stays
        ok = _SENT[engine] in params
    else:
        name = want.split("=")[0]
        ok = [p for p in params if p.split("=")[0].lower() == name] == [want]
    return Result(canary, PASS if ok else FAIL, got, canary.note)


_REASONS = {
    "walled-garden": "walled garden",
    "circumvention:doh": "DNS-over-HTTPS",
    "circumvention:port": "tunnel to another port",
    "no-safe-search": "no lockable safe search",
    "override": "local block entry",
    "keywords": "keywords",
    "bad-request": "bad request",
    "tls:refused": "refused",
    "tls:no-sni": "no host name",
}


def _describe(seen: Observation) -> str:
    if seen.action == "error":
        return f"error: {seen.reason or 'filtering error'}"
    where = {"connect": " at CONNECT", "tls": " at TLS handshake"}.get(seen.stage, "")
    if seen.action == "block":
        if seen.illegal_list:
            why = f"illegal list {seen.illegal_list}"
        elif seen.reason == "category":
            why = f"category {seen.category}" + (f" ({seen.schedule})" if seen.schedule else "")
        elif seen.reason == "circumvention":
            why = f"circumvention ({seen.category})" if seen.category else "circumvention"
        else:
            why = _REASONS.get(seen.reason, seen.reason or "blocked")
        return f"block{where}: {why}"
    if seen.stage == "tls":
        return "allow: passed through undecrypted"
    shown = []
    query = (seen.path.split("?", 1) + [""])[1]
    for p in query.split("&"):
        if p.split("=")[0].lower() in ("safe", "adlt", "kp"):
            shown.append(p)
    shown += [f"{k}: {v}" for k, v in seen.headers]
    if seen.reason == "override":
        shown.insert(0, "local allow entry")
    return "allow" + (f": {', '.join(shown)}" if shown else "")


# ---------------------------------------------------------------------------------------------
# The wire: the check header, and the gateway's answer


@dataclass(frozen=True, slots=True)
class CheckHeader:
    token: str
    group: str


def parse_check_header(value: str) -> CheckHeader | None:
    """`<token> group=<group>`, or None when it is not in that form."""
    parts = value.split()
    if len(parts) != 2 or not parts[1].startswith("group=") or len(parts[1]) == 6:
        return None
    return CheckHeader(parts[0], parts[1][6:])


# Printable ASCII but '%': header values stay readable, anything else is percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def answer_headers(verdict: Any, stage: str, *, path: str | None = None,
                   set_headers: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """The headers the gateway puts on its answer to a check request. Never an illegal-list
    entry: for an illegal verdict neither the rule's entry nor the path is given."""
    values = {
        "Action": verdict.action,
        "Stage": stage,
        "Group": verdict.group,
        "Reason": verdict.reason,
        "Category": verdict.category or "",
        "List": verdict.illegal_list or "",
        "Schedule": verdict.schedule or "",
        "Rule": verdict.rule or "",
        "Reference": verdict.reference,
    }
    if path is not None and verdict.illegal_list is None:
        values["Path"] = path
    sets = [f"{k}={v}" for k, v in set_headers]
    if sets:
        values["Headers"] = "; ".join(sets)
    return {ANSWER + k: quote(v, safe=_HEADER_SAFE) for k, v in values.items() if v}


def observation_from(status: int, headers: Any, stage: str) -> Observation:
    """Read the gateway's check headers from an answer (`headers`: any mapping with `get`)."""

    def get(name: str) -> str:
        value = headers.get(ANSWER + name)
        return unquote(value) if value else ""

    action = get("Action")
    if action not in ("allow", "block", "error"):
        return Observation(None, stage, status=status,
                           error=f"the gateway answered {status} without a check verdict")
    sets = []
    for item in get("Headers").split("; "):
        name, eq, value = item.partition("=")
        if eq:
            sets.append((name, value))
    return Observation(
        action=action, stage=get("Stage") or stage, reason=get("Reason"),
        category=get("Category"), illegal_list=get("List"), rule=get("Rule"),
        schedule=get("Schedule"), reference=get("Reference"), path=get("Path"),
        headers=tuple(sets), status=status,
    )


def probe(address: tuple[str, int], token: str, group: str, url: str, ca_file: Path,
          timeout: float = 10.0) -> Observation:
    """Send one canary to the gateway at `address` as `group` and read its verdict. HTTPS goes
    through CONNECT and a TLS handshake that trusts only the Schoolgate CA in `ca_file`. Never
    raises for a network problem: the observation says what went wrong."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    scheme = parts.scheme
    port = parts.port or (443 if scheme == "https" else 80)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    check = f"{token} group={group}"
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as e:
        return Observation(None, error=f"cannot reach the gateway at {address[0]}:{address[1]}: {e}")
    try:
        if scheme == "http":
            return _request(sock, authority, f"http://{authority}{path}", check, "request")
        head = (f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
                f"{CHECK_HEADER}: {check}\r\n\r\n")
        sock.sendall(head.encode("ascii"))
        response = http.client.HTTPResponse(sock, method="CONNECT")
        response.begin()
        if response.status != 200:
            response.read()
            return observation_from(response.status, response.msg, "connect")
        response.close()  # nothing follows a 200 until the client speaks
        context = _tls_context(ca_file)
        try:
            tls = context.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as e:
            return Observation(None, "tls", error=f"the gateway's certificate for {host} is not "
                               f"from the Schoolgate CA in {ca_file}: {e.verify_message}")
        except (ssl.SSLError, ConnectionError, TimeoutError) as e:
            return Observation("block", "tls", reason="tls:refused",
                               rule=f"connection closed at the TLS handshake ({type(e).__name__})")
        sock = tls
        return _request(sock, authority, path, check, "request")
    except (OSError, http.client.HTTPException) as e:
        return Observation(None, error=f"{type(e).__name__}: {e}")
    finally:
        sock.close()


@functools.lru_cache(maxsize=4)
def _tls_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def _request(sock: socket.socket, authority: str, target: str, check: str,
             stage: str) -> Observation:
    head = (f"GET {target} HTTP/1.1\r\nHost: {authority}\r\n{CHECK_HEADER}: {check}\r\n"
            "User-Agent: schoolgate-check\r\nAccept: */*\r\nConnection: close\r\n\r\n")
    sock.sendall(head.encode("ascii"))
    response = http.client.HTTPResponse(sock, method="GET")
    response.begin()
    response.read()
    return observation_from(response.status, response.msg, stage)


# ---------------------------------------------------------------------------------------------
# A run: the suite probed, judged, recorded and summarised


@dataclass(frozen=True, slots=True)
class CheckRun:
    ts: float
    school: str
    timezone: str
    gateway: str
    """`HOST:PORT` the canaries were sent to."""
    trigger: str
    """`command` (`schoolgate check`) or `schedule` (the gateway's own timetable)."""
    groups: tuple[str, ...]
    results: tuple[Result, ...]
    id: int | None = None
    """The check_runs row, once recorded."""

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def passed(self) -> bool:
        return self.count(FAIL) == 0

    @property
    def verdict(self) -> str:
        """The outcome in one plain-English sentence, for the table and the governors."""
        p, f, w, s = (self.count(x) for x in (PASS, FAIL, WARN, SKIP))
        groups = f"{len(self.groups)} group{'s' if len(self.groups) != 1 else ''}"
        if f:
            text = (f"FAILED: {f} of {p + f} tests across {groups} did not get the answer the "
                    "filtering policy requires. The technician should look at the failed rows "
                    "now.")
        else:
            text = (f"PASSED: all {p} tests across {groups} got the answer the filtering policy "
                    "requires.")
        if w:
            text += (f" {w} could not be checked (marked \"warn\"): each says what to configure "
                     "or why.")
        if s:
            text += f" {s} did not apply at the time of the check."
        return text

    def as_dict(self) -> dict:
        return {
            "id": self.id, "ts": _iso(self.ts), "school": self.school, "gateway": self.gateway,
            "trigger": self.trigger, "groups": list(self.groups),
            "passed": self.count(PASS), "failed": self.count(FAIL), "warnings": self.count(WARN),
            "skipped": self.count(SKIP), "verdict": self.verdict,
            "results": [
                {"group": r.canary.group, "test": r.canary.kind, "name": r.canary.name,
                 "address": r.canary.shown, "expected": r.canary.expected, "got": r.got,
                 "result": r.status, "note": r.note}
                for r in self.results
            ],
        }


def run_check(config: Config, rules: Any, address: tuple[str, int], token: str, *,
              groups: Sequence[str] | None = None, timeout: float = 10.0,
              trigger: str = "command", now: float | None = None,
              send: Callable[..., Observation] | None = None) -> CheckRun:
    """Build the suite for `groups` and send every canary to the gateway at `address`, one at a
    time (blocking; the gateway runs it from a worker thread). `rules` gives the classifier and
    policy the canaries are chosen with; `send` replaces `probe` (tests)."""
    send = send or probe
    started = time.time() if now is None else now
    suite = build_suite(config, rules.classifier, rules.policy, groups=groups, now=now)
    results = []
    for canary in suite:
        seen = None
        if canary.preset is None and canary.url is not None:
            seen = send(address, token, canary.group, canary.url, config.ca_cert_path, timeout)
        results.append(evaluate(canary, seen))
    shown = f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"
    return CheckRun(started, config.school_name, config.timezone, shown, trigger,
                    tuple(groups or config.groups), tuple(results))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{int(ts * 1000) % 1000:03d}Z"


def record_run(path: Path, run: CheckRun) -> int:
    """Append the run to the store's check_runs table; return its id. Warnings and skipped rows
    count as skipped. Illegal-list test addresses are stored as their host only."""
    from ..store import StoreError, open_for_writing

    open_for_writing(path)
    detail = run.as_dict()
    detail.pop("id")
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        try:
            cur = conn.execute(
                "INSERT INTO check_runs (ts, passed, failed, skipped, detail) VALUES (?, ?, ?, ?, ?)",
                (_iso(run.ts), run.count(PASS), run.count(FAIL), run.count(WARN) + run.count(SKIP),
                 json.dumps(detail, ensure_ascii=False)),
            )
            return int(cur.lastrowid or 0)
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot record the check run in {path}: {e}") from None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One check_runs row, without its detail."""

    id: int
    ts: float
    passed: int
    failed: int
    skipped: int


def latest_run(path: Path) -> RunSummary | None:
    """The most recent check run in the store, or None (no store, no run yet). Read-only and
    cheap: the metrics endpoint calls it at each scrape."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute("SELECT id, ts, passed, failed, skipped FROM check_runs "
                               "ORDER BY id DESC LIMIT 1").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None  # a store from before migration 7, or busy: no run to show
    if row is None:
        return None
    ts = datetime.strptime(row[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    return RunSummary(row[0], ts, row[2], row[3], row[4])


# ---------------------------------------------------------------------------------------------
# Output: the table, the governors' HTML summary


def format_table(run: CheckRun, width: int = 46) -> str:
    """The run as a text table, one row per test, grouped by group; a test that did not pass has
    its reason on the line below. Then the verdict. ASCII only, for any terminal or log."""
    local = datetime.fromtimestamp(run.ts, ZoneInfo(run.timezone))
    head = ("RESULT", "GROUP", "TEST", "ADDRESS", "EXPECTED", "GOT")
    rows = []
    for r in run.results:
        address = r.canary.shown or "-"
        if len(address) > width:
            address = address[: width - 3] + "..."
        rows.append(((r.status.upper(), r.canary.group, r.canary.name, address,
                      r.canary.expected, r.got), r.note if r.status != PASS else ""))
    widths = [max(len(x[i]) for x in (head, *(row for row, _ in rows))) for i in range(5)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + "  " + cells[5]

    lines = [
        f"Schoolgate filter check: {run.school}, {local.strftime('%A %d %B %Y %H:%M %Z')}",
        f"Sent through the running gateway at {run.gateway}; nothing was fetched from the "
        "internet. Illegal-list tests show the host only.",
        "",
        line(head),
    ]
    previous = None
    for row, note in rows:
        if previous is not None and row[1] != previous:
            lines.append("")
        previous = row[1]
        lines.append(line(row).rstrip())
        if note:
            lines.append(" " * (widths[0] + widths[1] + 4) + f"-> {note}")
    lines += ["", run.verdict]
    return "\n".join(lines)


@functools.cache
def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.ChoiceLoader([
            jinja2.PackageLoader("schoolgate", "templates"),
            # The reports' shared style, so every page for the school looks the same.
            jinja2.PackageLoader("schoolgate.reports", "templates"),
        ]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_summary(run: CheckRun, group_titles: Mapping[str, str]) -> str:
    """The governors' summary: self-contained HTML (every value escaped), fit to print."""
    local = datetime.fromtimestamp(run.ts, ZoneInfo(run.timezone))
    sections = []
    for g in run.groups:
        results = [r for r in run.results if r.canary.group == g]
        sections.append({
            "name": g, "title": group_titles.get(g, g), "results": results,
            "failed": sum(1 for r in results if r.status == FAIL),
        })
    kinds = [k for k in PROVES if any(r.canary.kind == k for r in run.results)]
    proves = [(KIND_TITLES[k], PROVES[k]) for k in kinds]
    return _environment().get_template("check.html").render(
        run=run, local=local, sections=sections, proves=proves,
        counts={s: run.count(s) for s in (PASS, FAIL, WARN, SKIP)},
        stamp=local.strftime("%A %d %B %Y at %H:%M %Z"),
    )


def summary_path(config: Config, run: CheckRun) -> Path:
    """`<reports folder>/filter-check-YYYY-MM-DD.html` (school date); a later run that day
    replaces it, so the folder holds each day's last check."""
    day = datetime.fromtimestamp(run.ts, ZoneInfo(run.timezone)).date()
    return config.reports_dir / f"filter-check-{day.isoformat()}.html"


def write_summary(config: Config, run: CheckRun, path: Path | None = None) -> Path:
    from ..reports.rendering import write_private

    path = path or summary_path(config, run)
    titles = {name: g.title for name, g in config.groups.items()}
    write_private(path, render_summary(run, titles))
    return path


# ---------------------------------------------------------------------------------------------
# The schedule


def next_run(after: datetime, times: Sequence[RunTime], timezone: str) -> datetime | None:
    """The first instant (UTC) strictly after `after` at which one of `times` falls, or None
    when there are none."""
    from ..reports.scheduler import next_at

    zone = ZoneInfo(timezone)
    best = None
    for t in times:
        for day in t.days:
            when = next_at(after, t.at, zone, day)
            if best is None or when < best:
                best = when
    return best
