"""What a request is: host and URL normalisation, reading domain lists (the starter lists and real
UT1 lists), and label-suffix matching of hosts against them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sample_school import REPO
from schoolgate.classify import (
    CategoryMatch,
    Classification,
    Classifier,
    URLError,
    normalise_host,
)
from schoolgate.classify.index import ListIndex, ListSource
from schoolgate.classify.lists import ListProblem, read_domain_list
from schoolgate.sources.lists import build_classifier

# ---------------------------------------------------------------------------------------------
# Host names


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        # Case.
        ("Example.COM", "example.com"),
        ("WWW.BBC.CO.UK", "www.bbc.co.uk"),
        # Leading, trailing and repeated dots; surrounding spaces.
        ("example.com.", "example.com"),
        (".example.com", "example.com"),
        ("..www..example...com..", "www.example.com"),
        ("  example.com\t", "example.com"),
        # International names become punycode (the form DNS and TLS certificates use).
        ("bücher.de", "xn--bcher-kva.de"),
        ("BÜCHER.DE", "xn--bcher-kva.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
        # UTS #46 non-transitional, as browsers send them: "ß" and "ς" are kept, not mapped to
        # "ss" and "σ" as IDNA 2003 did.
        ("faß.de", "xn--fa-hia.de"),
        ("βόλος.com", "xn--nxasmm1c.com"),
        # Underscores and digits occur in real list entries and hostnames.
        ("_video-bagarre.com", "_video-bagarre.com"),
        ("celsinho_v8.blogger.com.br", "celsinho_v8.blogger.com.br"),
        ("365.example", "365.example"),
        # IP addresses in their canonical text form.
        ("192.0.2.10", "192.0.2.10"),
        ("[2001:DB8::0001]", "2001:db8::1"),
        ("2001:db8:0:0::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        # IPv4-mapped IPv6 reaches the IPv4 host, so it must be classified as that host.
        ("::ffff:192.0.2.10", "192.0.2.10"),
        ("[::FFFF:c000:020a]", "192.0.2.10"),
    ],
)
def test_normalise_host(host, expected):
    assert normalise_host(host) == expected
    # Normalising is idempotent: list entries and request hosts meet in the same form.
    assert normalise_host(expected) == expected


@pytest.mark.parametrize(
    ("host", "message"),
    [
        # Nothing left.
        ("", "has no host name"),
        ("...", "has no host name"),
        # Characters no DNS name holds, and labels that start with a hyphen or are too long.
        ("bad host.com", "label 'bad host' is not a valid domain label"),
        ("ex!ample.com", "is not a valid domain label"),
        ("-start.example.com", "label '-start' is not a valid domain label"),
        ("a" * 64 + ".com", "is not a valid domain label"),
        (("a" * 60 + ".") * 5 + "com", "at most 253 are allowed"),
        # Four numeric labels are an IPv4 address, and must be a valid one.
        ("256.1.1.1", "is not a valid IPv4 address"),
        ("010.0.0.1", "is not a valid IPv4 address"),
        # A colon means IPv6; a port does not belong in a host.
        ("example.com:80", "is not a valid IPv6 address"),
        ("2001:db8::zz", "is not a valid IPv6 address"),
    ],
)
def test_normalise_host_rejects(host, message):
    with pytest.raises(URLError) as e:
        normalise_host(host)
    assert message in str(e.value)


# ---------------------------------------------------------------------------------------------
# Reading list files

MIXED_LIST = (
    "# Gambling, hand-written\n"  # 1 comment
    "\n"  # 2 blank
    "bet365.com\n"  # 3
    "WilliamHill.COM   # a trailing comment\n"  # 4 case, comment after the entry
    ".paddypower.com\n"  # 5 leading dot (squidGuard style)
    "sky-bet.com \t \n"  # 6 trailing spaces and a tab
    "_video-bagarre.com\n"  # 7 underscore
    "bücher.de\n"  # 8 IDN
    "192.0.2.10\n"  # 9 IPv4
    "   indented.example.org\n"  # 10 leading spaces
    "bad entry.com\n"  # 11 BAD: a space inside
    "http://phish.example/login\n"  # 12 BAD: a URL, not a domain
    "*.wildcard.example\n"  # 13 BAD: a wildcard
    "-hyphen.example\n"  # 14 BAD: a label cannot start with '-'
    "256.1.1.1\n"  # 15 BAD: not an IPv4 address
    "example.com.\n"  # 16 trailing dot
    "    \t\n"  # 17 whitespace only
    "#commented.example\n"  # 18 commented out
    "last.example"  # 19 no newline at the end of the file
)
MIXED_ENTRIES = [
    ("bet365.com", 3),
    ("williamhill.com", 4),
    ("paddypower.com", 5),
    ("sky-bet.com", 6),
    ("_video-bagarre.com", 7),
    ("xn--bcher-kva.de", 8),
    ("192.0.2.10", 9),
    ("indented.example.org", 10),
    ("example.com", 16),
    ("last.example", 19),
]
MIXED_PROBLEMS = [
    (11, "'bad entry.com' is not a domain name"),
    (12, "'http://phish.example/login' is not a domain name"),
    (13, "'*.wildcard.example' is not a domain name"),
    (14, "label '-hyphen' is not a valid domain label"),
    (15, "is not a valid IPv4 address"),
]


def _check_mixed(path: Path) -> None:
    entries, summary = read_domain_list(path)
    assert entries == MIXED_ENTRIES
    assert summary.path == str(path)
    assert summary.entries == len(MIXED_ENTRIES)
    assert [(p.path, p.line) for p in summary.problems] == [
        (str(path), line) for line, _ in MIXED_PROBLEMS
    ]
    for problem, (line, message) in zip(summary.problems, MIXED_PROBLEMS, strict=True):
        assert message in problem.message
        # What the gateway logs: the file and line, and that the line was skipped.
        assert str(problem).startswith(f"{path}:{line}: ")
        assert str(problem).endswith("; line skipped")
    assert str(summary) == f"{path}: {len(MIXED_ENTRIES)} entries, 5 bad lines skipped"


def test_read_list_skips_comments_and_reports_bad_lines(tmp_path):
    path = tmp_path / "domains"
    path.write_text(MIXED_LIST, encoding="utf-8")
    _check_mixed(path)


def test_read_list_with_windows_line_endings(tmp_path):
    path = tmp_path / "domains"
    path.write_bytes(MIXED_LIST.replace("\n", "\r\n").encode("utf-8"))
    _check_mixed(path)


def test_read_list_saved_with_a_byte_order_mark(tmp_path):
    # Windows Notepad writes one; the first entry must still load.
    path = tmp_path / "domains"
    path.write_bytes(b"\xef\xbb\xbfbet365.com\r\nskybet.com\r\n")
    entries, summary = read_domain_list(path)
    assert entries == [("bet365.com", 1), ("skybet.com", 2)]
    assert summary.problems == []


def test_read_list_invalid_utf8_costs_one_line(tmp_path):
    path = tmp_path / "domains"
    # Line 2 is Latin-1, not UTF-8.
    path.write_bytes(b"good.example\ncaf\xe9.example\nalso-good.example\n")
    entries, summary = read_domain_list(path)
    assert entries == [("good.example", 1), ("also-good.example", 3)]
    assert summary.problems == [ListProblem(str(path), 2, "not valid UTF-8")]


def test_clean_list_summary(tmp_path):
    path = tmp_path / "domains"
    path.write_text("a.example\nb.example\n", encoding="utf-8")
    _, summary = read_domain_list(path)
    assert str(summary) == f"{path}: 2 entries"


# ---------------------------------------------------------------------------------------------
# Matching: label suffix, right to left; IP addresses exactly.


@pytest.fixture
def classifier(tmp_path) -> Classifier:
    lists = {
        "gambling": "example.com\nbet.example\n192.0.2.10\n2.10\n",
        "social_networks": "b.example.com\n",
        "games": "bet.example\n",
        "education": "bbc.co.uk\nsport.bbc.co.uk\n",
    }
    files = []
    for category, text in lists.items():
        path = tmp_path / category
        path.write_text(text, encoding="utf-8")
        files.append((category, path))
    return _with_lists(*files)


def _with_lists(*lists: tuple[str, Path]) -> Classifier:
    """A classifier over these (category, list file) pairs, as sources.lists builds one."""
    return Classifier(ListIndex.build([ListSource(category, path) for category, path in lists]))


def _found(classification: Classification) -> list[tuple[str, str]]:
    return [(m.category, m.entry) for m in classification.matches]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        # An entry covers itself and every name under it, most specific match first.
        ("example.com", [("gambling", "example.com")]),
        ("www.example.com", [("gambling", "example.com")]),
        ("b.example.com", [("social_networks", "b.example.com"), ("gambling", "example.com")]),
        ("a.b.example.com", [("social_networks", "b.example.com"), ("gambling", "example.com")]),
        ("x.y.z.a.b.example.com",
         [("social_networks", "b.example.com"), ("gambling", "example.com")]),
        ("news.sport.bbc.co.uk", [("education", "sport.bbc.co.uk"), ("education", "bbc.co.uk")]),
        # Label boundaries: no substring or prefix matches, and no parents of an entry.
        ("badexample.com", []),
        ("xample.com", []),
        ("example.com.evil.net", []),
        ("example.co", []),
        ("com", []),
        ("co.uk", []),
        # One entry in two categories: both, in the order the lists were added.
        ("www.bet.example", [("gambling", "bet.example"), ("games", "bet.example")]),
        # IP addresses match exactly, never by a "suffix" of their numbers.
        ("192.0.2.10", [("gambling", "192.0.2.10")]),
        ("192.0.2.11", []),
        ("10.192.0.2.10", []),
        ("2001:db8::1", []),
    ],
)
def test_label_suffix_matching(classifier, host, expected):
    result = classifier.classify_host(host)
    assert result.host == host
    assert _found(result) == expected


def test_matches_say_where_the_entry_came_from(classifier, tmp_path):
    (match,) = classifier.classify_host("shop.bet.example").matches[:1]
    assert match == CategoryMatch("gambling", "bet.example", str(tmp_path / "gambling"), 2)


def test_categories_are_listed_once_most_specific_first(tmp_path):
    path = tmp_path / "gambling"
    path.write_text("example.com\nb.example.com\n", encoding="utf-8")
    other = tmp_path / "games"
    other.write_text("example.com\n", encoding="utf-8")
    c = _with_lists(("gambling", path), ("games", other))
    result = c.classify_host("a.b.example.com")
    assert _found(result) == [
        ("gambling", "b.example.com"), ("gambling", "example.com"), ("games", "example.com"),
    ]
    assert result.categories == ("gambling", "games")


def test_ipv4_mapped_request_host_matches_the_ipv4_entry(classifier):
    # A pupil cannot step round an IPv4 entry by writing http://[::ffff:192.0.2.10]/.
    host = classifier.classify("http://[::ffff:192.0.2.10]/").host
    assert _found(classifier.classify_host(host)) == [("gambling", "192.0.2.10")]


def test_request_hosts_and_entries_meet_after_normalising(tmp_path):
    path = tmp_path / "gambling"
    path.write_text("BÜCHER.de\n.Casino.Example.\n", encoding="utf-8")
    c = _with_lists(("gambling", path))
    for url in ("http://www.bücher.de/", "HTTP://WWW.CASINO.EXAMPLE.:80/x"):
        assert c.classify(url).categories == ("gambling",), url
        host = c.classify(url).host
        assert c.classify_host(host).categories == ("gambling",), url


def test_idn_entries_match_what_browsers_send(tmp_path):
    # A list entry and a request host go through one IDN mapping: "faß.de" is xn--fa-hia.de in
    # both (UTS #46), and the different site fass.de is not caught by it.
    path = tmp_path / "gambling"
    path.write_text("faß.de\n", encoding="utf-8")
    c = _with_lists(("gambling", path))
    assert c.classify("http://faß.de/").categories == ("gambling",)
    assert c.classify("http://xn--fa-hia.de/poker").categories == ("gambling",)
    assert c.classify("http://fass.de/").categories == ()


def test_classifier_from_config_loads_every_list(config, tmp_path):
    c = build_classifier(config)
    assert [s.path for s in c.summaries] == [
        str(tmp_path / "lists" / name) for name in ("gambling", "social_networks", "education")
    ]
    assert [s.entries for s in c.summaries] == [2, 2, 1]
    assert list(c.problems) == []
    assert c.classify_host("www.bet365.com").categories == ("gambling",)
    assert c.classify_host("m.facebook.com").categories == ("social_networks",)
    assert c.classify_host("www.bbc.co.uk").categories == ("education",)
    assert c.classify_host("www.example.org").matches == ()


def test_bad_lines_are_skipped_and_reported_but_the_rest_of_the_file_loads(make_config):
    config = make_config(lists={
        "gambling": "bet365.com\nnot a domain\nwilliamhill.com\n",
        "social_networks": "facebook.com\n",
        "education": "bbc.co.uk\n",
    })
    c = build_classifier(config)
    (problem,) = c.problems
    assert (Path(problem.path).name, problem.line) == ("gambling", 2)
    assert c.classify_host("williamhill.com").categories == ("gambling",)
    assert c.summaries[0].entries == 2


# ---------------------------------------------------------------------------------------------
# Real UT1 lists from the shared data folder (read in place, never copied into the repository).

UT1 = REPO.parent / "shared" / "data" / "ut1"


@pytest.fixture(scope="module")
def ut1() -> Path:
    if not UT1.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the UT1 lists must be present in CI, expected at {UT1}")
        pytest.skip(f"UT1 lists not found at {UT1} (shared/data is not next to this checkout)")
    return UT1


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank, non-comment lines as (line number, text): counted without the code under test."""
    text = path.read_text(encoding="utf-8")
    return [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize(
    "category",
    [
        # The largest of the picked files: ~32k entries, some of them IPv4 addresses.
        "gambling",
        # Two entries written with a leading dot (squidGuard style).
        "dynamic-dns",
        # Underscores: _video-bagarre.com, and dozens of bare IPv4 addresses.
        "agressif",
        # Underscores inside subdomains (celsinho_v8.blogger.com.br).
        "blog",
    ],
)
def test_ut1_list_loads_every_line(ut1, category):
    path = ut1 / category / "domains"
    lines = _data_lines(path)
    entries, summary = read_domain_list(path)
    assert summary.problems == []
    assert summary.entries == len(entries) == len(lines)
    # Each entry is its line, lowercased without leading or trailing dots, at its line number.
    assert entries == [(text.lower().strip("."), n) for n, text in lines]


def test_ut1_leading_dot_entries_cover_their_subdomains(ut1):
    path = ut1 / "dynamic-dns" / "domains"
    dotted = [(n, text) for n, text in _data_lines(path) if text.startswith(".")]
    assert dotted, "dynamic-dns/domains was expected to have leading-dot entries"
    c = _with_lists(("dynamic-dns", path))
    for n, text in dotted:
        domain = text.lstrip(".")
        for host in (domain, f"anything.{domain}"):
            (match,) = c.classify_host(host).matches
            assert (match.entry, match.line) == (domain, n)


@pytest.mark.parametrize(
    ("category", "host"),
    [
        # Entries with underscores, and a subdomain of one.
        ("agressif", "_video-bagarre.com"),
        ("agressif", "www._video-bagarre.com"),
        ("blog", "celsinho_v8.blogger.com.br"),
    ],
)
def test_ut1_underscore_entries_match(ut1, category, host):
    c = _with_lists((category, ut1 / category / "domains"))
    assert c.classify_host(host).categories == (category,)


def test_ut1_ipv4_entries_match_exactly(ut1):
    path = ut1 / "agressif" / "domains"
    ips = [text for _, text in _data_lines(path) if text.replace(".", "").isdigit()]
    assert ips, "agressif/domains was expected to list IPv4 addresses"
    c = _with_lists(("agressif", path))
    for ip in ips:
        assert c.classify_host(ip).categories == ("agressif",)
