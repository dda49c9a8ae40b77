"""Illegal-content lists (the IWF URL list, the police CTIRU list): URL-level, never overridable,
and confidential.

Entries are held only as SHA-256 digests of canonical Safe Browsing lookup expressions
(``host/path``), whether the source is plain or already hashed, so nothing in memory, in the
last-good copy on disk, in logs or in messages can reveal an entry. A request matches when any of
its lookup expressions' digests is in the list: a domain entry (``example.com/``) therefore covers
the whole domain and its subdomains, a URL entry only that page.

Selective decryption needs one more thing: whether a host has any URL-level entry, since only
those need the connection decrypted (a domain entry is decided by the host name at the TLS
handshake). So each list also holds the digests of the hosts of its URL-level entries, never the
hosts themselves. A URL entry `a.com/x` is found by every request whose lookup hosts include
`a.com` (`www.a.com/x` too: Safe Browsing walks host suffixes), so a connection to a host needs
decrypting when any of its lookup hosts is one of them (`IllegalLists.url_entry_on`). A hashed
source says nothing about its entries' hosts unless each line carries one (a second digest, of the
entry's host); a list whose hosts are unknown makes every host need decrypting (fail safe).

Pure: no I/O. `schoolgate.sources.illegal` reads the sources and the last good copy, off the
event loop, and swaps each list's digests whole.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ..config.model import IllegalListConfig
from .canonical import canonicalize, lookup_hosts
from .urls import URLError

try:
    # CPython's own SHA-256 (HACL*, verified C) hashes a 40-byte expression in 0.40 us against
    # 0.48 us through OpenSSL's EVP interface, whose per-call set-up dominates input this short;
    # every request hashes about six expressions. Private module, so fall back when it is absent.
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other interpreters
    _sha256 = hashlib.sha256

__all__ = [
    "IllegalList",
    "IllegalLists",
    "ParsedEntries",
    "digest_key",
    "expression_digest",
    "parse_entries",
    "parse_list",
]

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_HEX64_PAIR = re.compile(r"^([0-9a-fA-F]{64})(?:[ \t,]+([0-9a-fA-F]{64}))?$")


def expression_digest(expression: str) -> bytes:
    """SHA-256 of a canonical lookup expression such as ``example.com/path/page.html``."""
    return _sha256(expression.encode("utf-8")).digest()


def digest_key(digest: bytes) -> int:
    # 64 bits of the digest: a false match needs a 1 in 2**64 coincidence per expression, and
    # the set costs 8 bytes an entry instead of a Python bytes object each.
    return int.from_bytes(digest[:8], "big")


def _entry_expression(entry: str) -> tuple[str, str]:
    """The canonical lookup expression a plain entry stands for, and its canonical host."""
    text = entry.strip()
    if any(ch.isspace() for ch in text):
        # An entry is one URL (a space in one is written %20): a line of words is a broken
        # line, not an entry. The message never carries the entry.
        raise URLError("not one URL")
    if "://" not in text:
        text = "http://" + text
    c = canonicalize(text)
    # Any canonical form is an entry, a host no DNS name can be (`host%23.com`) too: requests
    # for it are canonicalised the same way, and blocked by it (the Safe Browsing table has
    # such rows), before they are refused as bad requests.
    return c.host_path, c.host


def host_key(host: str) -> bytes:
    """The 8-byte digest prefix a canonical host is held and probed as (see `url_entry_on`)."""
    return _sha256(host.encode("utf-8")).digest()[:8]


class ParsedEntries(NamedTuple):
    keys: array
    """The sorted digest keys of every entry's lookup expression."""
    host_keys: array | None
    """The sorted digest keys of the hosts of URL-level entries (plain form), or of every entry
    (hashed form whose every line names its host); None when a hashed line did not say."""
    problems: list[str]
    """Bad lines, by number only, never content."""


def parse_list(lines: Iterable[str], form: str, source: str) -> ParsedEntries:
    """Read a source's lines. A `sha256` line is the digest of a lookup expression, optionally
    followed by the digest of the entry's canonical host; a `plain` line is a URL or domain."""
    keys: list[int] = []
    hosts: set[int] = set()
    hosts_known = True
    problems: list[str] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip().lstrip("\ufeff")
        if not text or text.startswith("#"):
            continue
        if form == "sha256":
            m = _HEX64_PAIR.match(text)
            if m is None:
                problems.append(
                    f"{source}:{number}: not a 64-character SHA-256 hex digest; skipped")
                continue
            keys.append(digest_key(bytes.fromhex(m.group(1))))
            if m.group(2) is None:
                hosts_known = False
            else:
                hosts.add(digest_key(bytes.fromhex(m.group(2))))
        else:
            try:
                expression, host = _entry_expression(text)
            except (URLError, ValueError):
                problems.append(f"{source}:{number}: not a valid URL or domain; skipped")
                continue
            keys.append(digest_key(expression_digest(expression)))
            if expression != host + "/":  # a path or a query: decided only inside TLS
                hosts.add(digest_key(expression_digest(host)))
    keys.sort()
    return ParsedEntries(array("Q", keys), array("Q", sorted(hosts)) if hosts_known else None,
                         problems)


def parse_entries(lines: Iterable[str], form: str, source: str) -> tuple[array, list[str]]:
    """Return the sorted digest keys and the problems (line numbers only, never content)."""
    parsed = parse_list(lines, form, source)
    return parsed.keys, parsed.problems


class IllegalList:
    """One list as requests match it: its name, kind, and the digests of its entries. The loader
    (`schoolgate.sources.illegal`) replaces the digests whole, so a request sees either the old
    list or the new one."""

    def __init__(self, config: IllegalListConfig):
        self.config = config
        self.replace(array("Q"))

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def entries(self) -> int:
        return len(self._sorted)

    @property
    def keys(self) -> array:
        """The sorted digest keys: what the last good copy stores."""
        return self._sorted

    @property
    def host_keys(self) -> array | None:
        """The sorted digest keys of the hosts of URL-level entries (what the last good copy
        stores beside the entries), or None when they are unknown."""
        return self._hosts_sorted

    def replace(self, keys: array, host_keys: array | None = None) -> None:
        """Swap in new digests. Without `host_keys` the hosts of URL-level entries are unknown,
        and every host counts as having one (see `url_entry_on`)."""
        # Two views of the same digests. The sorted array is what the last-good copy stores; the
        # set of 8-byte prefixes is what requests probe (each reads `_lookup` once, so a refresh
        # swaps it whole). The set costs about 83 bytes an entry (8 MiB for 100,000) but answers
        # in one C call, where a bisect over the array made a Python int at each of its 17
        # steps: 1.6 us per expression, more than the hash.
        self._hosts_sorted = host_keys
        self._hosts = (None if host_keys is None
                       else frozenset(k.to_bytes(8, "big") for k in host_keys))
        self._lookup = frozenset(k.to_bytes(8, "big") for k in keys)
        self._sorted = keys

    def url_entry_on(self, host_prefixes: set[bytes]) -> bool | None:
        """Whether a URL-level entry has one of these host digest prefixes; None when the
        list's hosts are unknown (a hashed source that does not name them)."""
        hosts = self._hosts
        if hosts is None:
            return None if self._sorted else False
        return not hosts.isdisjoint(host_prefixes)

    def holds_any(self, prefixes: set[bytes]) -> bool:
        """Whether any of these 8-byte digest prefixes is in the list (see `IllegalLists.match`)."""
        return not self._lookup.isdisjoint(prefixes)


class IllegalLists:
    """All illegal-content lists; `match` names the first list that holds a request."""

    def __init__(self, lists: Sequence[IllegalList] = ()):
        self.lists = tuple(lists)

    def __bool__(self) -> bool:
        return bool(self.lists)

    def match(self, expressions: Iterable[str]) -> IllegalList | None:
        if not self.lists:
            return None
        # 8-byte digest prefixes as bytes: probing a set of bytes needs no int conversion.
        sha256 = _sha256
        prefixes = {sha256(e.encode("utf-8")).digest()[:8] for e in expressions}
        for lst in self.lists:
            if lst.holds_any(prefixes):
                return lst
        return None

    def url_entry_on(self, host: str) -> tuple[IllegalList | None, IllegalList | None]:
        """For a canonical `host`: the first list with a URL-level entry some request to it
        could match, and the first list whose hosts are unknown (either may be None). A list
        never says which entry, nor anything but its name."""
        if not self.lists:
            return None, None
        prefixes = {host_key(h) for h in lookup_hosts(host)}
        unknown = None
        for lst in self.lists:
            found = lst.url_entry_on(prefixes)
            if found:
                return lst, None
            if found is None and unknown is None:
                unknown = lst
        return None, unknown
