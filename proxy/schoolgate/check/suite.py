"""What the filter check tests, group by group: a canary per illegal list, blocked category,
circumvention tool, search engine and education page, each with the answer the policy requires,
chosen from the config and the category lists themselves. Pure but for reading list files."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..classify import Classification, Classifier
from ..classify.formats import ListFormat, ParsedList, read_list
from ..config.model import CheckSettings, Config, Group
from ..policy import Policy
from ..policy.safesearch import NO_SAFE_MODE_ENGINES
from ..sources.lists import category_sources

__all__ = [
    "CATEGORY",
    "CIRCUMVENTION",
    "DOH",
    "EDUCATION",
    "FAIL",
    "ILLEGAL",
    "LOCKED",
    "PASS",
    "SAFE_SEARCH",
    "SENT",
    "SKIP",
    "UNSAFE_ENGINE",
    "WALLED_GARDEN",
    "WARN",
    "YOUTUBE",
    "Canary",
    "ListReader",
    "build_suite",
]

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
SEARCHES: tuple[tuple[str, str], ...] = (  # (engine, URL with safe search turned off)
    ("google", "https://www.google.com/search?q=schoolgate+check&safe=off"),
    ("bing", "https://www.bing.com/search?q=schoolgate+check&adlt=off"),
    ("duckduckgo", "https://duckduckgo.com/?q=schoolgate+check&kp=-2"),
    ("youtube", "https://www.youtube.com/results?search_query=schoolgate+check"),
)
LOCKED = {
    "google": {"strict": "safe=active", "moderate": "safe=active"},
    "bing": {"strict": "adlt=strict", "moderate": "adlt=moderate"},
    "duckduckgo": {"strict": "kp=1", "moderate": "kp=-1"},
}
"""Engine -> safe-search level -> the parameter the gateway's rewritten query must carry."""
SENT = {"google": "safe=off", "bing": "adlt=off", "duckduckgo": "kp=-2"}
"""The parameter each search canary turns safe search off with."""
YOUTUBE = {"strict": "Strict", "moderate": "Moderate"}
"""Level -> the YouTube-Restrict header the gateway must set."""

ListReader = Callable[[Path, ListFormat | None], ParsedList]
"""How the suite reads a category list file (`read_list`; tests give their own)."""
_TITLES = {"google": "Google", "bing": "Bing", "duckduckgo": "DuckDuckGo", "youtube": "YouTube"}


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


def build_suite(
    config: Config,
    classifier: Classifier,
    policy: Policy,
    *,
    groups: Sequence[str] | None = None,
    now: float | None = None,
    read: ListReader | None = None,
) -> list[Canary]:
    """Every canary for `groups` (default: all), in run order. `classifier` and `policy` are the
    rules' (the illegal lists loaded, to find their test addresses); `now` decides which
    scheduled blocks are in force (default: the policy's clock). Reads category list files."""
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


def _illegal_urls(name: str, settings: CheckSettings,
                  classifier: Classifier) -> tuple[str, ...]:
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


def _illegal_canaries(config: Config, g: Group,
                      illegal: Mapping[str, tuple[str, ...]]) -> list[Canary]:
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


def _category_canaries(config: Config, g: Group, policy: Policy, picker: _Picker,
                       settings: CheckSettings, when: float) -> list[Canary]:
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


def _circumvention_canaries(config: Config, g: Group, picker: _Picker,
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


def _search_canaries(config: Config, g: Group) -> list[Canary]:
    out = []
    for engine, url in SEARCHES:
        level = g.youtube if engine == "youtube" else g.safe_search
        if engine == "youtube":
            expected = (f"YouTube-Restrict: {YOUTUBE[level]}" if level in YOUTUBE
                        else "no YouTube-Restrict (off for this group)")
        else:
            expected = (LOCKED[engine][level] if level in LOCKED[engine]
                        else f"{SENT[engine]} kept (off for this group)")
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


def _education_canaries(config: Config, g: Group, picker: _Picker,
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

    def __init__(self, config: Config, classifier: Classifier, policy: Policy, read: ListReader,
                 when: float):
        self.config, self.classifier, self.policy, self.read = config, classifier, policy, read
        self.when = when
        self._domains: dict[str, list[str]] = {}

    def domains(self, category: str) -> list[str]:
        if category not in self._domains:
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

    def _usable(self, g: Group, domain: str) -> Classification | None:
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

    def blocked(self, g: Group, category: str) -> str | None:
        for domain in self.domains(category):
            c = self._usable(g, domain)
            if c is not None and category in c.categories:
                return f"https://{domain}/"
        return None

    def education(self, g: Group) -> str | None:
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
