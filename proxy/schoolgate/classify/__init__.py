"""What a request is: match its host against the category domain lists.

Pure code with no mitmproxy or store import, so the CLI (`schoolgate why`) and the benchmarks use
exactly what the gateway uses. Domains match by label suffix, as in squidGuard: the entry
`example.com` covers `example.com` and every name under it, never `badexample.com`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from .canonical import CanonicalURL, canonicalize, lookup_expressions
from .illegal import IllegalLists
from .lists import ListProblem, ListSummary, read_domain_list
from .urls import URLError, normalise_host, normalise_url

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

    @property
    def categories(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for m in self.matches:
            seen.setdefault(m.category, None)
        return tuple(seen)


class Classifier:
    """Category domain lists held as one dict from domain to the entries that list it.

    A simple, correct first version: one Python object per entry. Fine for the starter lists and a
    few hundred thousand domains.
    """

    def __init__(self) -> None:
        self._domains: dict[str, list[CategoryMatch]] = {}
        self.summaries: list[ListSummary] = []
        self.illegal = IllegalLists()
        """Set by the gateway: the live illegal-content lists (refreshed on their own schedule)."""

    @classmethod
    def from_config(cls, config: Config) -> Classifier:
        c = cls()
        for category in config.categories.values():
            for path in category.lists:
                c.add_list(category.name, path)
        return c

    def add_list(self, category: str, path: Path) -> ListSummary:
        entries, summary = read_domain_list(path)
        for domain, line in entries:
            self._domains.setdefault(domain, []).append(
                CategoryMatch(category, domain, str(path), line)
            )
        self.summaries.append(summary)
        return summary

    @property
    def problems(self) -> Iterable[ListProblem]:
        for s in self.summaries:
            yield from s.problems

    def classify(self, url: str | CanonicalURL) -> Classification:
        """Classify a whole URL: canonicalise once, then illegal lists, then category lists.
        Raises `URLError` for a URL that cannot be canonicalised."""
        c = url if isinstance(url, CanonicalURL) else canonicalize(url)
        if not (c.host.startswith("[") or _DNS_HOST.fullmatch(c.host)):
            # Canonicalisation escapes what no DNS name can hold (spaces, '!'): refuse it.
            raise URLError(f"{c.host!r} is not a valid host name")
        expressions = tuple(lookup_expressions(c))
        lst = self.illegal.match(expressions) if self.illegal else None
        host = c.host[1:-1] if c.host.startswith("[") else c.host
        by_host = self.classify_host(host)
        return Classification(
            host=host,
            matches=by_host.matches,
            path=c.path + (f"?{c.query}" if c.query else ""),
            illegal=IllegalMatch(lst.spec.name, lst.spec.kind) if lst is not None else None,
            canonical_url=c.url,
            expressions=expressions,
        )

    def illegal_match(self, url: str) -> IllegalMatch | None:
        return self.classify(url).illegal

    def classify_host(self, host: str) -> Classification:
        """Classify an already normalised host name (see `normalise_host`)."""
        found: list[CategoryMatch] = []
        domains = self._domains
        if host in domains:
            found.extend(domains[host])
        if not _is_ip(host):
            # Walk parents right after the exact name: a.b.example.com, b.example.com, example.com.
            dot = host.find(".")
            while dot != -1:
                parent = host[dot + 1 :]
                if parent in domains:
                    found.extend(domains[parent])
                dot = host.find(".", dot + 1)
        return Classification(host, tuple(found))


_DNS_HOST = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")


def _is_ip(host: str) -> bool:
    # Normalised hosts are IPv4 dotted quads, bracket-free IPv6 (has ':'), or names with a letter.
    return ":" in host or host.replace(".", "").isdigit()
