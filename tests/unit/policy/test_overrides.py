"""Per-group local overrides: allow and block entries with a reason that beat the categories
(never the illegal lists); the most specific entry wins, block on a tie."""

from __future__ import annotations

import pytest

from sample_school import BASE_CONFIG, line_of, replace_once
from schoolgate.config.model import ConfigError
from schoolgate.identify import Identity
from schoolgate.policy import ALLOW, BLOCK, Policy
from schoolgate.sources.lists import build_classifier

OVERRIDES = """\
    blocked_categories: [gambling]
    allow:
      - {target: bet365.com/responsible-gambling, reason: PSHE lesson on gambling harms}
      - {target: news.tiktok.com, reason: Media studies}
      - {target: "https://www.example.org:443/Teaching/", reason: Department page}
      - {target: same.test, reason: tie}
    block:
      - {target: bbc.co.uk/sport, reason: Not in lessons}
      - {target: tiktok.com, reason: Not at school}
      - {target: same.test, reason: tie}
"""


@pytest.fixture
def decide(make_config):
    text = replace_once(BASE_CONFIG, "    blocked_categories: [gambling]\n", OVERRIDES)  # sixth form
    config = make_config(text)
    classifier, policy = build_classifier(config), Policy(config)
    sixth = Identity("10.20.50.3", "sixth_form", "subnet")

    def run(url: str):
        return policy.decide(sixth, classifier.classify(url))

    return run


@pytest.mark.parametrize(
    ("url", "action", "reason", "entry"),
    [
        # An allow for a URL prefix beats the blocked category for that prefix only.
        ("https://www.bet365.com/responsible-gambling/quiz", ALLOW, "override", "bet365.com/responsible-gambling"),
        ("https://www.bet365.com/casino", BLOCK, "category", "bet365.com"),
        # A block entry beats an allowed (or unlisted) category.
        ("https://www.bbc.co.uk/sport/football", BLOCK, "override", "bbc.co.uk/sport"),
        ("https://www.bbc.co.uk/bitesize", ALLOW, "no-block", "bbc.co.uk"),
        # The more specific host wins: news.tiktok.com allowed inside blocked tiktok.com.
        ("https://news.tiktok.com/a", ALLOW, "override", "news.tiktok.com"),
        ("https://www.tiktok.com/", BLOCK, "override", "tiktok.com"),
        # Scheme, port and host case in the entry are ignored; the path is case-sensitive.
        ("http://www.example.org/Teaching/unit-1", ALLOW, "override", "https://www.example.org:443/Teaching/"),
        ("http://www.example.org/teaching/unit-1", ALLOW, "no-block", None),
        # Equally specific allow and block: block wins.
        ("http://same.test/", BLOCK, "override", "same.test"),
    ],
)
def test_most_specific_override_decides(decide, url, action, reason, entry):
    v = decide(url)
    assert (v.action, v.reason, v.matched_entry) == (action, reason, entry)
    if reason == "override":
        assert v.override is not None and v.override.reason in v.rule
        # `matched_list` says where the entry is written: file:line: key.
        assert f"groups.sixth_form.{'allow' if action == ALLOW else 'block'}[" in v.matched_list


def test_other_groups_are_not_affected(make_config):
    text = replace_once(BASE_CONFIG, "    blocked_categories: [gambling]\n", OVERRIDES)
    config = make_config(text)
    v = Policy(config).decide(Identity("10.20.1.2", "secondary", "subnet"),
                              build_classifier(config).classify("https://www.bet365.com/responsible-gambling"))
    assert (v.action, v.reason) == (BLOCK, "category")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{target: 'bad host!', reason: x}", "not a domain or URL prefix"),
        ("{target: example.com}", "groups.staff.allow[0].reason: is required but missing"),
        ("{reason: why}", "groups.staff.allow[0].target: is required but missing"),
        ("{target: example.com, reason: x, by: me}", "unknown key"),
    ],
)
def test_bad_override_entries_name_file_line_and_key(make_config, entry, message):
    text = replace_once(BASE_CONFIG, "    blocked_categories: []\n",
                        f"    blocked_categories: []\n    allow:\n      - {entry}\n")
    with pytest.raises(ConfigError) as e:
        make_config(text)
    (problem,) = e.value.problems
    assert message in problem
    assert f":{line_of(text, entry)}:" in problem


def test_override_paths_are_compared_in_canonical_form(make_config):
    # An entry written with escapes, "./" or "//" covers the page however the request spells it
    # (an emergency block of one image must not miss because of how it was typed).
    text = replace_once(BASE_CONFIG, "    blocked_categories: [gambling]\n", """\
    blocked_categories: [gambling]
    block:
      - {target: "img.example/~john/pic%2Ejpg", reason: Reported image}
      - {target: "img.example/a/./b//c/", reason: Folder}
""")
    config = make_config(text)
    classifier, policy = build_classifier(config), Policy(config)
    sixth = Identity("10.20.50.3", "sixth_form", "subnet")
    for url in ("http://img.example/~john/pic.jpg", "http://img.example/%7Ejohn/pic%2Ejpg",
                "http://img.example/a/b/c/page.html"):
        assert policy.decide(sixth, classifier.classify(url)).action == BLOCK, url
    assert policy.decide(sixth, classifier.classify("http://img.example/a/x")).action == ALLOW
