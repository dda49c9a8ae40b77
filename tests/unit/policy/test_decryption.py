"""Which connections are decrypted: the one predicate (`policy.decryption.decryption`) behind the
TLS decisions and `schoolgate why`, one row per reason and per mode, with the rows that must not
decrypt beside the ones that must, so no reason can pass by answering True for everything."""

from __future__ import annotations

import hashlib
import inspect

import pytest

from schoolgate.classify.illegal import IllegalList, IllegalLists, parse_list
from schoolgate.config.model import IllegalListConfig
from schoolgate.gateway.rules import build_rules
from schoolgate.policy.decryption import REASONS, Decryption, decryption

SCHOOL = """\
school: {name: Test Academy, timezone: Europe/London}
listen: {host: 127.0.0.1, port: 8080}
metrics: {host: 127.0.0.1, port: 0}
data_dir: data
categories:
  gambling: {title: Gambling, lists: [lists/gambling]}
  adult: {title: Adult, lists: [lists/adult]}
  forums: {title: Forums, lists: [lists/forums]}
  education: {title: Education, lists: [lists/education]}
  vpn: {title: VPN, lists: [lists/vpn]}
  words: {title: Words, lists: [lists/expressions]}
  games: {title: Games, lists: [lists/games]}
schedules:
  lessons: {title: Lessons, windows: ["Mon-Fri 09:00-15:00"]}
circumvention: {categories: [vpn]}
tls: {do_not_decrypt_hosts: [bank.test, illegal-bank.test]}
groups:
  pupils:
    subnets: [10.1.0.0/16]
    https: selective
    blocked_categories: [gambling, adult]
    blocked_during: {lessons: [games]}
    block: [{target: "override.test/page", reason: one page}]
    allow: [{target: allowed.test, reason: a whole site}]
  words:
    subnets: [10.2.0.0/16]
    https: selective
    blocked_categories: [words]
  garden:
    subnets: [10.3.0.0/16]
    https: selective
    walled_garden: true
    allowed_categories: [education]
  nosafe:
    subnets: [10.4.0.0/16]
    https: selective
    safe_search: "off"
    youtube: "off"
  decrypting:
    subnets: [10.5.0.0/16]
  byod:
    subnets: [10.6.0.0/16]
    https: sni-only
default_group: pupils
"""

LISTS = {
    "gambling": "bet365.com\n",
    "adult": "pages.test/adult/\n",  # a URL entry: only pages.test needs decrypting for it
    "forums": "forum.test/threads/\n",  # no group decides by this category
    "education": "edu.test/lessons/\n",  # opens part of a host in the walled garden
    "vpn": "vpnpages.test/download/\n",  # circumvention, whatever the group blocks
    "games": "arcade.test/play/\n",  # blocked in a schedule only
    "expressions": "casino\n",
}

ILLEGAL = """\
illegal.test/page.html
illegal-bank.test/x/y.jpg
domain-only.test
query.test/?id=1
"""


def illegal_lists(text: str = ILLEGAL, form: str = "plain") -> IllegalLists:
    lst = IllegalList(IllegalListConfig(name="iwf", title="IWF", kind="iwf", source="-",
                                        form=form))
    parsed = parse_list(text.splitlines(), form, "iwf")
    lst.replace(parsed.keys, parsed.host_keys)
    return IllegalLists([lst])


@pytest.fixture
def rules(make_config):
    return build_rules(make_config(SCHOOL, LISTS), illegal_lists())


ROWS = [
    # sni-only never decrypts: the devices lack the school's certificate.
    ("byod", "illegal.test", (False, "sni-only")),
    ("byod", "www.google.com", (False, "sni-only")),
    # decrypt: everything but the do-not-decrypt list...
    ("decrypting", "fine.test", (True, "group-decrypts-all")),
    ("decrypting", "bank.test", (False, "no-decrypt-list")),
    # ... which never beats a URL-level illegal-list entry (in any mode that can decrypt).
    ("decrypting", "illegal-bank.test", (True, "illegal-url-entry")),
    ("pupils", "illegal-bank.test", (True, "illegal-url-entry")),
    ("pupils", "bank.test", (False, "no-decrypt-list")),
    # URL-level illegal entries: the host and every name whose lookup hosts reach it.
    ("pupils", "illegal.test", (True, "illegal-url-entry")),
    ("pupils", "www.illegal.test", (True, "illegal-url-entry")),
    ("pupils", "a.b.illegal.test", (True, "illegal-url-entry")),
    ("pupils", "query.test", (True, "illegal-url-entry")),  # a query is URL level too
    ("pupils", "notillegal.test", (False, "host-only")),
    # A domain entry is decided by the host name at the handshake: no need to decrypt.
    ("pupils", "domain-only.test", (False, "host-only")),
    ("pupils", "www.domain-only.test", (False, "host-only")),
    # Safe search and Restricted Mode the group locks.
    ("pupils", "www.google.com", (True, "safe-search")),
    ("pupils", "www.google.co.uk", (True, "safe-search")),
    ("pupils", "uk.search.yahoo.com", (True, "safe-search")),
    ("pupils", "www.youtube.com", (True, "safe-search")),
    ("pupils", "www.youtube-nocookie.com", (True, "safe-search")),
    # Search engines, whose searches are monitored whatever the safe-search setting.
    ("nosafe", "www.google.com", (True, "search-engine")),
    ("nosafe", "www.bing.com", (True, "search-engine")),
    ("pupils", "en.wikipedia.org", (True, "search-engine")),
    ("pupils", "www.tiktok.com", (True, "search-engine")),
    ("pupils", "maps.google.com", (False, "host-only")),  # not a search host
    ("pupils", "www.wikipedia.org.example", (False, "host-only")),
    # Local allow and block entries with a path (the host and names under it).
    ("pupils", "override.test", (True, "override-url")),
    ("pupils", "www.override.test", (True, "override-url")),
    ("pupils", "allowed.test", (False, "host-only")),  # a whole-site entry: by host name
    ("nosafe", "override.test", (False, "host-only")),  # another group's entry
    # Category URL entries in a category that can change the group's verdict.
    ("pupils", "pages.test", (True, "category-url-entry")),
    ("pupils", "www.pages.test", (True, "category-url-entry")),  # www. is stripped, as squidGuard
    ("pupils", "other.pages.test", (False, "host-only")),  # URL entries hold for their host only
    ("pupils", "arcade.test", (True, "category-url-entry")),  # scheduled, at any time
    ("pupils", "vpnpages.test", (True, "category-url-entry")),  # circumvention
    ("pupils", "forum.test", (False, "host-only")),  # nobody blocks forums
    ("pupils", "edu.test", (False, "host-only")),  # education decides nothing for pupils...
    ("garden", "edu.test", (True, "category-url-entry")),  # ... but opens pages in the garden
    ("nosafe", "pages.test", (False, "host-only")),  # adult is not blocked for this group
    # Word patterns are no reason to decrypt: they are matched against the name at the handshake.
    ("words", "fine.test", (False, "host-only")),
    ("words", "bank.test", (False, "no-decrypt-list")),
    ("pupils", "fine.test", (False, "host-only")),
]


@pytest.mark.parametrize(("group", "host", "expected"), ROWS)
def test_each_reason(rules, group, host, expected):
    assert decryption(rules.decryption, group, host) == Decryption(*expected)


def test_every_reason_has_a_row():
    """The table above names every reason the predicate can give, and only those (#11 adds its
    own reason, and a row, in the marked place)."""
    source = inspect.getsource(decryption)
    given = {r for r in REASONS if f'"{r}"' in source}
    assert given == set(REASONS)
    # The hashed-list test below gives the one reason a plain list cannot.
    assert {expected[1] for _, _, expected in ROWS} | {"illegal-hosts-unknown"} == set(REASONS)


def test_a_word_pattern_still_decides_a_relayed_host_by_its_name(rules):
    """Relayed, the host is classified as `https://HOST/` at the handshake (decision.host_verdict):
    a pattern that matches the name still puts it in its category there."""
    assert decryption(rules.decryption, "words", "casino-royale.test") == (False, "host-only")
    assert "words" in rules.classifier.classify("https://casino-royale.test/").categories
    assert "words" not in rules.classifier.classify("https://fine.test/").categories


def test_a_hashed_list_without_host_digests_decrypts_every_host(make_config):
    """Its hosts are unknown, so any host may hold a URL-level entry: fail safe."""
    digest = hashlib.sha256(b"illegal.test/page.html").hexdigest()
    rules = build_rules(make_config(SCHOOL, LISTS), illegal_lists(digest + "\n", "sha256"))
    d = rules.decryption
    assert decryption(d, "pupils", "fine.test") == (True, "illegal-hosts-unknown")
    # The do-not-decrypt list and sni-only still hold: nothing is known to be on them.
    assert decryption(d, "pupils", "bank.test") == (False, "no-decrypt-list")
    assert decryption(d, "byod", "fine.test") == (False, "sni-only")
    assert decryption(d, "decrypting", "bank.test") == (False, "no-decrypt-list")


def test_a_hashed_list_with_host_digests_decrypts_only_those_hosts(make_config):
    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    text = f"{sha('illegal.test/page.html')} {sha('illegal.test')}\n"
    rules = build_rules(make_config(SCHOOL, LISTS), illegal_lists(text, "sha256"))
    assert decryption(rules.decryption, "pupils", "www.illegal.test") == (True,
                                                                          "illegal-url-entry")
    assert decryption(rules.decryption, "pupils", "fine.test") == (False, "host-only")


def test_no_illegal_lists_decides_by_the_other_reasons(make_config):
    rules = build_rules(make_config(SCHOOL, LISTS), IllegalLists())
    assert decryption(rules.decryption, "pupils", "illegal.test") == (False, "host-only")
    assert decryption(rules.decryption, "pupils", "pages.test") == (True, "category-url-entry")


def test_an_illegal_list_refresh_applies_without_new_rules(rules):
    """The lists refresh in place, on their own schedule: the predicate reads them live."""
    (lst,) = rules.classifier.illegal.lists
    assert decryption(rules.decryption, "pupils", "later.test") == (False, "host-only")
    parsed = parse_list(["later.test/new/page"], "plain", "iwf")
    lst.replace(parsed.keys, parsed.host_keys)
    assert decryption(rules.decryption, "pupils", "later.test") == (True, "illegal-url-entry")
    assert decryption(rules.decryption, "pupils", "illegal.test") == (False, "host-only")
