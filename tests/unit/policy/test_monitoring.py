"""Searches and addresses against the shipped keyword library: what is flagged, what blocks at
which group threshold, and what the event and why carry."""

from __future__ import annotations

import pytest

from sample_school import BASE_CONFIG, REPO, replace_once
from schoolgate.identify import Identity
from schoolgate.policy import ALLOW, BLOCK, Policy
from schoolgate.sources.keywords import load_library
from schoolgate.sources.lists import build_classifier

LIBRARY = REPO / "keywords"


@pytest.fixture(scope="module")
def library():
    lib = load_library(LIBRARY)
    assert lib.problems == ()
    return lib


@pytest.fixture
def school(make_config, library):
    # Staff record and alert without blocking a single high-severity phrase.
    text = replace_once(BASE_CONFIG, "    blocked_categories: []\n",
                        "    blocked_categories: []\n    keyword_threshold: 20\n")
    config = make_config(text)
    policy, classifier = Policy(config), build_classifier(config, library=library)

    def decide(group: str, url: str):
        # The gateway's own path: classify (search, flags) then one decision.
        return policy.decide(Identity("10.0.0.1", group, "subnet"), classifier.classify(url))

    return decide


def test_high_severity_search_blocks_pupils_and_is_flagged(school):
    v = school("secondary", "https://www.google.co.uk/search?q=how+to+k1ll+mys3lf&oq=how")
    assert v.action == BLOCK and v.reason == "keywords"
    assert (v.theme, v.severity, v.search.engine) == ("suicide_selfharm", "high", "google")
    assert v.search.term == "how to k1ll mys3lf"
    assert v.flag.theme == "suicide_selfharm"
    assert "group secondary blocks at 10" in v.rule


def test_staff_threshold_records_without_blocking(school):
    v = school("staff", "https://www.bing.com/search?q=how+to+kill+myself&form=QBLH")
    assert v.action == ALLOW
    assert (v.theme, v.severity, v.search.engine) == ("suicide_selfharm", "high", "bing")


def test_support_context_suppresses_the_flag(school):
    v = school("secondary", "https://www.google.com/search?q=self+harm+support+for+teenagers")
    assert v.action == ALLOW
    assert v.flags == () and v.theme is None
    # Still a search event: the term is recorded whether or not it is flagged.
    assert v.search.term == "self harm support for teenagers"


def test_everyday_search_is_not_flagged(school):
    v = school("primary", "https://duckduckgo.com/?q=volcano+facts+for+kids&ia=web")
    assert (v.action, v.flags, v.search.engine) == (ALLOW, (), "duckduckgo")


def test_an_address_that_is_not_a_search_is_scanned_too(school):
    v = school("secondary", "https://forum.example/threads/best-way-to-kill-myself")
    assert v.search is None
    assert (v.action, v.theme) == (BLOCK, "suicide_selfharm")


def test_illegal_or_category_blocks_keep_their_reason(school):
    # Already blocked by its category: the flags are added for the DSL, the reason stays.
    v = school("secondary", "https://www.bet365.com/search?q=kill+myself")
    assert (v.action, v.reason, v.theme) == (BLOCK, "category", "suicide_selfharm")


def test_block_page_for_a_flagged_search_offers_help_and_never_repeats_the_term(
        school, make_config):
    from datetime import UTC, datetime

    from schoolgate.policy.blockpage import BlockPage

    v = school("secondary", "https://www.google.co.uk/search?q=how+to+k1ll+mys3lf")
    page = BlockPage(make_config()).render(v, "www.google.co.uk", datetime.now(UTC))
    text = page.body.decode()
    assert page.status == 403
    assert "Childline: 0800 1111" in text and "Samaritans: 116 123" in text
    assert "words in this search or address" in text
    assert "k1ll" not in text and "mys3lf" not in text


# ---------------------------------------------------------------------------------------------
# Pages, judged by their text (the shipped library; the gateway's ScanPages calls the same)


@pytest.fixture
def pages(make_config, library):
    from schoolgate.classify.pages import page_findings, page_text, top_phrases

    text = replace_once(BASE_CONFIG, "    blocked_categories: []\n",
                        "    blocked_categories: []\n    keyword_threshold: 20\n")
    config = make_config(text)
    policy, classifier = Policy(config), build_classifier(config, library=library)

    def judge(group: str, html: str):
        allowed = policy.decide(Identity("10.0.0.1", group, "subnet"),
                                classifier.classify("https://forum.example/t/1"))
        assert allowed.action == ALLOW
        flags = page_findings(library, page_text(html, "text/html"))
        return policy.page_verdict(allowed, flags, top_phrases(flags))

    return judge


def test_a_page_at_the_threshold_blocks_with_its_score_and_phrases(pages):
    v = pages("secondary", "<p>I want to kill myself.</p><p>I want to kill myself.</p>")
    assert (v.action, v.reason, v.theme, v.severity) == (BLOCK, "page-content",
                                                         "suicide_selfharm", "high")
    assert v.page_score == 10  # the phrase twice counts once
    assert v.page_phrases == ("kill myself",)
    assert "group secondary blocks at 10" in v.rule


def test_a_high_phrase_below_the_threshold_is_an_allow_with_its_theme(pages):
    v = pages("staff", "<p>I want to kill myself.</p>")
    assert (v.action, v.theme, v.severity, v.page_score) == (ALLOW, "suicide_selfharm", "high",
                                                             10)
    assert "below group staff's 20" in v.rule


@pytest.mark.parametrize("html", [
    "<p>Volcanoes and the water cycle.</p>",
    # A support page: the context suppresses the phrase.
    "<p>Self harm support: talk to Childline.</p>",
])
def test_pages_with_nothing_to_say_have_no_verdict_of_their_own(pages, html):
    assert pages("secondary", html) is None
