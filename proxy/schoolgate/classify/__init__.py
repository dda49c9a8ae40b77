"""What a request is: its canonical URL checked against the illegal-content lists and the
category lists (domains, URL prefixes, expressions).

Pure code with no mitmproxy or store import, so the CLI (`schoolgate why`) and the benchmarks use
exactly what the gateway uses. Domains match by label suffix, as in squidGuard: the entry
`example.com` covers `example.com` and every name under it, never `badexample.com`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config.model import Config
from .canonical import CanonicalURL, canonicalize, lookup_expressions
from .illegal import IllegalLists
from .index import ListIndex, ListSource, ut1_sources
from .keywords import KeywordMatch, KeywordSet, _words, decode_url_text, normalise_text
from .lists import ListProblem, ListSummary
from .urls import DNS_HOST, URLError, normalise_host, normalise_url

log = logging.getLogger("schoolgate.lists")

__all__ = [
    "CategoryMatch",
    "Classification",
    "Classifier",
    "IllegalMatch",
    "ListProblem",
    "ListSummary",
    "URLError",
    "normalise_host",
    "normalise_url",
]


@dataclass(frozen=True, slots=True)
class CategoryMatch:
    """One list entry that covers the request's host."""

    category: str
    entry: str
    """The list entry as normalised, such as `bet365.com`."""
    list_path: str
    """The list file the entry came from."""
    line: int
    """Line number of the entry in that file (1-based)."""
    kind: str = "domain"
    """`domain`, `url` (a URL-prefix entry) or `expression` (a regular expression)."""


@dataclass(frozen=True, slots=True)
class IllegalMatch:
    """Which illegal-content list holds a request: its name and kind, never the entry."""

    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class Classification:
    """Everything the lists say about one request, most specific entry first."""

    host: str
    matches: tuple[CategoryMatch, ...]
    path: str = "/"
    """Canonical path and query, for URL lists and local overrides."""
    illegal: IllegalMatch | None = None
    canonical_url: str | None = None
    """The URL in Safe Browsing canonical form (None when only a host was classified)."""
    expressions: tuple[str, ...] = ()
    """The host-suffix x path-prefix lookup expressions, most specific first."""
    keywords: tuple[KeywordMatch, ...] = ()
    """Keyword phrases found in the decoded path and query, from every keyword set."""

    @property
    def categories(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for m in self.matches:
            seen.setdefault(m.category, None)
        return tuple(seen)


def category_sources(config: Config) -> list[ListSource]:
    """Every list file the config's categories name, with its category. A folder is a UT1
    category folder (`domains`, `domains.N`, `urls`, `expressions`, `usage`)."""
    sources: list[ListSource] = []
    for category in config.categories.values():
        for path in category.lists:
            if path.is_dir():
                sources.extend(
                    ListSource(category.name, s.path, s.format)
                    for s in ut1_sources(path.parent, categories=[path.name])
                )
            else:
                sources.append(ListSource(category.name, path))
    return sources


class Classifier:
    """The category lists (one compact `ListIndex`), the illegal-content lists and the URL
    canonicaliser, composed: `classify(url)` is the whole decision input for one request.

    Immutable once built, apart from `illegal`, whose lists refresh themselves in place; the
    gateway swaps whole classifiers on reload.
    """

    def __init__(self, index: ListIndex | None = None) -> None:
        self._sources: list[ListSource] = []
        self.index = index if index is not None else ListIndex.build([])
        self.illegal = IllegalLists()
        """Set by the gateway: the live illegal-content lists (refreshed on their own schedule)."""
        self.keyword_sets: tuple[KeywordSet, ...] = ()
        """Keyword sets run over each URL's decoded path and query (one automaton each)."""
        self.loaded_from_cache = False

    @classmethod
    def from_config(cls, config: Config, cache: Path | None = None) -> Classifier:
        """Build from the config's lists; with `cache`, load the compiled index from it when it
        was built from these very files, else build and save it there."""
        sources = category_sources(config)
        if cache is None:
            c = cls(ListIndex.build(sources))
        else:
            loaded = ListIndex.load_or_build(sources, cache)
            c = cls(loaded.index)
            c.loaded_from_cache = loaded.from_cache
            if loaded.note:
                log.info("list cache %s: %s", cache, loaded.note)
        c._sources = sources
        return c

    def add_list(self, category: str, path: Path) -> ListSummary:
        """Add one list file and rebuild (for small, hand-made setups and tests)."""
        self._sources.append(ListSource(category, Path(path)))
        self.index = ListIndex.build(self._sources)
        return self.index.summaries[-1]

    @property
    def summaries(self) -> tuple[ListSummary, ...]:
        return self.index.summaries

    @property
    def problems(self) -> Iterable[ListProblem]:
        for s in self.summaries:
            yield from s.problems

    def classify(self, url: str | CanonicalURL) -> Classification:
        """Classify a whole URL: canonicalise once, then illegal lists, then category lists.
        Raises `URLError` for a URL that cannot be canonicalised."""
        c = url if isinstance(url, CanonicalURL) else canonicalize(url)
        if not (c.host.startswith("[") or DNS_HOST.fullmatch(c.host)):
            # Canonicalisation escapes what no DNS name can hold (spaces, '!'): refuse it.
            raise URLError(f"{c.host!r} is not a valid host name")
        expressions = tuple(lookup_expressions(c))
        lst = self.illegal.match(expressions) if self.illegal else None
        host = c.host[1:-1] if c.host.startswith("[") else c.host
        path = c.path + (f"?{c.query}" if c.query else "")
        index, lists = self.index, self.index.lists
        found: list[CategoryMatch] = []
        # Most specific first: URL-prefix entries, then domains (longest suffix first), then
        # expressions; adblock `@@` exceptions remove their category.
        allowed: set[str] = set()
        for entry_host, prefix, tag, line in index.lookup_url(host, path):
            info = lists[tag]
            if info.allow:
                allowed.add(info.category)
            else:
                found.append(CategoryMatch(info.category, entry_host + prefix, info.path, line, "url"))
        self._domain_matches(host, found, allowed)
        if index.expressions:
            for pattern, tag, line in index.match_expressions(f"{host}{path}"):
                info = lists[tag]
                found.append(CategoryMatch(info.category, pattern, info.path, line, "expression"))
        if allowed:
            found = [m for m in found if m.category not in allowed]
        keywords: tuple[KeywordMatch, ...] = ()
        if self.keyword_sets and len(path) > 1:
            # `match` caps repeated letters itself, so the text needs only the rest of
            # `normalise_text`: capping twice cost a microsecond per URL.
            text = _words(decode_url_text(path))
            keywords = tuple(m for ks in self.keyword_sets for m in ks.match(text, normalised=True))
        return Classification(
            host=host,
            matches=tuple(found),
            path=path,
            illegal=IllegalMatch(lst.name, lst.kind) if lst is not None else None,
            canonical_url=c.url,
            expressions=expressions,
            keywords=keywords,
        )

    def match_text(self, text: str) -> tuple[KeywordMatch, ...]:
        """Keyword phrases in any text handed over (a search term, page text)."""
        normalised = normalise_text(text)
        return tuple(m for ks in self.keyword_sets for m in ks.match(normalised, normalised=True))

    def illegal_match(self, url: str) -> IllegalMatch | None:
        return self.classify(url).illegal

    def classify_host(self, host: str) -> Classification:
        """Classify an already normalised host name by the domain lists alone."""
        found: list[CategoryMatch] = []
        allowed: set[str] = set()
        self._domain_matches(host, found, allowed)
        return Classification(host, tuple(m for m in found if m.category not in allowed))

    def _domain_matches(self, host: str, found: list[CategoryMatch], allowed: set[str]) -> None:
        """Append the domain-list matches for `host`; note categories an `@@` entry allows."""
        lists = self.index.lists
        for suffix, tag, line in self.index.lookup_host(host):
            info = lists[tag]
            if info.allow:
                allowed.add(info.category)
            else:
                found.append(CategoryMatch(info.category, suffix, info.path, line, "domain"))


def _is_ip(host: str) -> bool:
    # Normalised hosts are IPv4 dotted quads, bracket-free IPv6 (has ':'), or names with a letter.
    return ":" in host or host.replace(".", "").isdigit()
