"""The compiled list index: label-suffix domain matching, squidGuard URL-prefix matching, RE2
expressions, the on-disk cache (round trip and invalidation), and a real UT1 subset. The full
1.07M-domain index is built only by benchmarks/classify_index.py."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest

from sample_school import REPO
from schoolgate.classify.formats import ListFormat, read_domains, read_urls
from schoolgate.classify.index import (
    FORMAT_VERSION,
    DomainIndex,
    ExpressionMatcher,
    IndexCacheError,
    ListIndex,
    ListSource,
    UrlIndex,
    domain_hash,
    sources_fingerprint,
    url_path_key,
    ut1_sources,
)

UT1 = REPO.parent / "shared" / "data" / "ut1"


@pytest.fixture(scope="module")
def ut1() -> Path:
    if not UT1.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the UT1 lists must be present in CI, expected at {UT1}")
        pytest.skip(f"UT1 lists not found at {UT1} (shared/data is not next to this checkout)")
    return UT1


def domains(*parts: tuple[int, list[str]]) -> DomainIndex:
    return DomainIndex.build(
        (tag, [n.encode() for n in names], array("I", range(1, len(names) + 1)))
        for tag, names in parts
    )


# ---------------------------------------------------------------------------------------------
# Domains: label suffix


@pytest.fixture(scope="module")
def small() -> DomainIndex:
    return domains(
        (0, ["example.com", "b.example.com", "bet365.com", "192.0.2.10", "2.10", "com.evil.org"]),
        (1, ["example.com", "2001:db8::1"]),
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        # An entry covers itself and every name under it, most specific match first.
        ("example.com", [("example.com", 0, 1), ("example.com", 1, 1)]),
        (
            "a.b.example.com",
            [("b.example.com", 0, 2), ("example.com", 0, 1), ("example.com", 1, 1)],
        ),
        ("www.bet365.com", [("bet365.com", 0, 3)]),
        # Never a name that merely ends with the same letters, or has it in the middle.
        ("badexample.com", []),
        ("example.com.evil.org", [("com.evil.org", 0, 6)]),  # via its own entry, not example.com
        ("example.co", []),
        ("com", []),
        # IP addresses match exactly, never as a "suffix" of another address.
        ("192.0.2.10", [("192.0.2.10", 0, 4)]),
        # Not an address, and no DNS name has an all-digit last label: exact matches only.
        ("10.192.0.2.10", []),
        ("198.51.2.10", []),
        ("2001:db8::1", [("2001:db8::1", 1, 2)]),
        ("", []),
    ],
)
def test_domain_suffix_semantics(small, host, expected):
    assert small.lookup(host) == expected


def test_domain_hash_is_stable_across_processes():
    # Python's hash() is salted per process; the index must not depend on it.
    script = "from schoolgate.classify.index import domain_hash; print(domain_hash(b'example.com'))"
    values = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert values == {str(domain_hash(b"example.com"))}
    assert domain_hash(b"example.com") == int.from_bytes(
        __import__("hashlib").blake2b(b"example.com", digest_size=8).digest(), "little"
    )


def test_domain_index_finds_every_entry_and_few_others():
    rng = random.Random(7)
    names = sorted(
        {f"h{rng.getrandbits(40):x}.example{rng.randint(0, 50)}.org" for _ in range(20000)}
    )
    index = domains((3, names))
    assert len(index) == len(names)
    for line, name in enumerate(names, start=1):
        assert index.lookup(name) == [(name, 3, line)]
        assert index.lookup("www." + name)[0] == (name, 3, line)
    assert not any(index.lookup(f"n{i}.example.net") for i in range(2000))
    # Compact: hashes, tags, lines and the two filters, not a Python object per entry.
    assert index.nbytes < len(names) * (14 + 8)


def test_domain_index_rejects_an_out_of_range_tag():
    with pytest.raises(ValueError, match="tag"):
        domains((70000, ["example.com"]))


# ---------------------------------------------------------------------------------------------
# URL lists: squidGuard prefix semantics


@pytest.fixture(scope="module")
def urls() -> UrlIndex:
    rows = [
        # The examples of squidGuard's configuration documentation ("URLlists").
        (0, "foo.com", "/~badguy", 1),
        (0, "bar.com", "/whatever/suspect", 2),
        # Case and percent-escapes in the entry do not matter.
        (1, "example.com", "/Foo", 1),
        (1, "dmoz.org", "/World/Espa%c3%b1ol/Juegos/", 2),
        # A query is part of the prefix.
        (1, "video.example", "/watch?v=abc", 3),
        # Nested prefixes on one host, and the same entry in two lists.
        (2, "nested.example", "/a", 1),
        (2, "nested.example", "/a/b", 2),
        (2, "nested.example", "/a/c", 3),
        (3, "nested.example", "/a/b", 7),
        # A domain-only entry covers the whole domain.
        (4, "whole.example", "", 1),
        (4, "www.stripped.example", "", 2),
        (5, "1.2.3.4", "/images/", 1),
    ]
    return UrlIndex.build(rows)


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        # squidGuard documents that these match foo.com/~badguy ...
        ("foo.com", "/~badguy", [("foo.com", "/~badguy", 0, 1)]),
        ("foo.com", "/~badguy/whatever", [("foo.com", "/~badguy", 0, 1)]),
        ("www2.foo.com", "/~badguy/whatever", [("foo.com", "/~badguy", 0, 1)]),
        ("web56.foo.com", "/~badguy/whatever", [("foo.com", "/~badguy", 0, 1)]),
        # ... and these do not: another host, a subdomain, another path.
        ("barfoo.com", "/~badguy", []),
        ("bar.foo.com", "/~badguy", []),
        ("foo.com", "/~goodguy", []),
        # The prefix is a plain string prefix, as squidGuard compares (strncmp): /~badguyz too.
        ("foo.com", "/~badguyz", [("foo.com", "/~badguy", 0, 1)]),
        ("bar.com", "/whatever", []),
        # Case-insensitive, and percent-escapes decoded on both sides.
        ("example.com", "/foo/x", [("example.com", "/foo", 1, 1)]),
        ("example.com", "/FOO", [("example.com", "/foo", 1, 1)]),
        ("example.com", "/%46oo", [("example.com", "/foo", 1, 1)]),
        (
            "dmoz.org",
            "/world/espa%C3%B1ol/juegos/x",
            [("dmoz.org", "/world/español/juegos/", 1, 2)],
        ),
        ("dmoz.org", "/World/Español/Juegos/", [("dmoz.org", "/world/español/juegos/", 1, 2)]),
        (
            "dmoz.org",
            "//World//Espa%C3%B1ol/Juegos/",
            [("dmoz.org", "/world/español/juegos/", 1, 2)],
        ),
        # Queries.
        ("video.example", "/watch?v=abcdef", [("video.example", "/watch?v=abc", 1, 3)]),
        ("video.example", "/watch?v=xyz", []),
        # Longest prefix first; duplicates across lists adjacent.
        (
            "nested.example",
            "/a/b/c",
            [
                ("nested.example", "/a/b", 2, 2),
                ("nested.example", "/a/b", 3, 7),
                ("nested.example", "/a", 2, 1),
            ],
        ),
        (
            "nested.example",
            "/a/c",
            [("nested.example", "/a/c", 2, 3), ("nested.example", "/a", 2, 1)],
        ),
        ("nested.example", "/a", [("nested.example", "/a", 2, 1)]),
        ("nested.example", "/b", []),
        # Domain-only entries: the domain and its subdomains, any path.
        ("whole.example", "/", [("whole.example", "", 4, 1)]),
        ("deep.sub.whole.example", "/x?y", [("whole.example", "", 4, 1)]),
        ("notwhole.example", "/", []),
        ("www.stripped.example", "/", [("stripped.example", "", 4, 2)]),
        # IPv4 hosts.
        ("1.2.3.4", "/images/a.png", [("1.2.3.4", "/images/", 5, 1)]),
        ("1.2.3.4", "/", []),
    ],
)
def test_url_prefix_semantics(urls, host, path, expected):
    assert urls.lookup(host, path) == expected


def test_url_prefix_search_matches_brute_force_on_a_busy_host():
    # Thousands of entries on one host (like malware/urls): the walk must find exactly the
    # entries a brute-force prefix test finds, longest first.
    rng = random.Random(11)

    def random_path(length: int) -> str:
        return re.sub("/+", "/", "/" + "".join(rng.choice("ab/") for _ in range(length)))

    paths = sorted({random_path(rng.randint(0, 9)) for _ in range(3000)})
    # Every path in list 1, every third one in list 0 too: duplicates must come in list order.
    rows = [(1, "busy.example", p, n) for n, p in enumerate(paths, start=1)]
    rows += [(0, "busy.example", p, n) for n, p in enumerate(paths[::3], start=1)]
    index = UrlIndex.build(reversed(rows))
    for count in (3000, 12):  # searched (a busy host), and scanned (a host with few entries)
        small = UrlIndex.build(rows[:count])
        for _ in range(300):
            query = random_path(rng.randint(0, 12))
            expected = sorted(
                ((p, tag, n) for tag, _, p, n in rows[:count] if query.startswith(p)),
                key=lambda item: (-len(item[0]), item[1]),
            )
            got = [(p, tag, line) for _, p, tag, line in small.lookup("busy.example", query)]
            assert got == expected, query
    for _ in range(300):
        query = random_path(rng.randint(0, 12))
        expected = sorted(
            ((p, tag, n) for tag, _, p, n in rows if query.startswith(p)),
            key=lambda item: (-len(item[0]), item[1]),
        )
        got = [(p, tag, line) for _, p, tag, line in index.lookup("busy.example", query)]
        assert got == expected, query


def test_url_path_key():
    assert url_path_key("") == b""
    assert url_path_key("/A%2541?Q=1#frag") == b"/aa?q=1"
    assert url_path_key("?x") == b"/?x"
    assert url_path_key("//a///b") == b"/a/b"


# ---------------------------------------------------------------------------------------------
# Expressions


def test_expression_matcher():
    matcher = ExpressionMatcher(
        [
            ("(/banner/|/Advertisement/)", 7, 1),
            ("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+/search\\?q=[0-9]+$", 8, 1),
        ]
    )
    # The scheme is not part of what is matched, so ^ anchors at the host (squidGuard's furl).
    assert matcher.match("http://203.0.113.9/search?q=42") == [
        ("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+/search\\?q=[0-9]+$", 8, 1)
    ]
    assert matcher.match("203.0.113.9/search?q=42")[0][1] == 8
    assert matcher.match("ads.example/x?u=http://203.0.113.9/search?q=42") == []
    # Case-insensitive, as squidGuard compiles expression lists by default.
    assert matcher.match("https://news.example/advertisement/x") == [
        ("(/banner/|/Advertisement/)", 7, 1)
    ]
    assert matcher.match("https://news.example/article") == []
    assert ExpressionMatcher([]).match("https://anything.example/") == []


def test_catastrophic_backtracking_patterns_run_in_re2():
    # Patterns that take exponential time in a backtracking engine (Python's re) run in linear
    # time in RE2: here they simply finish with the right answer. (Timing belongs in `make bench`.)
    matcher = ExpressionMatcher([("(a+)+$", 0, 1), ("(x|x)*y", 0, 2)])
    assert type(matcher._set).__module__.startswith("re2")  # the engine is RE2, not re
    assert matcher.match("https://example.com/" + "a" * 5_000 + "!") == []  # under the 8 KiB cap
    assert matcher.match("https://example.com/" + "x" * 5_000) == []
    assert matcher.match("https://example.com/aaa") == [("(a+)+$", 0, 1)]


# ---------------------------------------------------------------------------------------------
# The whole index and its cache


def make_lists(root: Path) -> list[ListSource]:
    (root / "ut1" / "gambling").mkdir(parents=True)
    (root / "ut1" / "gambling" / "domains").write_text("bet.example\n.dotted.example\n192.0.2.7\n")
    (root / "ut1" / "gambling" / "urls").write_text("casino.example/Poker\nwhole-site.example\n")
    (root / "ut1" / "gambling" / "expressions").write_text("/roulette/\n")
    (root / "ut1" / "gambling" / "usage").write_text("black\n")
    (root / "ut1" / "games").mkdir()
    (root / "ut1" / "games" / "domains").write_text("bet.example\nplay.example\n")
    (root / "adblock.txt").write_text("||ads.example^\n@@||ok.ads.example^\n##.banner\n")
    (root / "hosts").write_text("0.0.0.0 tracker.example\n")
    return ut1_sources(root / "ut1") + [
        ListSource("ads", root / "adblock.txt"),
        ListSource("trackers", root / "hosts", ListFormat.HOSTS),
    ]


def categories(index: ListIndex, matches) -> list[tuple[str, bool]]:
    return [(index.lists[m[-2]].category, index.lists[m[-2]].allow) for m in matches]


def test_list_index_build_and_lookups(tmp_path):
    index = ListIndex.build(make_lists(tmp_path))
    assert categories(index, index.lookup_host("www.bet.example")) == [
        ("gambling", False),
        ("games", False),
    ]
    assert categories(index, index.lookup_host("x.dotted.example")) == [("gambling", False)]
    assert categories(index, index.lookup_host("192.0.2.7")) == [("gambling", False)]
    # Adblock exceptions are entries whose list is marked `allow`.
    assert categories(index, index.lookup_host("a.ok.ads.example")) == [
        ("ads", True),
        ("ads", False),
    ]
    assert categories(index, index.lookup_host("tracker.example")) == [("trackers", False)]
    ((host, prefix, tag, line),) = index.lookup_url("www.casino.example", "/poker/table")
    assert (host, prefix, line) == ("casino.example", "/poker", 1)
    assert index.lists[tag].path.endswith("urls")
    assert categories(index, index.lookup_url("a.whole-site.example", "/")) == [("gambling", False)]
    assert categories(index, index.match_expressions("https://x.example/roulette/1")) == [
        ("gambling", False)
    ]
    assert index.usages["gambling"].black
    assert index.summary_lines()[-2:] == [
        f"{tmp_path / 'adblock.txt'}: 2 entries, 1 bad lines skipped",
        f"{tmp_path / 'hosts'}: 1 entries",
    ]
    with pytest.raises(AttributeError):
        index.domains = None  # type: ignore[misc]  # immutable: swap whole indexes instead


def test_cache_round_trip(tmp_path):
    sources = make_lists(tmp_path)
    index = ListIndex.build(sources)
    cache = tmp_path / "cache" / "lists.idx"
    index.save(cache)
    loaded = ListIndex.load(cache, sources_fingerprint(sources))
    assert loaded.lists == index.lists
    assert loaded.fingerprint == index.fingerprint
    assert dict(loaded.usages) == dict(index.usages)
    assert loaded.summary_lines() == index.summary_lines()
    assert [p.line for s in loaded.summaries for p in s.problems] == [3]
    for host in (
        "bet.example",
        "x.dotted.example",
        "192.0.2.7",
        "ok.ads.example",
        "nothing.example",
    ):
        assert loaded.lookup_host(host) == index.lookup_host(host)
    assert loaded.lookup_url("casino.example", "/Poker") == index.lookup_url(
        "casino.example", "/Poker"
    )
    assert loaded.match_expressions("x.example/roulette/") == index.match_expressions(
        "x.example/roulette/"
    )
    assert loaded.nbytes == index.nbytes
    assert not list(cache.parent.glob(".*.tmp"))


def test_cache_is_used_while_unchanged_and_rebuilt_after_a_change(tmp_path):
    sources = make_lists(tmp_path)
    cache = tmp_path / "lists.idx"
    first = ListIndex.load_or_build(sources, cache)
    assert not first.from_cache and "rebuilt" in first.note
    second = ListIndex.load_or_build(sources, cache)
    assert second.from_cache and second.note == ""
    assert second.index.lookup_host("play.example") == first.index.lookup_host("play.example")

    # Change one file: new content, new size, new mtime.
    games = tmp_path / "ut1" / "games" / "domains"
    games.write_text("bet.example\nplay.example\nnew-game.example\n")
    os.utime(games, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    third = ListIndex.load_or_build(sources, cache)
    assert not third.from_cache and "other or older list files" in third.note
    assert categories(third.index, third.index.lookup_host("new-game.example")) == [
        ("games", False)
    ]
    assert ListIndex.load_or_build(sources, cache).from_cache

    # A file removed from the set of sources also invalidates the cache.
    assert not ListIndex.load_or_build(sources[:-1], cache).from_cache


def test_cache_errors_are_reported_not_trusted(tmp_path):
    sources = make_lists(tmp_path)
    cache = tmp_path / "lists.idx"
    ListIndex.build(sources).save(cache)
    data = cache.read_bytes()

    with pytest.raises(IndexCacheError, match="cannot be read"):
        ListIndex.load(tmp_path / "missing.idx")
    cache.write_bytes(b"not an index at all")
    with pytest.raises(IndexCacheError, match="not a Schoolgate list index"):
        ListIndex.load(cache)
    cache.write_bytes(data[:-5])
    with pytest.raises(IndexCacheError):
        ListIndex.load(cache)
    cache.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(IndexCacheError, match="damaged"):
        ListIndex.load(cache)
    cache.write_bytes(data.replace(f'"version":{FORMAT_VERSION}'.encode(), b'"version":0', 1))
    with pytest.raises(IndexCacheError, match="index format 0"):
        ListIndex.load(cache)
    cache.write_bytes(data.replace(b'"domains.hashes"', b'"domains.hashez"', 1))
    with pytest.raises(IndexCacheError, match="cannot be read"):
        ListIndex.load(cache)
    cache.write_bytes(data)
    with pytest.raises(IndexCacheError, match="other or older"):
        ListIndex.load(cache, "0" * 64)
    assert ListIndex.load(cache).lookup_host("bet.example")

    # An unwritable cache location does not stop the build.
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    result = ListIndex.load_or_build(sources, blocked / "lists.idx")
    assert not result.from_cache and "not written" in result.note
    assert result.index.lookup_host("bet.example")


# ---------------------------------------------------------------------------------------------
# A real UT1 subset (the full set is for the benchmark)

SUBSET = ("dynamic-dns", "gambling", "publicite", "redirector", "drogue", "malware")


@pytest.fixture(scope="module")
def ut1_index(ut1, tmp_path_factory) -> ListIndex:
    sources = ut1_sources(ut1, categories=SUBSET)
    cache = tmp_path_factory.mktemp("cache") / "ut1.idx"
    built = ListIndex.load_or_build(sources, cache)
    assert not built.from_cache
    loaded = ListIndex.load_or_build(sources, cache)
    assert loaded.from_cache
    return loaded.index


def test_ut1_subset_counts(ut1, ut1_index):
    expected_domains = sum(
        (ut1 / c / "domains").read_bytes().count(b"\n")
        for c in SUBSET
        if (ut1 / c / "domains").exists()
    )
    expected_urls = sum(
        (ut1 / c / "urls").read_bytes().count(b"\n") for c in SUBSET if (ut1 / c / "urls").exists()
    )
    assert len(ut1_index.domains) == expected_domains
    assert len(ut1_index.urls) == expected_urls
    assert all(not s.problems for s in ut1_index.summaries)


def test_ut1_every_domain_entry_is_found(ut1, ut1_index):
    for category in ("dynamic-dns", "gambling"):
        entries, _ = read_domains(ut1 / category / "domains")
        for name, line in entries:
            found = ut1_index.lookup_host("www." + name if not name[-1].isdigit() else name)
            assert any(
                ut1_index.lists[tag].category == category and hit_line == line
                for _, tag, hit_line in found
            ), name


def test_ut1_leading_dot_underscore_and_ipv4_entries_match(ut1, ut1_index):
    def cats(host: str) -> set[str]:
        return {ut1_index.lists[tag].category for _, tag, _ in ut1_index.lookup_host(host)}

    assert "dynamic-dns" in cats("afshin.ir") and "dynamic-dns" in cats("a.b.giswebservice.com")
    ipv4 = next(
        t for t in (ut1 / "redirector" / "domains").read_text().splitlines() if t[0].isdigit()
    )
    assert "redirector" in cats(ipv4)
    assert "redirector" not in cats("1." + ipv4) or not ipv4.count(".") == 3
    underscored = next(
        t for t in (ut1 / "malware" / "domains").read_text().splitlines() if "_" in t
    )
    assert "malware" in cats("sub." + underscored)
    assert cats("no-such-host.schoolgate.invalid") == set()


def test_ut1_urls_with_capitals_match(ut1, ut1_index):
    entries, _ = read_urls(ut1 / "publicite" / "urls")
    capitals = [e for e in entries if e.path != e.path.lower()]
    assert capitals
    for entry in capitals:
        for path in (entry.path, entry.path.lower(), entry.path.upper() + "/more"):
            found = ut1_index.lookup_url(entry.host, path)
            assert any(
                ut1_index.lists[t].category == "publicite" and n == entry.line
                for _, _, t, n in found
            )


def test_ut1_expressions_in_the_index(ut1_index):
    def cats(url: str) -> set[str]:
        return {ut1_index.lists[tag].category for _, tag, _ in ut1_index.match_expressions(url)}

    assert cats("http://ads.example/banner/1.gif") == {"publicite"}
    assert cats("https://198.51.100.7/search?q=99") == {"malware"}
    assert cats("https://www.bbc.co.uk/news") == set()


def test_empty_index_builds_saves_and_loads(tmp_path):
    index = ListIndex.build([])
    assert index.lookup_host("example.com") == []
    assert index.lookup_url("example.com", "/") == []
    assert index.match_expressions("example.com/") == []
    index.save(tmp_path / "empty.idx")
    loaded = ListIndex.load(tmp_path / "empty.idx", sources_fingerprint([]))
    assert len(loaded.domains) == len(loaded.urls) == len(loaded.expressions) == 0
