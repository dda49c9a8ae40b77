"""Compact, immutable indexes of the category lists (domains by label suffix, URL lists by host
+ path prefix, expressions in one RE2 set) and their on-disk cache. No Python object per entry;
build a new `ListIndex` aside and swap the whole object, nothing here changes after `build`.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import struct
import sys
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from urllib.parse import unquote_to_bytes

import re2

from ..files import replacing
from .formats import (
    DomainEntries,
    ListFormat,
    ParsedList,
    Usage,
    UT1Category,
    expression_options,
    read_list,
    read_ut1_folder,
    strip_url_host_prefix,
)
from .lists import ListProblem, ListSummary
from .urls import parent_domains

__all__ = [
    "FORMAT_VERSION",
    "MAX_EXPRESSION_INPUT",
    "DomainIndex",
    "ExpressionMatcher",
    "IndexCacheError",
    "IndexLoad",
    "ListIndex",
    "ListInfo",
    "ListSource",
    "UrlIndex",
    "domain_hash",
    "sources_fingerprint",
    "url_path_key",
    "ut1_sources",
]

FORMAT_VERSION = 1
"""Bump whenever the cache layout or the meaning of a stored value changes."""

MAX_EXPRESSION_INPUT = 8192
"""Expressions see at most this many characters of a URL (web servers refuse longer request
lines). RE2 is linear in its input, so this bounds the worst pattern to a few milliseconds."""

_MAGIC = b"SGINDEX\n"
_MAX_BUCKET_BITS = 16  # at most 65,536 buckets: ~16 hashes each at a million, a 256 KiB table
_MAX_TAG = 0xFFFF
_SCAN_LIMIT = 16  # a host with at most this many URL entries is scanned, not searched
_RUN_MEMO = 1024  # busy hosts (UT1 has ~200) whose URL paths are kept as bytes between lookups

for _code, _size in (("H", 2), ("I", 4), ("Q", 8)):
    if array(_code).itemsize != _size:  # pragma: no cover - every mainstream platform passes
        raise ImportError(f"array({_code!r}) is not {_size} bytes on this platform")

_blake2b = hashlib.blake2b
# Copying a ready hasher skips parsing `digest_size=8` per call: ~0.2 µs less on the hot path.
_BLAKE2B_8 = hashlib.blake2b(digest_size=8)
_crc32 = zlib.crc32
_from_bytes = int.from_bytes


def domain_hash(name: bytes) -> int:
    """The stored key of a normalised name: 64-bit BLAKE2b, the same in every process (unlike
    `hash()`, which Python salts per process). With a million entries, the odds that an unlisted
    name collides with one are about 1 in 10**13 per lookup."""
    return _from_bytes(_blake2b(name, digest_size=8).digest(), "little")


class _HashTable:
    """Sorted 64-bit hashes with two cheap filters in front of the binary search.

    `bitmap`: one bit per CRC-32 of a key (1 bit in ~32 set), so most names that are not listed
    are rejected for the price of a CRC, without computing BLAKE2b at all. `offsets`: where each
    value of the hash's top bits starts (up to 16 bits, ~8-16 entries per bucket), so the binary
    search covers a handful of entries, not a million.
    """

    __slots__ = ("hashes", "offsets", "bitmap", "mask", "shift")

    def __init__(self, hashes: array, offsets: array, bitmap: bytes) -> None:
        buckets = len(offsets) - 1
        if buckets < 1 or buckets & (buckets - 1) or len(bitmap) & (len(bitmap) - 1):
            raise ValueError("hash table offsets and bitmap must have power-of-two sizes")
        self.hashes = hashes
        self.offsets = offsets
        self.bitmap = bitmap
        self.mask = len(bitmap) * 8 - 1
        self.shift = 64 - (buckets.bit_length() - 1)

    @staticmethod
    def bitmap_size(count: int) -> int:
        """Bytes of bitmap for `count` keys: ~32 bits per key, a power of two, 128 B to 4 MiB."""
        bits = 1 << 10
        while bits < count * 32 and bits < 1 << 25:
            bits <<= 1
        return bits >> 3

    @staticmethod
    def make_bitmap(crcs: array, size: int) -> bytes:
        bitmap = bytearray(size)
        mask = size * 8 - 1
        for c in crcs:
            c &= mask
            bitmap[c >> 3] |= 1 << (c & 7)
        return bytes(bitmap)

    @staticmethod
    def make_offsets(hashes: array) -> array:
        bits = min(_MAX_BUCKET_BITS, max(0, (len(hashes) // 8).bit_length()))
        shift = 64 - bits
        offsets = array("I", [bisect_left(hashes, b << shift) for b in range(1 << bits)])
        offsets.append(len(hashes))
        return offsets

    def find(self, key: bytes) -> tuple[int, int]:
        """`(start, end)` of the entries whose hash is `key`'s; empty when there are none."""
        c = _crc32(key) & self.mask
        if not self.bitmap[c >> 3] >> (c & 7) & 1:
            return 0, 0
        hasher = _BLAKE2B_8.copy()
        hasher.update(key)
        h = _from_bytes(hasher.digest(), "little")
        b = h >> self.shift
        hashes = self.hashes
        start, end = self.offsets[b], self.offsets[b + 1]
        # One host can have thousands of URL entries (malware lists do): search for both ends.
        return bisect_left(hashes, h, start, end), bisect_right(hashes, h, start, end)

    def arrays(self, prefix: str) -> list[tuple[str, array | bytes]]:
        return [
            (f"{prefix}.hashes", self.hashes),
            (f"{prefix}.offsets", self.offsets),
            (f"{prefix}.bitmap", self.bitmap),
        ]

    @classmethod
    def from_arrays(cls, prefix: str, arrays: _Arrays) -> _HashTable:
        return cls(
            arrays.numbers(f"{prefix}.hashes"), arrays.numbers(f"{prefix}.offsets"),
            arrays.raw(f"{prefix}.bitmap"),
        )

    @property
    def nbytes(self) -> int:
        return _nbytes(self.hashes) + _nbytes(self.offsets) + len(self.bitmap)


def _nbytes(a: array) -> int:
    return a.itemsize * len(a)


def _hash_bytes(names: Sequence[bytes]) -> bytes:
    """The 8-byte BLAKE2b digests of `names`, concatenated (read back little-endian)."""
    digests: list[bytes] = []
    append, fresh = digests.append, _BLAKE2B_8.copy
    for name in names:
        hasher = fresh()
        hasher.update(name)
        append(hasher.digest())
    return b"".join(digests)


def _hashes_from(digests: bytes) -> array:
    hashes = array("Q")
    hashes.frombytes(digests)
    if sys.byteorder == "big":  # pragma: no cover - digests are read as little-endian integers
        hashes.byteswap()
    return hashes


def _check_tag(tag: int) -> None:
    if not 0 <= tag <= _MAX_TAG:
        raise ValueError(f"list tag {tag} is outside 0..{_MAX_TAG}; too many list files")


class DomainIndex:
    """Normalised domain names, matched by label suffix: `example.com` covers `example.com` and
    `a.b.example.com`, never `badexample.com`. IP-address hosts match exactly only.

    Each entry is a 64-bit hash (`domain_hash`), a tag (which list) and its line number, in
    three parallel arrays sorted by hash; the same name in several lists is several adjacent
    entries, in the order the lists were given.
    """

    __slots__ = ("_table", "_tags", "_lines")

    def __init__(self, table: _HashTable, tags: array, lines: array) -> None:
        count = len(table.hashes)
        if not len(tags) == len(lines) == count == table.offsets[-1]:
            raise ValueError("domain index arrays differ in length")
        self._table = table
        self._tags = tags
        self._lines = lines

    @classmethod
    def build(cls, parts: Iterable[tuple[int, Sequence[bytes], Sequence[int]]]) -> DomainIndex:
        """Index `(tag, names, line numbers)` parts; names are normalised ASCII bytes such as
        `formats.DomainEntries.names`."""
        digests: list[bytes] = []
        crcs = array("I")
        tags = array("H")
        lines = array("I")
        for tag, names, numbers in parts:
            _check_tag(tag)
            if len(names) != len(numbers):
                raise ValueError("names and line numbers differ in length")
            digests.append(_hash_bytes(names))
            crcs.extend(array("I", map(_crc32, names)))
            tags.extend(array("H", [tag]) * len(names))
            lines.extend(numbers)
        unsorted = _hashes_from(b"".join(digests))
        del digests
        bitmap = _HashTable.make_bitmap(crcs, _HashTable.bitmap_size(len(unsorted)))
        del crcs
        if len(unsorted) > 1:
            # Stable: equal hashes (one name in several lists) keep the order the lists came in.
            pick = operator.itemgetter(*sorted(range(len(unsorted)), key=unsorted.__getitem__))
            hashes, tags, lines = (
                array("Q", pick(unsorted)),
                array("H", pick(tags)),
                array("I", pick(lines)),
            )
        else:
            hashes = unsorted
        return cls(_HashTable(hashes, _HashTable.make_offsets(hashes), bitmap), tags, lines)

    def __len__(self) -> int:
        return len(self._tags)

    @property
    def nbytes(self) -> int:
        """Memory held by the index's arrays."""
        return self._table.nbytes + _nbytes(self._tags) + _nbytes(self._lines)

    def lookup(self, host: str) -> list[tuple[str, int, int]]:
        """Every entry covering normalised `host`, most specific first, as
        `(matched suffix, tag, line)`; `[]` when none does."""
        found: list[tuple[str, int, int]] = []
        if not host:
            return found
        table = self._table
        bitmap, mask, offsets, hashes = table.bitmap, table.mask, table.offsets, table.hashes
        shift = table.shift
        template = _BLAKE2B_8
        for suffix in parent_domains(host):
            name = suffix.encode()
            c = _crc32(name) & mask
            if bitmap[c >> 3] >> (c & 7) & 1:
                hasher = template.copy()
                hasher.update(name)
                h = _from_bytes(hasher.digest(), "little")
                b = h >> shift
                end = offsets[b + 1]
                i = bisect_left(hashes, h, offsets[b], end)
                while i < end and hashes[i] == h:
                    found.append((suffix, self._tags[i], self._lines[i]))
                    i += 1
        return found

    def _arrays(self, prefix: str) -> list[tuple[str, array | bytes]]:
        return self._table.arrays(prefix) + [
            (f"{prefix}.tags", self._tags),
            (f"{prefix}.lines", self._lines),
        ]

    @classmethod
    def _from_arrays(cls, prefix: str, arrays: _Arrays) -> DomainIndex:
        return cls(
            _HashTable.from_arrays(prefix, arrays),
            arrays.numbers(f"{prefix}.tags"),
            arrays.numbers(f"{prefix}.lines"),
        )


def url_path_key(path: str) -> bytes:
    """The form in which URL-list paths are compared, applied to entries and requests alike.

    As squidGuard does: lowercase (it lowercases the whole URL and every entry) and percent-
    decoded; also `//` collapsed to `/` (squidGuard's bypass fix) and the fragment dropped. The
    query stays: `example.com/watch?v=x` is a valid prefix entry. `""` means no path at all.
    """
    if not path:
        return b""
    if path.isascii() and "%" not in path and "#" not in path and "//" not in path:
        key = path.lower().encode("ascii")  # the common case, the same result as below
        return key if key[:1] == b"/" else b"/" + key
    raw = path.encode("utf-8", "surrogateescape").split(b"#", 1)[0]
    for _ in range(4):  # "%2541" -> "%41" -> "A": decode until stable, as Safe Browsing does
        if b"%" not in raw:
            break
        decoded = unquote_to_bytes(raw)
        if decoded == raw:
            break
        raw = decoded
    raw = raw.lower()
    while b"//" in raw:
        raw = raw.replace(b"//", b"/")
    return raw if raw.startswith(b"/") else b"/" + raw


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of `a` and `b`: the first differing byte is where the
    highest bit of their XOR (as big-endian integers) falls; C speed, no loop over characters."""
    n = min(len(a), len(b))
    x = _from_bytes(a[:n], "big") ^ _from_bytes(b[:n], "big")
    return n - (x.bit_length() + 7) // 8


class UrlIndex:
    """URL-list entries, squidGuard semantics (see the module notes in `ListIndex`).

    An entry with a path matches URLs on exactly its host (after `strip_url_host_prefix`) whose
    path starts with the entry's path, compared as `url_path_key`: `example.com/foo` matches
    `/foo`, `/foo/bar` and `/foobar`. An entry without a path covers the whole domain, subdomains
    included, like a domain-list entry.

    Storage: per path entry a host hash (sorted, then by path), a tag and a line in parallel
    arrays, and the paths in one bytes blob with offsets; domain-only entries in a `DomainIndex`.
    """

    __slots__ = ("_table", "_blob", "_starts", "_tags", "_lines", "_domains", "_runs")

    def __init__(
        self,
        table: _HashTable,
        blob: bytes,
        starts: array,
        tags: array,
        lines: array,
        domains: DomainIndex,
    ) -> None:
        count = len(table.hashes)
        if not (
            len(tags) == len(lines) == count == table.offsets[-1] == len(starts) - 1
            and starts[-1] == len(blob)
        ):
            raise ValueError("URL index arrays differ in length")
        self._table = table
        self._blob = blob
        self._starts = starts
        self._tags = tags
        self._lines = lines
        self._domains = domains
        # The paths of busy hosts (more than _SCAN_LIMIT entries), as bytes objects, made on
        # first use so binary searches run in C: a bounded memo, not state.
        self._runs: dict[int, list[bytes]] = {}

    @classmethod
    def build(cls, entries: Iterable[tuple[int, str, str, int]]) -> UrlIndex:
        """Index `(tag, host, path, line)` entries, such as `formats.UrlEntry` with a tag; `host`
        is normalised, `path` as written (`""` for a domain-only entry)."""
        rows: list[tuple[int, bytes, int, int]] = []
        crcs = array("I")
        domain_parts: dict[int, tuple[list[bytes], array]] = {}
        for tag, host, path, line in entries:
            _check_tag(tag)
            name = strip_url_host_prefix(host).encode()
            key = url_path_key(path)
            if key:
                rows.append((domain_hash(name), key, tag, line))
                crcs.append(_crc32(name))
            else:
                names, lines = domain_parts.setdefault(tag, ([], array("I")))
                names.append(name)
                lines.append(line)
        rows.sort()  # by host hash, then path: a host's paths are one sorted run
        hashes = array("Q", [r[0] for r in rows])
        starts = array("I", [0])
        position = 0
        for r in rows:
            position += len(r[1])
            starts.append(position)
        table = _HashTable(
            hashes,
            _HashTable.make_offsets(hashes),
            _HashTable.make_bitmap(crcs, _HashTable.bitmap_size(len(rows))),
        )
        return cls(
            table,
            b"".join([r[1] for r in rows]),
            starts,
            array("H", [r[2] for r in rows]),
            array("I", [r[3] for r in rows]),
            DomainIndex.build((tag, names, lines) for tag, (names, lines) in domain_parts.items()),
        )

    def __len__(self) -> int:
        return len(self._tags) + len(self._domains)

    @property
    def nbytes(self) -> int:
        """Memory held by the index's arrays."""
        return (
            self._table.nbytes
            + len(self._blob)
            + _nbytes(self._starts)
            + _nbytes(self._tags)
            + _nbytes(self._lines)
            + self._domains.nbytes
        )

    def _path(self, i: int) -> bytes:
        return self._blob[self._starts[i] : self._starts[i + 1]]

    def lookup(self, host: str, path: str) -> list[tuple[str, str, int, int]]:
        """Entries matching a request, as `(host or domain, path prefix, tag, line)`: path
        entries first, longest prefix first (one entry in several lists: in list order), then
        domain-only entries (path `""`), most specific first. `host` is normalised; `path` is
        the path and query (`/a/b?q=1`)."""
        found: list[tuple[str, str, int, int]] = []
        name = strip_url_host_prefix(host) if host[:3] in ("www", "web", "ftp") else host
        lo, hi = self._table.find(name.encode())
        if lo < hi:
            query = url_path_key(path or "/")
            if hi - lo <= _SCAN_LIMIT:
                blob, starts = self._blob, self._starts
                hits = [
                    i for i in range(lo, hi) if query.startswith(blob[starts[i] : starts[i + 1]])
                ]
                if len(hits) > 1:
                    hits.sort(key=lambda i: starts[i] - starts[i + 1])  # longest first, stable
            else:
                hits = self._walk(query, lo, hi)
            tags, lines, path_of = self._tags, self._lines, self._path
            found.extend(
                (name, path_of(i).decode("utf-8", "replace"), tags[i], lines[i]) for i in hits
            )
        if len(self._domains):
            found.extend(
                (suffix, "", tag, line) for suffix, tag, line in self._domains.lookup(host)
            )
        return found

    def path_tags(self, host: str) -> frozenset[int]:
        """The tags of the entries with a path on exactly normalised `host` (after the same
        `www.` stripping as `lookup`): the lists that decide some URL on it by its path."""
        name = strip_url_host_prefix(host) if host[:3] in ("www", "web", "ftp") else host
        lo, hi = self._table.find(name.encode())
        return frozenset(self._tags[lo:hi]) if lo < hi else frozenset()

    def _walk(self, query: bytes, lo: int, end: int) -> list[int]:
        """Indexes in [lo, end) whose path is a prefix of `query`, longest first.

        Walk down from the largest entry <= query. An entry that is a prefix is a match, and any
        further match is a prefix of it; one that is not shares only a common prefix with the
        query, so any further match is a prefix of that. Each step shortens the query, so a host
        with thousands of entries (malware lists have them) costs a few binary searches.
        """
        run = self._runs.get(lo)
        if run is None:
            blob, starts = self._blob, self._starts
            run = [blob[starts[i] : starts[i + 1]] for i in range(lo, end)]
            if len(self._runs) >= _RUN_MEMO:
                self._runs.clear()
            self._runs[lo] = run
        hits: list[int] = []
        end = len(run)
        while query and end > 0:
            i = bisect_right(run, query, 0, end) - 1
            if i < 0:
                break
            entry = run[i]
            if query.startswith(entry):
                first = i
                while first > 0 and run[first - 1] == entry:
                    first -= 1
                hits.extend(range(lo + first, lo + i + 1))
                query, end = entry[:-1], first
            else:
                query, end = query[: _common_prefix(entry, query)], i
        return hits

    def _arrays(self, prefix: str) -> list[tuple[str, array | bytes]]:
        return (
            self._table.arrays(prefix)
            + [
                (f"{prefix}.paths", self._blob),
                (f"{prefix}.starts", self._starts),
                (f"{prefix}.tags", self._tags),
                (f"{prefix}.lines", self._lines),
            ]
            + self._domains._arrays(f"{prefix}.domains")
        )

    @classmethod
    def _from_arrays(cls, prefix: str, arrays: _Arrays) -> UrlIndex:
        return cls(
            _HashTable.from_arrays(prefix, arrays),
            arrays.raw(f"{prefix}.paths"),
            arrays.numbers(f"{prefix}.starts"),
            arrays.numbers(f"{prefix}.tags"),
            arrays.numbers(f"{prefix}.lines"),
            DomainIndex._from_arrays(f"{prefix}.domains", arrays),
        )


class ExpressionMatcher:
    """Every list expression in one RE2 set, searched once per URL.

    The URL is matched without its scheme (`example.com/a?b`, port included when the URL has
    one), case-insensitively, as squidGuard matches `expressionlist` patterns. RE2 runs in time
    linear in the input whatever the pattern, so a pathological expression cannot stall the event
    loop; `MAX_EXPRESSION_INPUT` bounds the input too.
    """

    __slots__ = ("_set", "_items")

    def __init__(self, items: Sequence[tuple[str, int, int]]) -> None:
        """`items`: `(pattern, tag, line)`, patterns already accepted by `formats`."""
        self._items = tuple((str(p), int(t), int(n)) for p, t, n in items)
        self._set = None
        if self._items:
            rset = re2.Set.SearchSet(expression_options())
            for pattern, tag, _ in self._items:
                _check_tag(tag)
                rset.Add(pattern)
            rset.Compile()
            self._set = rset

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> tuple[tuple[str, int, int], ...]:
        """`(pattern, tag, line)` for every expression, in index order."""
        return self._items

    def match(self, url: str) -> list[tuple[str, int, int]]:
        """`(pattern, tag, line)` of every expression found in `url`, in list order. A scheme
        (`https://`) at the start is removed first; the rest is matched as given."""
        if self._set is None:
            return []
        scheme = url.find("://", 0, 16)
        if scheme > 0 and url[:scheme].isalpha():
            url = url[scheme + 3 :]
        hits = self._set.Match(url[:MAX_EXPRESSION_INPUT])
        if not hits:
            return []
        return [self._items[k] for k in sorted(hits)]


# -- the whole set of lists ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListSource:
    """One list file to index and the category its entries belong to, or domains written
    elsewhere (`entries`, such as the config's `tls.do_not_decrypt_hosts`)."""

    category: str
    path: Path
    """The list file; for `entries`, the file they are written in (for messages)."""
    format: ListFormat | None = None
    """None: decided by `formats.detect_format`."""
    entries: tuple[str, ...] = ()
    """Normalised domains given directly; when set, `path` is not read."""


@dataclass(frozen=True, slots=True)
class ListInfo:
    """What a tag stands for: one list file, or one half (block or allow) of an adblock file."""

    category: str
    path: str
    format: str
    allow: bool = False
    """True for adblock `@@` exceptions: a match means "allowed", not "in this category"."""


class _Arrays(dict[str, array | bytes]):
    """The arrays a cache file holds, by name; each read as the kind its index expects (a
    TypeError, so a damaged cache, when it is not)."""

    def numbers(self, name: str) -> array:
        value = self[name]
        if not isinstance(value, array):
            raise TypeError(f"{name} is not an array")
        return value

    def raw(self, name: str) -> bytes:
        value = self[name]
        if not isinstance(value, bytes):
            raise TypeError(f"{name} is not bytes")
        return value


class IndexCacheError(Exception):
    """The cache file cannot be used: missing, unreadable, from another format version, built
    from other lists, or damaged. Recover by building from the list files (and saving again);
    `ListIndex.load_or_build` does exactly that."""


@dataclass(frozen=True, slots=True)
class IndexLoad:
    """What `ListIndex.load_or_build` did."""

    index: ListIndex
    from_cache: bool
    note: str
    """Why the cache was not used or not written, for the log; `""` when all went well."""


def sources_fingerprint(sources: Sequence[ListSource]) -> str:
    """A digest of the sources' paths, formats, sizes and modification times (ns), and of the
    cache format version: equal fingerprints mean the cache is still good. Take it *before*
    reading the files, so a file that changes during a build makes the next start rebuild."""
    digest = hashlib.sha256(f"schoolgate-list-index {FORMAT_VERSION}\n".encode())
    for source in sources:
        path = os.path.abspath(source.path)
        try:
            st = os.stat(path)
            state: list[str | int | None] = [st.st_size, st.st_mtime_ns]
        except OSError as e:
            state = ["unreadable", e.errno]
        record = [source.category, str(source.format or ""), path, *state, *source.entries]
        digest.update(json.dumps(record).encode() + b"\n")
    return digest.hexdigest()


def ut1_sources(
    root: Path, *, categories: Iterable[str] | None = None, very_restrictive: bool = False
) -> list[ListSource]:
    """The list files of a UT1-layout tree as sources: every category's `domains` (and split
    parts), `urls`, `expressions` and `usage`; `very_restrictive_expression` only when asked."""
    wanted = None if categories is None else set(categories)
    sources: list[ListSource] = []
    category: UT1Category
    for category in read_ut1_folder(root):
        if wanted is not None and category.name not in wanted:
            continue
        name = category.name
        sources.extend(ListSource(name, p, ListFormat.DOMAINS) for p in category.domains)
        sources.extend(ListSource(name, p, ListFormat.URLS) for p in category.urls)
        if category.expressions:
            sources.append(ListSource(name, category.expressions, ListFormat.EXPRESSIONS))
        if very_restrictive and category.very_restrictive:
            sources.append(ListSource(name, category.very_restrictive, ListFormat.EXPRESSIONS))
        if category.usage:
            sources.append(ListSource(name, category.usage, ListFormat.USAGE))
    return sources


@dataclass(frozen=True, slots=True, eq=False)
class ListIndex:
    """Every category list, compiled: what the classifier looks hosts and URLs up in.

    Matching semantics (squidGuard's, which the UT1 lists are written for):
    - domains: label suffix; IP hosts exactly (`DomainIndex`);
    - URL lists: host without `www.`/`web.`/`ftp.` (+digits), then a plain, case-insensitive
      prefix of the percent-decoded path and query; a host-only entry covers its domain
      (`UrlIndex`);
    - expressions: RE2, case-insensitive, over the URL without its scheme (`ExpressionMatcher`).
    Tags in every result index `lists`.

    Sources: squidGuard's configuration guide ("The database": all URLs are lowercased before
    matching; "URLlists": `(www|web|ftp)[0-9]*` and the port are ignored, `foo.com/~badguy`
    matches `www2.foo.com/~badguy/whatever` but not `bar.foo.com/~badguy`); its code (sgDb.c
    `defined()` compares URL-list keys with `strncmp`, a plain prefix; sg.y matches expression
    lists against `furl`, the URL after `://`, compiled `REG_EXTENDED | REG_ICASE` by default).
    Where we differ on purpose: a host-only URL entry covers the domain by label (squidGuard's
    string prefix would also hit `example.community`), fragments in entries are dropped, and
    `web20.pl` is not cut down to `pl`.
    """

    lists: tuple[ListInfo, ...]
    domains: DomainIndex
    urls: UrlIndex
    expressions: ExpressionMatcher
    summaries: tuple[ListSummary, ...]
    """One per source file, in source order; `str()` of each is the line a load prints."""
    usages: MappingProxyType[str, Usage]
    """What each category's UT1 `usage` file says, by category."""
    fingerprint: str
    """`sources_fingerprint` of the sources, taken before they were read."""

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def build(cls, sources: Sequence[ListSource]) -> ListIndex:
        """Read and index every source. Bad lines are skipped and reported in `summaries`;
        a file that cannot be read at all raises `OSError`, naming it."""
        fingerprint = sources_fingerprint(sources)
        lists: list[ListInfo] = []
        summaries: list[ListSummary] = []
        domain_parts: list[tuple[int, Sequence[bytes], Sequence[int]]] = []
        url_entries: list[tuple[int, str, str, int]] = []
        expressions: list[tuple[str, int, int]] = []
        usages: dict[str, Usage] = {}

        def tag_for(source: ListSource, fmt: ListFormat, allow: bool = False) -> int:
            lists.append(ListInfo(source.category, str(source.path), str(fmt), allow))
            _check_tag(len(lists) - 1)
            return len(lists) - 1

        for source in sources:
            parsed = _inline(source) if source.entries else read_list(Path(source.path),
                                                                      source.format)
            summaries.append(parsed.summary)
            if parsed.block is not None:
                domain_parts.append(
                    (tag_for(source, parsed.format), parsed.block.names, parsed.block.lines)
                )
            if parsed.allow is not None and len(parsed.allow):
                tag = tag_for(source, parsed.format, allow=True)
                domain_parts.append((tag, parsed.allow.names, parsed.allow.lines))
            if parsed.urls is not None:
                tag = tag_for(source, parsed.format)
                url_entries.extend((tag, e.host, e.path, e.line) for e in parsed.urls)
            if parsed.format is ListFormat.EXPRESSIONS:
                tag = tag_for(source, parsed.format)
                expressions.extend((e.pattern, tag, e.line) for e in parsed.expressions)
            if parsed.usage is not None:
                usages[source.category] = parsed.usage
        return cls(
            lists=tuple(lists),
            domains=DomainIndex.build(domain_parts),
            urls=UrlIndex.build(url_entries),
            expressions=ExpressionMatcher(expressions),
            summaries=tuple(summaries),
            usages=MappingProxyType(usages),
            fingerprint=fingerprint,
        )

    # -- looking up ------------------------------------------------------------------------------

    def lookup_host(self, host: str) -> list[tuple[str, int, int]]:
        """Domain-list entries covering normalised `host`: `(suffix, tag, line)`, most specific
        first. Tags index `lists`; a tag whose `ListInfo.allow` is true is an exception."""
        return self.domains.lookup(host)

    def lookup_url(self, host: str, path: str) -> list[tuple[str, str, int, int]]:
        """URL-list entries matching the request: `(host, path prefix, tag, line)`, path
        `""` for a domain-only entry. `path` includes the query."""
        return self.urls.lookup(host, path)

    def url_path_tags(self, host: str) -> frozenset[int]:
        """Tags of the URL-list entries with a path on normalised `host` (see `UrlIndex`)."""
        return self.urls.path_tags(host)

    def match_expressions(self, url: str) -> list[tuple[str, int, int]]:
        """Expressions found in `url` (scheme optional): `(pattern, tag, line)`."""
        return self.expressions.match(url)

    @property
    def nbytes(self) -> int:
        """Memory held by the domain and URL arrays (expressions not counted)."""
        return self.domains.nbytes + self.urls.nbytes

    def summary_lines(self) -> list[str]:
        """One line per source file, for the log: entries and bad lines skipped."""
        return [str(s) for s in self.summaries]

    # -- the cache -------------------------------------------------------------------------------

    def _arrays(self) -> list[tuple[str, array | bytes]]:
        return self.domains._arrays("domains") + self.urls._arrays("urls")

    def save(self, path: Path) -> None:
        """Write the index to `path` atomically (a temporary file, then a rename), so a reader
        sees the old cache or the new one, never half of one."""
        path = Path(path)
        arrays = self._arrays()
        crc = 0
        specs = []
        for name, data in arrays:
            crc = _crc32(data, crc)
            code = "bytes" if isinstance(data, bytes) else data.typecode
            specs.append([name, code, len(data)])
        header = {
            "version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "byteorder": sys.byteorder,
            "arrays": specs,
            "crc32": crc,
            "lists": [[i.category, i.path, i.format, i.allow] for i in self.lists],
            "expressions": [list(item) for item in self.expressions.items],
            "usages": {k: [u.black, u.white, list(u.names)] for k, u in self.usages.items()},
            "summaries": [
                [s.path, s.entries, [[p.line, p.message] for p in s.problems]]
                for s in self.summaries
            ],
        }
        encoded = json.dumps(header, separators=(",", ":")).encode()
        with replacing(path, mode=0o644, durable=True) as f:
            f.write(_MAGIC + struct.pack("<I", len(encoded)) + encoded)
            for _, data in arrays:
                if isinstance(data, bytes):
                    f.write(data)
                else:
                    data.tofile(f)

    @classmethod
    def load(cls, path: Path, fingerprint: str | None = None) -> ListIndex:
        """Read a cache written by `save`. With `fingerprint` (from `sources_fingerprint`), a
        cache built from other lists is refused. Raises `IndexCacheError` for any cache that
        cannot be used, with the reason."""
        try:
            with open(path, "rb") as f:
                if f.read(len(_MAGIC)) != _MAGIC:
                    raise IndexCacheError(f"{path}: not a Schoolgate list index")
                (size,) = struct.unpack("<I", f.read(4))
                header = json.loads(f.read(size))
                if header.get("version") != FORMAT_VERSION:
                    raise IndexCacheError(
                        f"{path}: index format {header.get('version')},"
                        f" this version reads {FORMAT_VERSION}"
                    )
                if fingerprint is not None and header["fingerprint"] != fingerprint:
                    raise IndexCacheError(f"{path}: built from other or older list files")
                specs = [(name, code, int(count)) for name, code, count in header["arrays"]]
                payload = sum(n * (1 if c == "bytes" else array(c).itemsize) for _, c, n in specs)
                if payload != os.fstat(f.fileno()).st_size - f.tell():
                    raise IndexCacheError(f"{path}: damaged (wrong length)")
                arrays = _Arrays()
                crc = 0
                for name, code, count in specs:
                    data: array | bytes
                    if code == "bytes":
                        data = f.read(count)
                    else:
                        data = array(code)
                        data.fromfile(f, count)
                    arrays[name] = data
                    crc = _crc32(data, crc)
                if crc != header["crc32"]:
                    raise IndexCacheError(f"{path}: damaged (checksum mismatch)")
            if header["byteorder"] != sys.byteorder:  # pragma: no cover - moved between hosts
                for value in arrays.values():
                    if isinstance(value, array):
                        value.byteswap()
            return cls._from_header(header, arrays)
        except IndexCacheError:
            raise
        except (OSError, EOFError, ValueError, LookupError, TypeError, struct.error) as e:
            raise IndexCacheError(f"{path}: cannot be read ({e or type(e).__name__})") from None
        except re2.error as e:
            raise IndexCacheError(f"{path}: an expression no longer compiles ({e})") from None

    @classmethod
    def _from_header(cls, header: dict, arrays: _Arrays) -> ListIndex:
        summaries = []
        for where, entries, problems in header["summaries"]:
            summary = ListSummary(where, entries)
            summary.problems.extend(ListProblem(where, line, message) for line, message in problems)
            summaries.append(summary)
        return cls(
            lists=tuple(ListInfo(c, p, f, a) for c, p, f, a in header["lists"]),
            domains=DomainIndex._from_arrays("domains", arrays),
            urls=UrlIndex._from_arrays("urls", arrays),
            expressions=ExpressionMatcher([tuple(item) for item in header["expressions"]]),
            summaries=tuple(summaries),
            usages=MappingProxyType(
                {k: Usage(b, w, tuple(n)) for k, (b, w, n) in header["usages"].items()}
            ),
            fingerprint=header["fingerprint"],
        )

    @classmethod
    def load_or_build(cls, sources: Sequence[ListSource], cache: Path) -> IndexLoad:
        """The index for `sources`: from `cache` when it was built from these very files,
        otherwise built from the files and saved to `cache` for next time. A cache that cannot
        be written does not stop the build; `note` says why."""
        fingerprint = sources_fingerprint(sources)
        try:
            return IndexLoad(cls.load(cache, fingerprint), True, "")
        except IndexCacheError as e:
            reason = str(e)
        index = cls.build(sources)
        try:
            index.save(cache)
        except OSError as e:
            return IndexLoad(index, False, f"{reason}; rebuilt, but the cache was not written: {e}")
        return IndexLoad(index, False, f"{reason}; rebuilt from the list files")


def _inline(source: ListSource) -> ParsedList:
    """Domains given in `source.entries` (already normalised), as if read from a list file:
    entry N is "line" N of the list."""
    where = str(source.path)
    block = DomainEntries(where, [e.encode("ascii") for e in source.entries],
                          array("I", range(1, len(source.entries) + 1)))
    summary = ListSummary(where, len(block))
    return ParsedList(ListFormat.DOMAINS, where, summary, block=block)
