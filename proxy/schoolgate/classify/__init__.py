"""What a request is: its canonical URL checked against the illegal-content lists and the
category lists (domains, URL prefixes, expressions), the search it makes, the keyword library's
flags in that search or in the address, and what its shape gives away (DNS-over-HTTPS).

Pure code with no mitmproxy, store, YAML or network import, so the CLI (`schoolgate why`) and the
benchmarks use exactly what the gateway uses. Domains match by label suffix, as in squidGuard: the
entry `example.com` covers `example.com` and every name under it, never `badexample.com`.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .canonical import CanonicalURL, canonicalize, lookup_expressions
from .illegal import IllegalLists
from .index import ListIndex
from .keywords import KeywordMatch, Scan, _words, decode_url_text
from .library import Flag, KeywordLibrary
from .lists import ListProblem, ListSummary
from .search import SearchQuery, extract_search, needs_body
from .shapes import doh_request
from .urls import DNS_HOST, URLError, normalise_host

__all__ = [
    "NO_DECRYPT",
    "CategoryMatch",
    "Classification",
    "Classifier",
    "IllegalMatch",
    "ListProblem",
    "ListSummary",
    "URLError",
    "normalise_host",
    "unreachable_reason",
]

NO_DECRYPT = "@do-not-decrypt"
"""The index category of the do-not-decrypt lists (banking, health, government). No configured
category can be named so (names start with a letter or digit), so it never shows as one."""


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
    """Everything the lists, the keyword library and the request's shape say about one request,
    most specific list entry first. `Policy.decide` turns it into the verdict."""

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
    """Keyword phrases found in the decoded path and query (the library's own matches)."""
    no_decrypt: bool = False
    """The host is on a do-not-decrypt list: its HTTPS is passed through undecrypted."""
    search: SearchQuery | None = None
    """The search the request makes, when it is one."""
    search_in_body: bool = False
    """The request is a search whose term is in its body, not yet read (`Classifier.with_body`
    classifies it again once the body is here)."""
    flags: tuple[Flag, ...] = ()
    """The keyword library's flags: in the search term for a search (what the person typed),
    else in the decoded path and query."""
    doh: str | None = None
    """Why the request is DNS-over-HTTPS by its shape (`shapes.DOH_WIRE`, `DOH_JSON`), if it is."""
    unreachable: str | None = None
    """Why no connection can be made for the request as sent, though its canonical form could
    be classified: a host no DNS name or address can be (`host%23.com`), a host written in
    percent-escapes (`%31%36%38.%31%38%38.%39%39.%32%36`, which a browser sends as the address
    it spells), or a scheme the gateway does not proxy (`ftp`). The lists are still matched, so a
    listed form is blocked by its list; anything else is refused as a bad request
    (`schoolgate.gateway.decision.decide_request`)."""

    @property
    def categories(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for m in self.matches:
            seen.setdefault(m.category, None)
        return tuple(seen)


class Classifier:
    """The category lists (one compact `ListIndex`), the illegal-content lists, the keyword
    library and the URL canonicaliser, composed: `classify` is the whole decision input for one
    request.

    Immutable once built, apart from `illegal`, whose lists the loader refreshes in place; the
    gateway swaps whole classifiers on reload. `schoolgate.sources.lists.build_classifier` builds
    one from the config.
    """

    def __init__(self, index: ListIndex | None = None, *, illegal: IllegalLists | None = None,
                 library: KeywordLibrary | None = None) -> None:
        self.index = index if index is not None else ListIndex.build([])
        self.illegal = illegal if illegal is not None else IllegalLists()
        """The live illegal-content lists (refreshed on their own schedule)."""
        self.library = library
        """The keyword library searches and addresses are matched against, or None."""
        self.loaded_from_cache = False

    @property
    def summaries(self) -> tuple[ListSummary, ...]:
        return self.index.summaries

    @property
    def problems(self) -> Iterable[ListProblem]:
        for s in self.summaries:
            yield from s.problems

    def classify(self, url: str | CanonicalURL, *, method: str = "GET", host: str | None = None,
                 path: str | None = None, headers: Mapping[str, str] | None = None
                 ) -> Classification:
        """Classify a request: canonicalise its URL once, then illegal lists, category lists,
        the search it makes and the keyword library's flags, and its shape. `host` and `path`
        are the request's as sent (the search is read from them; default: taken from `url`).
        Raises `URLError` for a URL that cannot be canonicalised; one that can, but that no
        connection can be made for, is classified with the reason in `unreachable`."""
        c = url if isinstance(url, CanonicalURL) else canonicalize(url)
        unreachable = _unreachable(c, host)
        expressions = tuple(lookup_expressions(c))
        lst = self.illegal.match(expressions) if self.illegal else None
        name = c.host[1:-1] if c.host.startswith("[") else c.host
        canonical_path = c.path + (f"?{c.query}" if c.query else "")
        index, lists = self.index, self.index.lists
        found: list[CategoryMatch] = []
        # Most specific first: URL-prefix entries, then domains (longest suffix first), then
        # expressions; adblock `@@` exceptions remove their category.
        allowed: set[str] = set()
        for entry_host, prefix, tag, line in index.lookup_url(name, canonical_path):
            info = lists[tag]
            if info.allow:
                allowed.add(info.category)
            else:
                found.append(CategoryMatch(info.category, entry_host + prefix, info.path, line,
                                           "url"))
        no_decrypt = self._domain_matches(name, found, allowed)
        if index.expressions:
            for pattern, tag, line in index.match_expressions(f"{name}{canonical_path}"):
                info = lists[tag]
                found.append(CategoryMatch(info.category, pattern, info.path, line, "expression"))
        if allowed:
            found = [m for m in found if m.category not in allowed]
        keywords: tuple[KeywordMatch, ...] = ()
        scan: Scan | None = None
        library = self.library
        if library is not None and len(canonical_path) > 1:
            # `scan` caps repeated letters itself, so the text needs only the rest of
            # `normalise_text`: capping twice cost a microsecond per URL.
            text = _words(decode_url_text(canonical_path))
            scan = library.keyword_set.scan(text, normalised=True)
            keywords = scan.matches
        if host is None or path is None:  # not from the proxy: read them from the URL
            parts = urlsplit(url if isinstance(url, str) else c.url)
            if host is None:
                host = parts.hostname or name
            if path is None:
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        in_body = needs_body(method, host, path)
        search = None if in_body else extract_search(method, host, path)
        return Classification(
            host=name,
            matches=tuple(found),
            path=canonical_path,
            illegal=IllegalMatch(lst.name, lst.kind) if lst is not None else None,
            canonical_url=c.url,
            expressions=expressions,
            keywords=keywords,
            no_decrypt=no_decrypt,
            search=search,
            search_in_body=in_body,
            flags=self._flags(search, scan),
            doh=doh_request(method, path, headers or {}),
            unreachable=unreachable,
        )

    def with_body(self, classification: Classification, method: str, host: str, path: str,
                  body: bytes | None, content_type: str | None) -> Classification:
        """`classification` of a request whose search is in its body, now the body is here:
        the search and its flags read from the body (no other part changes)."""
        if not classification.search_in_body:
            return classification
        search = extract_search(method, host, path, body, content_type)
        return dataclasses.replace(classification, search=search, search_in_body=False,
                                   flags=self._flags(search, None)
                                   if search is not None else classification.flags)

    def _flags(self, search: SearchQuery | None, scan: Scan | None) -> tuple[Flag, ...]:
        """The flags of the search term for a search (what the person typed), else of the
        address's scan."""
        library = self.library
        if library is None:
            return ()
        if search is not None:
            return tuple(library.match(search.normalised, normalised=True)
                         if search.normalised else ())
        if scan is None or not (scan.matches or scan.members):
            return ()  # most addresses: nothing found, nothing to build
        return library.scan_findings(scan).flags

    def keywords_outside_search(self, classification: Classification
                                ) -> tuple[KeywordMatch, ...]:
        """The keyword matches in the address outside its search term: for a search, the
        address's matches less, phrase by phrase, as many as the term itself holds (those are
        the search's flags); for any other request, all of them. For `schoolgate why`."""
        search, library = classification.search, self.library
        if search is None or library is None or not search.normalised:
            return classification.keywords
        in_term = Counter(m.phrase for m in library.keyword_set.match(search.normalised,
                                                                       normalised=True))
        outside = []
        for m in classification.keywords:
            if in_term[m.phrase] > 0:
                in_term[m.phrase] -= 1
            else:
                outside.append(m)
        return tuple(outside)

    def illegal_match(self, url: str) -> IllegalMatch | None:
        return self.classify(url).illegal

    def classify_host(self, host: str) -> Classification:
        """Classify an already normalised host name by the domain lists alone."""
        found: list[CategoryMatch] = []
        allowed: set[str] = set()
        no_decrypt = self._domain_matches(host, found, allowed)
        return Classification(host, tuple(m for m in found if m.category not in allowed),
                              no_decrypt=no_decrypt)

    def no_decrypt(self, host: str) -> bool:
        """Whether normalised `host` is on a do-not-decrypt list (its HTTPS is never decrypted)."""
        lists = self.index.lists
        return any(lists[tag].category == NO_DECRYPT for _, tag, _ in self.index.lookup_host(host))

    def _domain_matches(self, host: str, found: list[CategoryMatch], allowed: set[str]) -> bool:
        """Append the domain-list matches for `host`; note categories an `@@` entry allows.
        Returns whether a do-not-decrypt list covers the host."""
        lists = self.index.lists
        no_decrypt = False
        for suffix, tag, line in self.index.lookup_host(host):
            info = lists[tag]
            if info.category == NO_DECRYPT:
                no_decrypt = True
            elif info.allow:
                allowed.add(info.category)
            else:
                found.append(CategoryMatch(info.category, suffix, info.path, line, "domain"))
        return no_decrypt


_PROXIED_SCHEMES = ("http", "https")


def unreachable_reason(url: str, sent_host: str) -> str | None:
    """Why no connection can be made for a request for `url` whose host was sent as
    `sent_host` (see `Classification.unreachable`); None when one can, or when `url` cannot be
    canonicalised at all. What the gateway uses to decide whether a request head its proxy
    refuses can still be classified."""
    try:
        c = canonicalize(url)
    except URLError:
        return None
    return _unreachable(c, sent_host)


_SENDABLE_HOST = re.compile(r"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*\.?")
"""A host as a client may send it: DNS labels (any case, `_` too), with at most one final dot
(`www.example.com.` is a fully qualified name), or a number (IPv4 in any spelling)."""


def _unreachable(c: CanonicalURL, sent_host: str | None) -> str | None:
    """Why no connection can be made for a request whose canonical form is `c` and whose host
    was sent as `sent_host`, or None (the common case: two cheap tests)."""
    if c.scheme not in _PROXIED_SCHEMES:
        return f"the gateway carries http and https only, not {c.scheme}"
    if c.host.startswith("["):
        return None
    if not DNS_HOST.fullmatch(c.host):
        # Canonicalisation escapes what no DNS name can hold (spaces, '!', controls).
        return f"{c.host!r} is not a host name any server can have"
    if sent_host is None or sent_host == c.host or _SENDABLE_HOST.fullmatch(sent_host):
        return None
    if "%" in sent_host:
        return (f"the host name {sent_host!r} is written in percent-escapes (it spells "
                f"{c.host}); a browser sends it unescaped")
    return f"the host name {sent_host!r} is not one a browser sends (it would be {c.host})"
