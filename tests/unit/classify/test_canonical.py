"""Safe Browsing canonical URLs and lookup expressions, checked row by row against every vector
file in ../shared/data/canonicalization/, and registrable domains against the PSL test vectors in
../shared/data/psl/. Expected values come from those files; where our output differs from the Go
reference client on purpose, the test says why and compares in the spec's form.
"""

from __future__ import annotations

import csv
import dataclasses
import ipaddress
import os
import random
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from sample_school import REPO
from schoolgate.classify import canonical
from schoolgate.classify.canonical import (
    CanonicalURL,
    URLError,
    canonical_host,
    canonical_path,
    canonicalize,
    lookup_expressions,
    lookup_hosts,
    lookup_paths,
    parse_ipv4,
    registrable_domain,
)
from schoolgate.sources.suffixes import suffix_list

DATA = REPO.parent / "shared" / "data"
CANON = DATA / "canonicalization"
GO = CANON / "go_safebrowsing"
PSL = DATA / "psl"
PSL_FILE = PSL / "public_suffix_list.dat"

# Row counts as SOURCE.md states them, so a truncated copy or a new file cannot go unnoticed.
EXPECTED_ROWS = {
    CANON / "doc_suffix_prefix.tsv": 3,
    CANON / "doc_v5_ipv6_hosts.tsv": 3,
    GO / "canonical_url.tsv": 52,
    GO / "parse_ip.tsv": 11,
    GO / "canonical_host.tsv": 10,
    GO / "canonical_path.tsv": 10,
    GO / "lookup_hosts.tsv": 5,
    GO / "lookup_paths.tsv": 4,
    GO / "suffix_prefix_patterns.tsv": 14,
    PSL / "test_psl.tsv": 78,
}


def require(path: Path) -> None:
    """Skip when the shared data is not checked out next to this repository; fail in CI."""
    if path.exists():
        return
    reason = f"shared test data not found: {path} (check out ../shared next to the repository)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run every vector", pytrace=False)
    pytest.skip(reason)


def read_tsv(path: Path) -> list[dict[str, str]]:
    # SOURCE.md: UTF-8, a header row, no quoting; leading and trailing spaces are significant.
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:]
    for number, row in enumerate(body, start=2):
        assert len(row) == len(header), f"{path.name}:{number}: {len(row)} fields"
    return [dict(zip(header, row, strict=True), line=str(n)) for n, row in enumerate(body, 2)]


def table(path: Path) -> list:
    """One pytest param per data row (id `file:line`); if the file is absent, one placeholder
    whose test skips (or fails in CI) through `require`."""
    if not path.is_file():
        return [pytest.param(None, id=f"{path.name}:missing")]
    return [pytest.param(row, id=f"{path.name}:{row['line']}") for row in read_tsv(path)]


def raw(field: str) -> bytes:
    r"""The raw bytes of an escaped field (`\t`, `\r`, `\n`, `\xHH`), as SOURCE.md says."""
    return field.encode("latin-1").decode("unicode_escape").encode("latin-1")


def text(field: str) -> str:
    """An expected value: always ASCII once unescaped."""
    return raw(field).decode("ascii")


def failing(row: dict[str, str]) -> bool:
    assert row["expect_error"] in ("0", "1"), row
    return row["expect_error"] == "1"


# The documented differences between the Go client and the spec, as transformations of the Go
# expectation into the spec's form. Each one is applied only where the tests below say so.


def upper_escapes(url: str) -> str:
    """The Go client writes escapes in lowercase hex (`%1b`); the spec says uppercase (`%1B`)."""
    return re.sub(r"%[0-9a-fA-F]{2}", lambda m: m[0].upper(), url)


def rfc5952(host: str) -> str:
    """The Go client keeps a bracketed IPv6 host as written, only lowercased (`[::192.9.5.5]`);
    the v5 rules compress it (RFC 5952: `[::c009:505]`, since `::a.b.c.d` is not IPv4-mapped)."""
    if host.startswith("["):
        return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
    return host


def in_spec_window(host: str, exact: str) -> bool:
    """The Go client walks host suffixes over the last 7 components; the spec over the last 5
    (the exact host plus at most 4 suffixes). A Go suffix is in the spec's walk when it is the
    exact host or has at most 5 components."""
    return host == exact or host.count(".") + 1 <= 5


# ---------------------------------------------------------------------------------------------
# Every vector file is read, in full


def test_every_vector_file_is_checked():
    require(CANON)
    require(PSL)
    found = set(CANON.rglob("*.tsv")) | set(PSL.glob("*.tsv"))
    assert found == set(EXPECTED_ROWS), "a vector file was added or removed: give it a test"
    for path, count in EXPECTED_ROWS.items():
        assert len(read_tsv(path)) == count, path


# ---------------------------------------------------------------------------------------------
# go_safebrowsing/canonical_url.tsv (TestCanonicalURL)


@pytest.mark.parametrize("row", table(GO / "canonical_url.tsv"))
def test_go_canonical_url(row):
    require(GO / "canonical_url.tsv")
    url = raw(row["input"])
    if failing(row):
        with pytest.raises(URLError):
            canonicalize(url)
        return
    c = canonicalize(url)
    # The Go function returns scheme://host/path: it DROPS THE QUERY (the spec keeps it:
    # "http://www.google.com/q?r?s" stays as is there, see test_spec_examples) and the port
    # (as the spec and our `url` do). So compare without the query, with escapes in the spec's
    # uppercase ("http://some%1bhost.com/%1b" in Go).
    assert f"{c.scheme}://{c.host}{c.path}" == upper_escapes(text(row["expected"]))
    assert c.url.split("?")[0] == upper_escapes(text(row["expected"]))
    assert c.url.isascii()
    # Idempotent: the canonical URL canonicalizes to itself (less the port, which it leaves out).
    assert canonicalize(c.url) == dataclasses.replace(c, port=None)
    # A str input is its UTF-8 bytes.
    try:
        as_text = url.decode("utf-8")
    except UnicodeDecodeError:
        return  # "http://\x01\x80.com/" is not UTF-8, so only bytes can carry it
    assert canonicalize(as_text) == c


# ---------------------------------------------------------------------------------------------
# go_safebrowsing/canonical_host.tsv, canonical_path.tsv, parse_ip.tsv


@pytest.mark.parametrize("row", table(GO / "canonical_host.tsv"))
def test_go_canonical_host(row):
    require(GO / "canonical_host.tsv")
    url = raw(row["input"])
    if failing(row):
        with pytest.raises(URLError):
            canonicalize(url)
        return
    # IPv6 hosts in the v5 compressed form (only `[::192.9.5.5]` changes, see `rfc5952`).
    assert canonicalize(url).host == rfc5952(text(row["expected_host"]))


@pytest.mark.parametrize("row", table(GO / "canonical_path.tsv"))
def test_go_canonical_path(row):
    require(GO / "canonical_path.tsv")
    url = raw(row["input"])
    if failing(row):
        with pytest.raises(URLError):
            canonicalize(url)
        return
    expected = text(row["expected_path"])
    assert canonicalize(url).path == expected
    assert canonical_path(expected) == expected  # canonical paths are fixed points


@pytest.mark.parametrize("row", table(GO / "parse_ip.tsv"))
def test_go_parse_ip(row):
    require(GO / "parse_ip.tsv")
    host = text(row["input"])
    expected = text(row["expected_ipv4_or_empty"]) or None
    assert parse_ipv4(host) == expected
    if expected is not None and " " not in host:
        # The host of a URL gets the same treatment.
        assert canonicalize(f"http://{host}/").host == expected


# ---------------------------------------------------------------------------------------------
# Lookup expressions: go_safebrowsing/lookup_hosts.tsv, lookup_paths.tsv,
# suffix_prefix_patterns.tsv, and the spec's own examples doc_suffix_prefix.tsv


@pytest.mark.parametrize("row", table(GO / "lookup_hosts.tsv"))
def test_go_lookup_hosts(row):
    require(GO / "lookup_hosts.tsv")
    url = raw(row["input"])
    if failing(row):
        with pytest.raises(URLError):
            canonicalize(url)
        return
    go_hosts = [rfc5952(h) for h in text(row["expected_hosts_space_separated_in_order"]).split()]
    host = canonicalize(url).host
    # The Go client deliberately walks the last 7 components (so that a.b.c.d.e.f.kita.tokyo.jp
    # reaches c.d.e.f.kita.tokyo.jp); `max_components=7` reproduces it exactly, in order.
    assert lookup_hosts(host, max_components=7) == go_hosts
    # The spec (and our default) walks the last 5: the same list without the longer suffixes.
    assert lookup_hosts(host) == [h for h in go_hosts if in_spec_window(h, go_hosts[0])]


@pytest.mark.parametrize("row", table(GO / "lookup_paths.tsv"))
def test_go_lookup_paths(row):
    require(GO / "lookup_paths.tsv")
    url = raw(row["input"])
    if failing(row):
        with pytest.raises(URLError):
            canonicalize(url)
        return
    c = canonicalize(url)
    expected = text(row["expected_paths_space_separated_in_order"]).split()
    assert lookup_paths(c.path, c.query) == expected


@pytest.mark.parametrize("row", table(GO / "suffix_prefix_patterns.tsv"))
def test_go_suffix_prefix_patterns(row):
    require(GO / "suffix_prefix_patterns.tsv")
    url = raw(row["input"])
    if failing(row):
        with pytest.raises(URLError):
            canonicalize(url)
        return
    c = canonicalize(url)
    go_patterns = text(row["expected_patterns_space_separated_unordered"]).split()
    # Exactly Go's set with Go's 7-component host walk (see test_go_lookup_hosts)...
    go_ours = lookup_expressions(c, max_host_components=7)
    assert len(go_ours) == len(set(go_ours))
    assert set(go_ours) == set(go_patterns)
    # ...and, with the spec's 5, Go's set minus the expressions on the longer suffixes.
    spec = {p for p in go_patterns if in_spec_window(p[: p.index("/")], c.host)}
    assert set(lookup_expressions(c)) == spec
    # The most specific expression comes first (a caller that stops at a hit gets the best one).
    assert lookup_expressions(c)[0] == c.host_path == c.host + lookup_paths(c.path, c.query)[-1]


@pytest.mark.parametrize("row", table(CANON / "doc_suffix_prefix.tsv"))
def test_doc_suffix_prefix(row):
    require(CANON / "doc_suffix_prefix.tsv")
    c = canonicalize(raw(row["input"]))
    expressions = lookup_expressions(c)
    expected = text(row["expected_expressions_space_separated_unordered"]).split()
    assert len(expressions) == len(set(expressions))
    assert set(expressions) == set(expected)
    # At most 5 hosts x 6 paths (SOURCE.md), and no host walk for IP hosts.
    assert len(lookup_hosts(c.host)) <= 5
    assert len(lookup_paths(c.path, c.query)) <= 6


@pytest.mark.parametrize("row", table(CANON / "doc_v5_ipv6_hosts.tsv"))
def test_doc_v5_ipv6_hosts(row):
    require(CANON / "doc_v5_ipv6_hosts.tsv")
    host, expected = text(row["input_host"]), text(row["expected_host"])
    assert canonical_host(host) == expected
    assert canonicalize(f"http://{host}/x").host == expected
    port = canonicalize(f"https://{host}:8443/x")
    assert (port.url, port.port) == (f"https://{expected}/x", 8443)
    assert lookup_hosts(expected) == [expected]  # IP hosts are looked up as themselves


# ---------------------------------------------------------------------------------------------
# The spec's worked examples where it differs from the Go file: these expectations are printed
# in "URLs and Hashing" (developers.google.com/safe-browsing/v4/urls-hashing), not in the
# vector files. The spec keeps the query, including a bare "?", and drops the port.


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # The query is kept, not path-normalised, and escaped like the rest.
        ("http://www.google.com/q?", "http://www.google.com/q?"),
        ("http://www.google.com/q?r?", "http://www.google.com/q?r?"),
        ("http://www.google.com/q?r?s", "http://www.google.com/q?r?s"),
        ("http://evil.com/foo?bar;", "http://evil.com/foo?bar;"),
        ("http://host.com//twoslashes?more//slashes", "http://host.com/twoslashes?more//slashes"),
        # An escaped '#' is not a fragment.
        ("http://host.com/ab%23cd", "http://host.com/ab%23cd"),
        # "/.." at the end, and a URL without scheme or path.
        ("http://www.google.com/blah/..", "http://www.google.com/"),
        ("www.google.com/", "http://www.google.com/"),
        ("www.google.com", "http://www.google.com/"),
    ],
)
def test_spec_examples(url, expected):
    assert canonicalize(url).url == expected


def test_spec_drops_the_port_and_so_do_expressions():
    c = canonicalize("http://www.gotaport.com:1234/")
    # Spec: "http://www.gotaport.com/": the canonical form names the page wherever it is
    # served; the port is kept beside it, for the connection.
    assert (c.port, c.url) == (1234, "http://www.gotaport.com/")
    assert c.host_path == "www.gotaport.com/"
    assert lookup_expressions(c) == ["www.gotaport.com/", "gotaport.com/"]


# ---------------------------------------------------------------------------------------------
# Our choices where neither the spec nor the vectors decide


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Ports go from the canonical form (see test_spec_drops_the_port...); userinfo goes;
        # scheme and host are lowercased.
        ("HTTPS://User:Secret@WWW.Example.COM:443/A/b", "https://www.example.com/A/b"),
        ("http://example.com:8080/x", "http://example.com/x"),
        ("http://example.com:/x", "http://example.com/x"),
        ("example.com:8080/path?x=1", "http://example.com/path?x=1"),
        ("http://[::ffff:192.0.2.10]:8080/", "http://192.0.2.10/"),
        # A final "." or ".." keeps the trailing slash, as browsers and servers read it (the Go
        # client's path.Clean would give "/a"; the spec says nothing).
        ("http://h/a/b/..", "http://h/a/"),
        ("http://h/a/b/.", "http://h/a/b/"),
        ("http://h/../../x", "http://h/x"),
        ("http://h/a/%2e%2E/b", "http://h/b"),
        # IDN: UTS #46 non-transitional, as browsers send it ("faß" is not "fass"); symbols that
        # only IDNA 2003 accepts; full-width letters and the ideographic full stop.
        ("http://faß.de/", "http://xn--fa-hia.de/"),
        ("http://i❤.ws/", "http://xn--i-7iq.ws/"),
        ("http://ＥＸＡＭＰＬＥ。com/", "http://example.com/"),
        ("http://www.%C3%BCmlat.com/", "http://www.xn--mlat-zra.com/"),
        # Non-ASCII in path and query is escaped from its UTF-8 bytes.
        ("http://h/café?q=é", "http://h/caf%C3%A9?q=%C3%A9"),
        (b"http://h/caf\xe9", "http://h/caf%E9"),
        # Other schemes with an authority are fine.
        ("ftp://FTP.example.com/f", "ftp://ftp.example.com/f"),
        ("wss://chat.example:443/s", "wss://chat.example/s"),
        # An IPv6 zone keeps its '%', escaped.
        ("http://[fe80::1%25eth0]/", "http://[fe80::1%25eth0]/"),
    ],
)
def test_choices(url, expected):
    assert canonicalize(url).url == expected


@pytest.mark.parametrize(("url", "port"), [
    ("HTTPS://WWW.Example.COM:443/A/b", None), ("http://example.com:8080/x", 8080),
    ("http://example.com:/x", None), ("example.com:8080/path?x=1", 8080),
    ("http://[::ffff:192.0.2.10]:8080/", 8080), ("wss://chat.example:443/s", None),
])
def test_a_port_other_than_the_default_is_kept_beside_the_canonical_form(url, port):
    assert canonicalize(url).port == port


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host:99999/", "port '99999' is not a number from 0 to 65535"),
        ("http://host:8o/", "port '8o' is not a number"),
        ("http://[::1/", "no closing ']'"),
        ("http://[::1]x/", "unexpected 'x' after the IPv6 host"),
        ("http://[zz::1]/", "is not a valid IPv6 address"),
        ("http://2001:db8::1/", "must be in brackets"),
        ("http:/one-slash.com/", "'http' URL has no host"),
        ("javascript:alert(1)", "'javascript' URL has no host"),
        ("http://.../", "has no host name"),
        ("http://" + "a" * 64 + "é.com/", "not a valid international domain name"),
        ("http://\udc80.com/", "not valid Unicode"),
    ],
)
def test_errors_say_what_is_wrong(url, message):
    with pytest.raises(URLError, match=re.escape(message)):
        canonicalize(url)


def test_lookup_expressions_shape():
    c = canonicalize("http://a.b.c.d.e.f.g/1/2/3/4/5.html?q=1")
    assert lookup_hosts(c.host) == ["a.b.c.d.e.f.g", "c.d.e.f.g", "d.e.f.g", "e.f.g", "f.g"]
    assert lookup_paths(c.path, c.query) == [
        "/", "/1/", "/1/2/", "/1/2/3/", "/1/2/3/4/5.html", "/1/2/3/4/5.html?q=1",
    ]
    expressions = lookup_expressions(c)
    assert len(expressions) == 30 == len(set(expressions))
    assert expressions[0] == c.host_path == "a.b.c.d.e.f.g/1/2/3/4/5.html?q=1"
    # A bare '?' is kept in `url` (as the spec prints it) but is no lookup expression, so
    # `host_path`, the most specific expression, leaves it out too.
    bare = canonicalize("http://a.b/p?")
    assert (bare.query, bare.url, bare.host_path) == ("", "http://a.b/p?", "a.b/p")
    assert lookup_paths(bare.path, bare.query) == ["/", "/p"]
    assert lookup_expressions(bare)[0] == bare.host_path


def test_canonical_url_is_frozen_and_compares_by_value():
    c = canonicalize("http://Example.com/a")
    assert c == CanonicalURL("http", "example.com", None, "/a", None)
    assert hash(c) == hash(CanonicalURL("http", "example.com", None, "/a", None))
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.host = "other.example"  # type: ignore[misc]


def test_canonical_host_and_path_alone():
    assert canonical_host("Ex%41mple.COM.") == "example.com"
    assert canonical_host("[2001:DB8::0:1]") == "[2001:db8::1]"
    assert canonical_host("0x7f.1") == "127.0.0.1"
    assert canonical_host(" space.example") == "%20space.example"
    assert canonical_path("") == "/"
    assert canonical_path("a b/./c//") == "/a%20b/c/"
    assert canonical_path("/%2525") == "/%25"
    with pytest.raises(URLError):
        canonical_host("..")


def test_repeated_unescape_is_linear_and_exact():
    # Crafted input takes the one-pass rewrite; it must agree with "unescape until no change".
    def naive(s: str) -> str:
        while (t := unquote(s, encoding="latin-1")) != s:
            s = t
        return s

    rng = random.Random(20261122)
    for _ in range(2000):
        s = "".join(rng.choice("%%%2255aF3g") for _ in range(rng.randint(0, 24)))
        assert canonical._unescape_fully(s) == naive(s), s
        assert canonical._unescape(s) == naive(s), s
    deep = "%" + "25" * 50_000 + "41"  # 50,001 passes for the naive loop
    assert canonical._unescape(deep) == "A"
    assert canonicalize("http://h/%" + "25" * 20_000 + "41").path == "/A"


def test_classify_stays_pure():
    # DESIGN.md: classify imports neither mitmproxy nor a database, so the CLI and benchmarks
    # can use it alone. (Run in a fresh interpreter: this one has mitmproxy from conftest.)
    code = (
        "import sys, schoolgate.classify.canonical as c; c.canonicalize('http://a.b/'); "
        "print(sorted(m for m in ('mitmproxy', 'sqlite3', 'aiosqlite') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Registrable domains: psl/test_psl.tsv


@pytest.fixture(scope="module")
def shared_psl():
    """The PSL snapshot the vectors were written against, loaded from the local file."""
    require(PSL_FILE)
    return suffix_list(PSL_FILE)


def psl_form(value: str) -> str | None:
    """A vector value as `registrable_domain` gives it: None for `null`; else lowercase and, for
    IDNs written in Unicode, punycode (the one form hosts take everywhere in Schoolgate)."""
    if value == "null":
        return None
    value = value.lower()
    return value if value.isascii() else value.encode("idna").decode("ascii")


@pytest.mark.parametrize("source", ["shared-list", "bundled-snapshot"])
@pytest.mark.parametrize("row", table(PSL / "test_psl.tsv"))
def test_psl_registrable_domain(row, source, request):
    require(PSL / "test_psl.tsv")
    # The shared list is the one the vectors match; tldextract's bundled snapshot (what the
    # gateway uses by default) agrees with every vector too, so both are held to them.
    suffixes = request.getfixturevalue("shared_psl") if source == "shared-list" else None
    host = None if row["input"] == "null" else row["input"]
    expected = psl_form(row["expected_registrable_domain"])
    assert registrable_domain(host, suffixes=suffixes) == expected
    if host is not None:
        # Unicode and punycode spellings of a name give the same answer.
        assert registrable_domain(psl_form(host), suffixes=suffixes) == expected


@pytest.mark.parametrize(
    "host", [None, "", ".", "192.0.2.1", "3279880203", "[2001:db8::1]", "a..example.com"]
)
def test_registrable_domain_none(host):
    assert registrable_domain(host) is None


def test_registrable_domain_trailing_dot_and_private_suffixes():
    assert registrable_domain("www.Example.CO.UK.") == "example.co.uk"
    assert registrable_domain("someone.blogspot.com") == "someone.blogspot.com"


def test_suffix_lists_never_touch_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a socket was opened while loading the Public Suffix List")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "https://publicsuffix.org/list/x.dat")
    # Fresh instances (not the memoised ones), so the list is really read under the guard.
    bundled = suffix_list.__wrapped__(None)
    assert registrable_domain("www.bbc.co.uk", suffixes=bundled) == "bbc.co.uk"
    if PSL_FILE.is_file():
        local = suffix_list.__wrapped__(PSL_FILE)
        assert registrable_domain("a.b.kobe.jp", suffixes=local) == "a.b.kobe.jp"


def test_suffix_list_is_memoised_and_a_missing_file_is_an_error(tmp_path):
    assert suffix_list() is suffix_list()
    with pytest.raises(OSError):
        suffix_list(tmp_path / "absent.dat")
