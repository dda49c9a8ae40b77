"""Illegal-content lists: plain and hashed forms, URL-level matching, refresh with removals and the
last good copy, confidentiality of entries, and precedence over every allow."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time

import pytest

from sample_school import BASE_CONFIG, REPO, replace_once
from schoolgate.classify import Classifier
from schoolgate.classify.illegal import IllegalLists, digest_key, parse_entries, parse_list
from schoolgate.config.model import ConfigError, IllegalListConfig
from schoolgate.gateway.rules import build_rules
from schoolgate.identify import Identity
from schoolgate.policy import ALLOW, BLOCK, Policy
from schoolgate.sources.illegal import IllegalListSource
from schoolgate.sources.lists import build_classifier

PLAIN = """\
# comment lines and blank lines are ignored

iwf-dom.test
pages.test/gallery/image-1.jpg
pages.test/forum/thread?id=42
"""


def sha(expression: str) -> str:
    return hashlib.sha256(expression.encode()).hexdigest()


def make_list(tmp_path, text: str, form: str = "plain", kind: str = "iwf", name: str = "iwf"):
    source = tmp_path / f"{name}.txt"
    source.write_text(text, encoding="utf-8")
    lst = IllegalListSource(spec(name, kind, source, form), tmp_path / "state")
    assert lst.refresh()
    return lst, source


def spec(name: str, kind: str, source, form: str) -> IllegalListConfig:
    return IllegalListConfig(name=name, title=name, kind=kind, source=str(source), form=form)


def classifier_with(*sources: IllegalListSource) -> Classifier:
    c = Classifier()
    c.illegal = IllegalLists([s.list for s in sources])
    return c


@pytest.mark.parametrize(
    ("url", "listed"),
    [
        # A domain entry covers the domain, its subdomains and every path on them.
        ("http://iwf-dom.test/", True),
        ("https://www.iwf-dom.test/any/page?x=1", True),
        ("http://IWF-DOM.test./a", True),
        # ... but not a name that merely ends with the same letters.
        ("http://notiwf-dom.test/", False),
        # A URL entry covers that page only (query included where the entry has one).
        ("http://pages.test/gallery/image-1.jpg", True),
        ("http://pages.test/gallery/image-2.jpg", False),
        ("http://pages.test/", False),
        ("http://pages.test/forum/thread?id=42", True),
        ("http://pages.test/forum/thread?id=43", False),
        # Canonicalisation defeats simple disguises: escapes, case, dot segments, fragments.
        ("http://pages.test/gallery/%69mage-1.jpg", True),
        ("http://PAGES.test/gallery/./x/../image-1.jpg#frag", True),
    ],
)
def test_plain_list_matches_at_url_level(tmp_path, url, listed):
    lst, _ = make_list(tmp_path, PLAIN)
    match = classifier_with(lst).classify(url).illegal
    assert (match is not None) == listed
    if listed:
        assert (match.name, match.kind) == ("iwf", "iwf")


def test_hashed_list_matches_like_the_plain_one(tmp_path):
    hashed = "\n".join(sha(e) for e in ("iwf-dom.test/", "pages.test/gallery/image-1.jpg")) + "\n"
    lst, _ = make_list(tmp_path, hashed, form="sha256", kind="ctiru", name="ctiru")
    c = classifier_with(lst)
    assert c.classify("http://a.iwf-dom.test/x").illegal.kind == "ctiru"
    assert c.classify("http://pages.test/gallery/image-1.jpg").illegal is not None
    assert c.classify("http://pages.test/gallery/").illegal is None


def test_shipped_test_lists_match_their_documented_entries():

    root = REPO / "categories" / "illegal"
    ctiru = IllegalListSource(spec("ctiru", "ctiru", root / "ctiru-test.sha256", "sha256"))
    iwf = IllegalListSource(spec("iwf", "iwf", root / "iwf-test.txt", "plain"))
    assert ctiru.refresh() and iwf.refresh()
    c = classifier_with(iwf, ctiru)
    assert c.classify("http://ctiru-test.example.com/anything").illegal.name == "ctiru"
    assert c.classify("http://ctiru-test.example.net/videos/test-video.html").illegal.name == "ctiru"
    assert c.classify("http://iwf-test-domain.example.net/").illegal.name == "iwf"
    assert c.classify("http://iwf-test.example.org/gallery/test-image-1.jpg").illegal.name == "iwf"
    assert c.classify("http://iwf-test.example.org/gallery/").illegal is None


def test_bad_lines_are_reported_by_number_never_by_content(caplog):
    secret = "secret entry!.test/some/path"  # no DNS name has a space or '!'

    keys, problems = parse_entries(["ok.test", "", "zz" * 40, "#c", "not hex"], "sha256", "ctiru")
    assert len(keys) == 0 and len(problems) == 3
    keys, problems = parse_entries(["ok.test", "http://[bad", secret], "plain", "iwf")
    assert len(keys) == 1
    assert [p.split(": ")[0] for p in problems] == ["iwf:2", "iwf:3"]
    assert all("secret" not in p and "[bad" not in p for p in problems)


def test_entries_are_held_only_as_digests(tmp_path):
    lst, _ = make_list(tmp_path, PLAIN)
    assert lst.entries == 3
    state = (tmp_path / "state" / "iwf.digests").read_bytes()
    assert b"iwf-dom" not in state and b"pages.test" not in state
    assert len(state) == 3 * 8
    assert (tmp_path / "state" / "iwf.digests").stat().st_mode & 0o077 == 0


def test_refresh_applies_removals_and_a_failure_keeps_the_last_good_list(tmp_path, caplog):
    lst, source = make_list(tmp_path, PLAIN)
    c = classifier_with(lst)
    assert c.classify("http://iwf-dom.test/").illegal is not None
    loaded = lst.loaded_at

    source.write_text("pages.test/gallery/image-1.jpg\n", encoding="utf-8")
    assert lst.refresh()
    assert c.classify("http://iwf-dom.test/").illegal is None  # removal applied
    assert lst.entries == 1

    source.unlink()
    caplog.set_level(logging.WARNING)
    assert not lst.refresh()
    assert lst.entries == 1 and lst.last_error and "cannot read" in lst.last_error
    assert c.classify("http://pages.test/gallery/image-1.jpg").illegal is not None
    assert lst.loaded_at >= loaded
    assert "keeping the last good list (1 entry)" in caplog.text
    # A warning while the last good list is fresh; an error once it has gone stale.
    assert [r.levelno for r in caplog.records if "refresh failed" in r.message] == [logging.WARNING]
    caplog.clear()
    lst.loaded_at = lst.loaded_at - lst.config.stale_after_seconds - 1
    assert not lst.refresh()
    assert [r.levelno for r in caplog.records if "refresh failed" in r.message] == [logging.ERROR]

    source.write_text("# nothing valid\nnot a url at all ::\n", encoding="utf-8")
    assert not lst.refresh()  # an empty list is a failed refresh, never an empty block list
    assert lst.entries == 1


def test_last_good_copy_restores_at_start_up_with_its_age(tmp_path):
    lst, source = make_list(tmp_path, PLAIN)
    source.unlink()
    again = IllegalListSource(lst.config, tmp_path / "state")
    assert again.restore()
    assert again.entries == 3
    assert again.age() is not None and again.age() >= 0
    assert classifier_with(again).classify("https://iwf-dom.test/").illegal is not None


def test_a_last_good_copy_older_than_the_interval_is_refreshed_at_once(tmp_path):
    """A gateway that was down past the refresh interval refreshes as soon as it runs; a fresh
    copy waits out the rest of its interval; then every interval."""
    lst, source = make_list(tmp_path, PLAIN)
    interval = lst.config.refresh_seconds
    copy = tmp_path / "state" / "iwf.digests"
    old = time.time() - interval - 60
    os.utime(copy, (old, old))
    source.write_text(PLAIN + "added.test\n", encoding="utf-8")
    stale = IllegalListSource(lst.config, tmp_path / "state")
    assert stale.restore() and stale.entries == 3
    assert stale.due_in() == 0
    fresh = IllegalListSource(lst.config, tmp_path / "state")
    os.utime(copy, None)
    assert fresh.restore()
    assert interval - 5 < fresh.due_in() <= interval

    sleeps: list[float] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise asyncio.CancelledError

    async def run() -> None:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(asyncio, "sleep", record_sleep)
            with pytest.raises(asyncio.CancelledError):
                await stale.keep_fresh()

    asyncio.run(run())
    assert sleeps[0] == 0  # refreshed at once ...
    assert stale.entries == 4  # ... from the source
    assert interval - 5 < sleeps[1] <= interval  # then after a full interval


# ---------------------------------------------------------------------------------------------
# Hosts of URL-level entries (selective decryption), as digests only


def test_hosts_of_url_entries_are_held_as_digests_beside_the_copy(tmp_path):
    lst, _ = make_list(tmp_path, PLAIN)
    lists = IllegalLists([lst.list])
    # pages.test has two URL entries (one host digest); iwf-dom.test is a domain entry, decided
    # by the host name, so it needs none.
    assert lst.list.host_keys is not None and len(lst.list.host_keys) == 1
    assert lists.url_entry_on("pages.test") == (lst.list, None)
    assert lists.url_entry_on("www.pages.test") == (lst.list, None)  # lookup hosts reach it
    assert lists.url_entry_on("iwf-dom.test") == (None, None)
    assert lists.url_entry_on("otherpages.test") == (None, None)
    hosts = (tmp_path / "state" / "iwf.hosts").read_bytes()
    assert b"pages" not in hosts and b"iwf-dom" not in hosts
    assert len(hosts) == 32 + 8  # the entries file's SHA-256, then one host key
    assert (tmp_path / "state" / "iwf.hosts").stat().st_mode & 0o077 == 0


def test_a_copy_from_before_host_digests_loads_fail_safe_and_is_refreshed_at_once(tmp_path):
    lst, _ = make_list(tmp_path, PLAIN)
    (tmp_path / "state" / "iwf.hosts").unlink()
    old = IllegalListSource(lst.config, tmp_path / "state")
    assert old.restore() and old.entries == 3
    assert old.list.host_keys is None
    # Unknown hosts: any host may have a URL entry on this list.
    assert IllegalLists([old.list]).url_entry_on("fine.test") == (None, old.list)
    assert old.due_in() == 0  # a fresh copy, refreshed now to learn its hosts
    assert old.refresh()
    assert IllegalLists([old.list]).url_entry_on("fine.test") == (None, None)
    assert old.due_in() > 0


def test_host_digests_saved_with_other_entries_are_not_trusted(tmp_path):
    """A save interrupted between the two files leaves host digests of another list: they
    would miss a new URL entry's host, so they are dropped (fail safe)."""
    lst, source = make_list(tmp_path, PLAIN)
    hosts = (tmp_path / "state" / "iwf.hosts").read_bytes()
    source.write_text(PLAIN + "new.test/page\n", encoding="utf-8")
    assert lst.refresh()
    (tmp_path / "state" / "iwf.hosts").write_bytes(hosts)
    again = IllegalListSource(lst.config, tmp_path / "state")
    assert again.restore() and again.entries == 4
    assert again.list.host_keys is None


def test_a_hashed_source_may_name_each_entrys_host():
    both = f"{sha('a.test/x')} {sha('a.test')}"
    parsed = parse_list([both, f"{sha('b.test/')},{sha('b.test')}"], "sha256", "ctiru")
    assert len(parsed.keys) == 2 and parsed.host_keys is not None
    assert len(parsed.host_keys) == 2 and parsed.problems == []
    # One line without its host makes the list's hosts unknown; a bad second field is a bad line.
    parsed = parse_list([both, sha("c.test/y")], "sha256", "ctiru")
    assert len(parsed.keys) == 2 and parsed.host_keys is None
    parsed = parse_list([both, f"{sha('c.test/y')} c.test"], "sha256", "ctiru")
    assert len(parsed.keys) == 1 and [p.split(": ")[0] for p in parsed.problems] == ["ctiru:2"]


def test_the_shipped_hashed_test_list_names_its_hosts():
    root = REPO / "categories" / "illegal"
    ctiru = IllegalListSource(spec("ctiru", "ctiru", root / "ctiru-test.sha256", "sha256"))
    assert ctiru.refresh()
    lists = IllegalLists([ctiru.list])
    assert lists.url_entry_on("ctiru-test.example.net") == (ctiru.list, None)
    assert lists.url_entry_on("example.net") == (None, None)


def test_staleness(tmp_path):
    lst, _ = make_list(tmp_path, PLAIN)
    assert not lst.stale()
    assert lst.stale(now=lst.loaded_at + lst.config.stale_after_seconds + 1)
    never = IllegalListSource(spec("x", "other", tmp_path / "none", "plain"))
    assert never.stale() and never.age() is None


def test_digest_key_is_64_bits_of_sha256():
    d = hashlib.sha256(b"a.test/").digest()
    assert digest_key(d) == int.from_bytes(d[:8], "big")


# ---------------------------------------------------------------------------------------------
# Precedence and refusals

ALLOW_STAFF = """\
    blocked_categories: []
    allow:
      - target: {target}
        reason: Teaching resource
"""


def test_an_allow_entry_naming_an_illegal_entry_is_refused(tmp_path, make_config):
    lst, _ = make_list(tmp_path, PLAIN)
    text = replace_once(BASE_CONFIG, "    blocked_categories: []\n",
                        ALLOW_STAFF.format(target="www.iwf-dom.test"))
    config = make_config(text)
    with pytest.raises(ConfigError) as e:
        build_rules(config, IllegalLists([lst.list]))
    (problem,) = e.value.problems
    assert "groups.staff.allow[0]" in problem and "refused" in problem and "'iwf'" in problem
    assert "cannot override" in problem or "can override" in problem


def test_illegal_lists_outrank_an_allow_of_a_parent_domain(tmp_path, make_config):
    lst, _ = make_list(tmp_path, PLAIN)
    text = replace_once(BASE_CONFIG, "    blocked_categories: []\n",
                        ALLOW_STAFF.format(target="pages.test"))
    rules = build_rules(make_config(text), IllegalLists([lst.list]))  # not refused: the parent is not listed
    staff = Identity(ip="10.30.0.9", group="staff", source="subnet")
    listed = rules.policy.decide(staff, rules.classifier.classify("http://pages.test/gallery/image-1.jpg"))
    assert (listed.action, listed.illegal_list, listed.severity) == (BLOCK, "iwf", "high")
    assert listed.matched_entry is None  # the entry is never carried in the verdict
    other = rules.policy.decide(staff, rules.classifier.classify("http://pages.test/other"))
    assert (other.action, other.reason) == (ALLOW, "override")


def test_policy_without_illegal_lists_is_unchanged(config):
    c = build_classifier(config)
    v = Policy(config).decide(Identity("10.20.1.2", "secondary", "subnet"),
                              c.classify("https://www.bet365.com/"))
    assert (v.action, v.category, v.illegal_list) == (BLOCK, "gambling", None)
