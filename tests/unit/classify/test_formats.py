"""List formats: every reader on small hand-written files (comments, CRLF, BOM, IDN, bad lines)
and on the real UT1 files in the shared data folder, with counts computed here, independently of
the code under test."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest
import re2

from sample_school import REPO
from schoolgate.classify.formats import (
    _FAST_HOST,
    ListFormat,
    UrlEntry,
    compile_expression,
    detect_format,
    read_adblock,
    read_domains,
    read_expressions,
    read_hosts,
    read_list,
    read_urls,
    read_usage,
    read_ut1_folder,
    split_url_entry,
    strip_url_host_prefix,
)
from schoolgate.classify.urls import URLError, normalise_host

UT1 = REPO.parent / "shared" / "data" / "ut1"
IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)


@pytest.fixture(scope="module")
def ut1() -> Path:
    if not UT1.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the UT1 lists must be present in CI, expected at {UT1}")
        pytest.skip(f"UT1 lists not found at {UT1} (shared/data is not next to this checkout)")
    return UT1


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def problems(summary) -> list[tuple[int, str]]:
    return [(p.line, p.message) for p in summary.problems]


# ---------------------------------------------------------------------------------------------
# Plain domain lists


def test_domains_clean_lines_and_edge_cases(tmp_path):
    path = write(
        tmp_path,
        "mixed.txt",
        b"\xef\xbb\xbf# a list written by hand\r\n"  # 1: BOM + comment, CRLF
        b"Example.COM\r\n"  # 2: case
        b"\r\n"  # 3: blank
        b"   \t\n"  # 4: blank with spaces
        b"trailing.example   \n"  # 5: trailing spaces
        b".leading.example\n"  # 6: leading dot
        b"*.wild.example\n"  # 7: "*." wildcard prefix
        b"_video-bagarre.com\n"  # 8: underscore
        b"b\xc3\xbccher.de\n"  # 9: IDN in UTF-8
        b"192.0.2.10\n"  # 10: IPv4
        b"inline.example # a comment\n"  # 11: inline comment
        b"2001:DB8::1\n"  # 12: IPv6
        b"trailingdot.example.\n",  # 13
    )
    entries, summary = read_domains(path)
    assert list(entries) == [
        ("example.com", 2),
        ("trailing.example", 5),
        ("leading.example", 6),
        ("wild.example", 7),
        ("_video-bagarre.com", 8),
        ("xn--bcher-kva.de", 9),
        ("192.0.2.10", 10),
        ("inline.example", 11),
        ("2001:db8::1", 12),
        ("trailingdot.example", 13),
    ]
    assert summary.problems == [] and summary.entries == 10
    assert str(summary) == f"{path}: 10 entries"


def test_domains_bad_lines_are_reported_with_file_and_line_and_skipped(tmp_path):
    path = write(
        tmp_path,
        "bad.txt",
        b"good.example\n"
        b"example.com/path\n"  # 2: a URL
        b"two words.example\n"  # 3: spaces
        b"a.*.example\n"  # 4: wildcard in the middle
        b"999.1.1.1\n"  # 5: not an address, not a name
        b"010.1.1.1\n" + b"x" * 64 + b".example\n"  # 6: octal-looking address  # 7: label too long
        b"bad\xffbyte.example\n"  # 8: not UTF-8
        b"-leading-hyphen.example\n"  # 9
        b"also.good\n",
    )
    entries, summary = read_domains(path)
    assert list(entries) == [("good.example", 1), ("also.good", 10)]
    assert [line for line, _ in problems(summary)] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "URL list" in summary.problems[0].message
    assert "UTF-8" in summary.problems[6].message
    assert str(summary.problems[0]).startswith(f"{path}:2: ")
    assert str(summary) == f"{path}: 2 entries, 8 bad lines skipped"


def test_fast_path_agrees_with_normalise_host():
    # The one-regex fast path must accept only what normalise_host returns unchanged.
    rng = random.Random(2024)
    alphabet = "abz09_-.A"
    samples = ["0.0.0.0", "255.255.255.255", "256.1.1.1", "1.2.3", "01.2.3.4", "a" * 63 + ".b"]
    samples += ["a" * 64 + ".b", ".".join(["abc"] * 63), ".".join(["abc"] * 64), "-a.b", "a-.b"]
    for _ in range(3000):
        samples.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
        samples.append(".".join(str(rng.randint(0, 300)) for _ in range(rng.choice((3, 4, 5)))))
    accepted = 0
    for text in samples:
        if _FAST_HOST.fullmatch(text):
            accepted += 1
            assert normalise_host(text) == text, text
    assert accepted > 500


# ---------------------------------------------------------------------------------------------
# Hosts files


def test_hosts_file(tmp_path):
    path = write(
        tmp_path,
        "hosts",
        "# Steven Black style header\r\n"
        "127.0.0.1 localhost\r\n"
        "127.0.0.1 localhost.localdomain\n"
        "255.255.255.255 broadcasthost\n"
        "::1 localhost ip6-localhost ip6-loopback\n"
        "fe80::1%lo0 localhost\n"
        "0.0.0.0 0.0.0.0\n"
        "\n"
        "0.0.0.0 ads.example tracker.example  # two names on one line\n"
        "127.0.0.1\tTAB.Example\n"
        "0.0.0.0 b\u00fccher.de\n"
        "lonely.example\n"  # 12: no address
        "notanip.example other.example\n"  # 13: first field is not an address
        "0.0.0.0 bad/name.example\n",  # 14
    )
    entries, summary = read_hosts(path)
    assert list(entries) == [
        ("ads.example", 9),
        ("tracker.example", 9),
        ("tab.example", 10),
        ("xn--bcher-kva.de", 11),
    ]
    assert [line for line, _ in problems(summary)] == [12, 13, 14]
    assert summary.entries == 4


# ---------------------------------------------------------------------------------------------
# Adblock-style lists


def test_adblock_block_and_allow_rules(tmp_path):
    path = write(
        tmp_path,
        "filters.txt",
        "[Adblock Plus 2.0]\n"
        "! Title: made-up list\n"
        "# a hash comment\n"
        "||ads.example^\n"  # 4
        "@@||good.ads.example^\n"  # 5
        "||Tracker.Example^$important\n"  # 6
        "||b\u00fccher.de^\r\n"  # 7
        "##.banner\n"  # 8: cosmetic
        "example.org##.ad\n"  # 9: cosmetic
        "||paths.example/ads/*\n"  # 10: path rule
        "||third.example^$third-party\n"  # 11: narrowing option
        "/banner[0-9]+/\n"  # 12: regex rule
        "||*.wild.example^\n"  # 13: wildcard
        "||noseparator.example\n"  # 14: no ^
        "plain.example\n",  # 15: substring rule
    )
    rules, summary = read_adblock(path)
    assert list(rules.block) == [
        ("ads.example", 4),
        ("tracker.example", 6),
        ("xn--bcher-kva.de", 7),
    ]
    assert list(rules.allow) == [("good.ads.example", 5)]
    assert [line for line, _ in problems(summary)] == [8, 9, 10, 11, 12, 13, 14, 15]
    assert all("unsupported adblock rule" in m for _, m in problems(summary))
    assert summary.entries == 4


# ---------------------------------------------------------------------------------------------
# URL lists


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # UT1 form: host/path, no scheme; the path keeps its case.
        ("example.com/Path/Page.html", ("example.com", "/Path/Page.html")),
        # Scheme, www., port and fragment removed; host lowercased.
        ("HTTP://WWW.Example.COM:8080/A?B=C#frag", ("example.com", "/A?B=C")),
        ("https://user:pw@www3.example.com/x", ("example.com", "/x")),
        # squidGuard's (www|web|ftp)[0-9]* prefix, but never down to a bare TLD.
        ("web56.foo.com/~badguy", ("foo.com", "/~badguy")),
        ("ftp.microsoft.com/deskapps/games/", ("microsoft.com", "/deskapps/games/")),
        ("web20.pl/x", ("web20.pl", "/x")),
        ("www.com/x", ("www.com", "/x")),
        # Domain-only entries: path "" (covers the whole domain).
        ("example.org", ("example.org", "")),
        ("www.example.org:443", ("example.org", "")),
        # A query without a path; an IPv4 host; an IDN host; '@' in the path stays.
        ("example.com?q=1", ("example.com", "/?q=1")),
        ("178.128.25.172/tag/x", ("178.128.25.172", "/tag/x")),
        ("b\u00fccher.de/Seite", ("xn--bcher-kva.de", "/Seite")),
        ("youtube.com/@SomeChannel", ("youtube.com", "/@SomeChannel")),
        ("planhomo.com/#", ("planhomo.com", "/")),
    ],
)
def test_split_url_entry(text, expected):
    assert split_url_entry(text) == expected


@pytest.mark.parametrize("text", ["/no-host", "http:///x", "exa mple.com/x", "bad_label-.é.../x y"])
def test_split_url_entry_rejects(text):
    with pytest.raises(URLError):
        split_url_entry(text)


def test_strip_url_host_prefix():
    assert strip_url_host_prefix("www.example.com") == "example.com"
    assert strip_url_host_prefix("www2.example.com") == "example.com"
    assert strip_url_host_prefix("wwwexample.com") == "wwwexample.com"
    assert strip_url_host_prefix("www.com") == "www.com"


def test_url_list_file(tmp_path):
    path = write(
        tmp_path,
        "urls",
        b"\xef\xbb\xbf# comment\r\n"
        b"example.com/Foo\r\n"  # 2
        b"\n"
        b"whole-domain.example  \n"  # 4
        b"no host at all\n"  # 5: bad
        b"/just/a/path\n"  # 6: bad
        b"1.2.3.4/Images/X.png\n",  # 7
    )
    entries, summary = read_urls(path)
    assert list(entries) == [
        UrlEntry("example.com", "/Foo", 2),
        UrlEntry("whole-domain.example", "", 4),
        UrlEntry("1.2.3.4", "/Images/X.png", 7),
    ]
    assert [line for line, _ in problems(summary)] == [5, 6]


# ---------------------------------------------------------------------------------------------
# Expressions


def test_expressions_compile_with_re2_and_bad_ones_name_their_line(tmp_path):
    path = write(
        tmp_path,
        "expressions",
        "(/banner/|/sponsor/)\r\n"  # 1
        "\n"
        "# a comment\n"
        "(a)\\1\n"  # 4: back-reference, RE2 refuses
        "(?=lookahead)x\n"  # 5: look-ahead, RE2 refuses
        "(unclosed\n"  # 6
        ".*\n"  # 7: matches every URL
        "^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+/search\\?q=[0-9]+$   \n",  # 8: trailing spaces
    )
    found, summary = read_expressions(path)
    assert [(e.pattern, e.line) for e in found] == [
        ("(/banner/|/sponsor/)", 1),
        ("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+/search\\?q=[0-9]+$", 8),
    ]
    assert [line for line, _ in problems(summary)] == [4, 5, 6, 7]
    assert "RE2" in summary.problems[0].message
    assert "every URL" in summary.problems[3].message
    assert str(summary.problems[0]).startswith(f"{path}:4: ")


# ---------------------------------------------------------------------------------------------
# usage files


def test_usage(tmp_path):
    usage, summary = read_usage(write(tmp_path, "usage", "#\tthis category\nblack\nWhite\nporn\n"))
    assert (usage.black, usage.white, usage.names) == (True, True, ("porn",))
    assert summary.problems == []
    usage, summary = read_usage(write(tmp_path, "usage2", "# nothing else\n"))
    assert (usage.black, usage.white) == (False, False)
    assert problems(summary) == [(0, "says neither 'black' nor 'white'")]


# ---------------------------------------------------------------------------------------------
# UT1 folders and format detection


def test_ut1_folder_reader(tmp_path):
    root = tmp_path / "ut1"
    (root / "gambling").mkdir(parents=True)
    (root / "gambling" / "domains").write_text("bet.example\n")
    (root / "gambling" / "usage").write_text("black\n")
    (root / "adult").mkdir()
    for part in ("2", "0", "1", "10"):
        (root / "adult" / f"domains.{part}").write_text(f"part{part}.example\n")
    (root / "adult" / "domains.bak").write_text("ignored.example\n")
    (root / "adult" / "urls").write_text("example.com/x\n")
    (root / "adult" / "expressions").write_text("")
    (root / "adult" / "very_restrictive_expression").write_text("porn\n")
    (root / "empty").mkdir()
    (root / "porn").symlink_to(root / "adult")  # upstream alias: not indexed twice
    (root / "README").write_text("not a category\n")
    categories = list(read_ut1_folder(root))
    assert [c.name for c in categories] == ["adult", "gambling"]
    adult, gambling = categories
    assert [p.name for p in adult.domains] == ["domains.0", "domains.1", "domains.2", "domains.10"]
    assert [p.name for p in adult.urls] == ["urls"]
    assert adult.expressions == root / "adult" / "expressions"
    assert adult.very_restrictive == root / "adult" / "very_restrictive_expression"
    assert adult.usage is None
    assert gambling.domains == (root / "gambling" / "domains",) and gambling.urls == ()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        # By name (UT1 files and hosts).
        ("domains", "x/y\n", ListFormat.DOMAINS),
        ("domains.0", "", ListFormat.DOMAINS),
        ("urls", "example.com\n", ListFormat.URLS),
        ("expressions", "a|b\n", ListFormat.EXPRESSIONS),
        ("very_restrictive_expression", "", ListFormat.EXPRESSIONS),
        ("usage", "black\n", ListFormat.USAGE),
        ("hosts.txt", "", ListFormat.HOSTS),
        # By content.
        ("a.txt", "! comment\n||ads.example^\n", ListFormat.ADBLOCK),
        ("b.txt", "[Adblock Plus 2.0]\nexample.com\n", ListFormat.ADBLOCK),
        ("c.txt", "# hosts\n0.0.0.0 ads.example\n", ListFormat.HOSTS),
        ("d.txt", "example.com\nexample.org/path\n", ListFormat.URLS),
        ("e.txt", "# plain\nexample.com\n192.0.2.1\n", ListFormat.DOMAINS),
        ("f.txt", "", ListFormat.DOMAINS),
    ],
)
def test_detect_format(tmp_path, name, content, expected):
    assert detect_format(write(tmp_path, name, content)) is expected


def test_read_list_dispatches_by_detected_format(tmp_path):
    parsed = read_list(write(tmp_path, "f.txt", "||ads.example^\n@@||ok.example^\n"))
    assert parsed.format is ListFormat.ADBLOCK
    assert list(parsed.block) == [("ads.example", 1)] and list(parsed.allow) == [("ok.example", 2)]
    parsed = read_list(write(tmp_path, "g.txt", "example.com/x\n"))
    assert parsed.format is ListFormat.URLS and list(parsed.urls) == [
        UrlEntry("example.com", "/x", 1)
    ]


# ---------------------------------------------------------------------------------------------
# Real UT1 files (read in place from ../shared/data/ut1, never copied into the repository)


def _line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def test_ut1_every_domains_file_loads_every_line(ut1):
    categories = list(read_ut1_folder(ut1))
    folders = [p for p in ut1.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(categories) == len(folders)
    total = expected_total = 0
    for category in categories:
        for path in category.domains:
            entries, summary = read_domains(path)
            assert summary.problems == [], summary.problems[:3]
            assert summary.entries == len(entries) == _line_count(path), path
            total += len(entries)
        expected_total += sum(_line_count(p) for p in category.domains)
    assert total == expected_total
    # counts.tsv, written when the data was copied, agrees with the files.
    rows = [line.split("\t") for line in (ut1 / "counts.tsv").read_text().splitlines()[1:]]
    assert total == sum(int(r[1]) for r in rows if r[1])


def test_ut1_domains_entries_are_the_lines(ut1):
    path = ut1 / "gambling" / "domains"
    entries, _ = read_domains(path)
    raw = path.read_text(encoding="ascii").splitlines()
    assert list(entries) == [(text, n) for n, text in enumerate(raw, start=1)]


def test_ut1_leading_dot_entries(ut1):
    path = ut1 / "dynamic-dns" / "domains"
    raw = path.read_text(encoding="ascii").splitlines()
    dotted = [(n, text) for n, text in enumerate(raw, start=1) if text.startswith(".")]
    assert len(dotted) == 2, "dynamic-dns/domains was expected to have two leading-dot entries"
    entries, summary = read_domains(path)
    assert summary.problems == [] and len(entries) == len(raw)
    by_line = {line: name for name, line in entries}
    for n, text in dotted:
        assert by_line[n] == text.lstrip(".")


def test_ut1_underscore_and_ipv4_entries(ut1):
    underscores = ipv4 = 0
    parsed_underscores = parsed_ipv4 = 0
    for category in read_ut1_folder(ut1):
        for path in category.domains:
            for text in path.read_text(encoding="ascii").splitlines():
                underscores += "_" in text
                ipv4 += IPV4.fullmatch(text) is not None
            entries, _ = read_domains(path)
            for name in entries.names:
                parsed_underscores += b"_" in name
                parsed_ipv4 += IPV4.fullmatch(name.decode()) is not None
    assert underscores > 0 and ipv4 > 0
    assert (parsed_underscores, parsed_ipv4) == (underscores, ipv4)


def test_ut1_every_urls_file_loads_every_line(ut1):
    uppercase = 0
    for category in read_ut1_folder(ut1):
        for path in category.urls:
            raw = path.read_text(encoding="utf-8").splitlines()
            entries, summary = read_urls(path)
            assert summary.problems == [], summary.problems[:3]
            assert len(entries) == len(raw) == _line_count(path), path
            for entry, text in zip(entries, raw, strict=True):
                slash = text.find("/")
                # Paths keep their case; hosts arrive lowercase (no UT1 host has a capital).
                if slash != -1 and text[slash:] != text[slash:].lower():
                    uppercase += 1
                    assert entry.path == text[slash:].split("#", 1)[0] or entry.path == "/"
                if slash == -1:
                    assert entry.path == ""
    assert uppercase > 1000, "UT1 urls were expected to have many paths with capitals"


def test_ut1_expressions_compile_and_match(ut1):
    counted = 0
    patterns = {}
    for category in read_ut1_folder(ut1):
        for path in (category.expressions, category.very_restrictive):
            if path is None:
                continue
            found, summary = read_expressions(path)
            assert summary.problems == [], summary.problems
            lines = [t for t in path.read_text().splitlines() if t.strip()]
            assert len(found) == len(lines)
            counted += len(found)
            patterns[(category.name, path.name)] = [e.pattern for e in found]
    assert counted >= 5

    def hits(key, url):
        return any(compile_expression(p).search(url) for p in patterns[key])

    # malware: an IP-address host searching for a number (anchored at the host: no scheme).
    assert hits(("malware", "expressions"), "203.0.113.9/search?q=123")
    assert not hits(("malware", "expressions"), "example.com/search?q=123")
    # publicite: ad paths, case-insensitively as squidGuard compiles them.
    assert hits(("publicite", "expressions"), "news.example/banner/top.gif")
    assert hits(("publicite", "expressions"), "news.example/ADVERTISEMENT/x")
    assert not hits(("publicite", "expressions"), "news.example/article/1")
    # strong_redirector: image and cache search for an adult word.
    assert hits(("strong_redirector", "expressions"), "www.google.com/search?q=cache:sexy")
    assert not hits(("strong_redirector", "expressions"), "www.google.com/search?q=cache:maths")
    # special: a Yahoo messenger installer.
    assert hits(("special", "expressions"), "download.yahoo.com/dl/ymsgr.exe")
    # adult very_restrictive_expression: a word on its own, not inside "Essex".
    assert hits(("adult", "very_restrictive_expression"), "example.com/free-porn/")
    assert not hits(("adult", "very_restrictive_expression"), "www.essex.ac.uk/courses")
    assert isinstance(compile_expression("a"), re2._Regexp)


def test_ut1_usage_files(ut1):
    black = white = 0
    for category in read_ut1_folder(ut1):
        if category.usage is None:
            continue
        usage, summary = read_usage(category.usage)
        assert summary.problems == [], category.name
        black += usage.black
        white += usage.white
    assert black > 40 and white > 10
    usage, _ = read_usage(ut1 / "blog" / "usage")  # starts with a '#' line
    assert usage.black and not usage.white


def test_ut1_formats_are_detected_by_name(ut1):
    assert detect_format(ut1 / "adult" / "urls") is ListFormat.URLS
    assert detect_format(ut1 / "gambling" / "domains") is ListFormat.DOMAINS
    assert detect_format(ut1 / "adult" / "very_restrictive_expression") is ListFormat.EXPRESSIONS
