"""What the group may see (Policy) and the page shown instead of a blocked site (BlockPage)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest

from sample_school import BASE_CONFIG, replace_once
from schoolgate.classify import CategoryMatch, Classification
from schoolgate.config.loader import load_config
from schoolgate.config.model import ConfigError
from schoolgate.gateway.reload import watched_files
from schoolgate.identify import Identity
from schoolgate.policy import ALLOW, BLOCK, ERROR, Policy, Verdict, new_reference
from schoolgate.policy.blockpage import FAILURES, BlockPage
from schoolgate.sources.lists import build_classifier

# Crockford base32 has no I, L, O or U.
REFERENCE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$")


def who(group: str) -> Identity:
    return Identity(ip="10.0.0.1", group=group, source="subnet")


def matches(*pairs: tuple[str, str]) -> Classification:
    """A classification of `a.b.example.com` with the given (category, entry) matches, most
    specific first, as the classifier returns them."""
    return Classification(
        "a.b.example.com",
        tuple(CategoryMatch(cat, entry, f"/lists/{cat}", n) for n, (cat, entry) in
              enumerate(pairs, start=1)),
    )


# ---------------------------------------------------------------------------------------------
# Policy.decide


@pytest.mark.parametrize(
    ("host", "group", "action", "category"),
    [
        # Gambling is blocked for every pupil group and for guests, not for staff.
        ("www.bet365.com", "primary", BLOCK, "gambling"),
        ("www.bet365.com", "sixth_form", BLOCK, "gambling"),
        ("www.bet365.com", "guest", BLOCK, "gambling"),
        ("www.bet365.com", "staff", ALLOW, "gambling"),
        # Social media: blocked for primary, secondary and guests; the sixth form may use it.
        ("m.facebook.com", "secondary", BLOCK, "social_networks"),
        ("m.facebook.com", "sixth_form", ALLOW, "social_networks"),
        ("m.facebook.com", "staff", ALLOW, "social_networks"),
        # Education is blocked for nobody; a host in no list is allowed for everyone.
        ("www.bbc.co.uk", "primary", ALLOW, "education"),
        ("www.example.org", "primary", ALLOW, None),
        ("www.example.org", "guest", ALLOW, None),
    ],
)
def test_decide_by_group(config, host, group, action, category):
    classification = build_classifier(config).classify_host(host)
    verdict = Policy(config).decide(who(group), classification)
    assert (verdict.action, verdict.group, verdict.category) == (action, group, category)
    assert REFERENCE.match(verdict.reference)


def test_block_verdict_explains_itself(config, tmp_path):
    classification = build_classifier(config).classify_host("www.bet365.com")
    verdict = Policy(config).decide(who("secondary"), classification)
    assert verdict == Verdict(
        action=BLOCK,
        group="secondary",
        reference=verdict.reference,
        category="gambling",
        categories=("gambling",),
        rule="group secondary blocks gambling",
        matched_list=str(tmp_path / "lists" / "gambling"),
        matched_entry="bet365.com",
        matched_line=1,
        reason="category",
    )


def test_allow_verdict_names_the_closest_category(config):
    classification = build_classifier(config).classify_host("m.facebook.com")
    verdict = Policy(config).decide(who("sixth_form"), classification)
    assert verdict.action == ALLOW
    assert verdict.rule == "group sixth_form allows social_networks"
    assert (verdict.matched_entry, verdict.matched_line) == ("facebook.com", 1)
    assert verdict.reason == "no-block"


def test_allow_verdict_for_an_unlisted_host(config):
    verdict = Policy(config).decide(who("primary"), Classification("www.example.org", ()))
    assert verdict.action == ALLOW
    assert verdict.category is None and verdict.categories == ()
    assert verdict.rule is None and verdict.matched_list is None and verdict.matched_line is None
    assert verdict.reason == "no-block"


@pytest.mark.parametrize(
    ("group", "action", "category", "entry"),
    [
        # Both matching categories blocked: the most specific entry decides.
        ("secondary", BLOCK, "social_networks", "b.example.com"),
        # Only the less specific one blocked: it decides.
        ("sixth_form", BLOCK, "gambling", "example.com"),
        # Neither blocked: allowed, naming the most specific match.
        ("staff", ALLOW, "social_networks", "b.example.com"),
    ],
)
def test_most_specific_blocked_category_decides(config, group, action, category, entry):
    classification = matches(("social_networks", "b.example.com"), ("gambling", "example.com"))
    verdict = Policy(config).decide(who(group), classification)
    assert (verdict.action, verdict.category, verdict.matched_entry) == (action, category, entry)
    assert verdict.categories == ("social_networks", "gambling")


def test_most_specific_blocked_category_decides_even_if_a_closer_one_is_allowed(config):
    # Sixth form may use social media, but the page is also on a gambling list.
    classification = matches(
        ("social_networks", "a.b.example.com"), ("education", "b.example.com"),
        ("gambling", "example.com"),
    )
    verdict = Policy(config).decide(who("sixth_form"), classification)
    assert (verdict.action, verdict.category, verdict.matched_line) == (BLOCK, "gambling", 3)


def test_failed_is_always_a_block_marked_error():
    verdict = Policy.failed("guest", "classify")
    assert verdict.action == ERROR
    assert verdict.group == "guest"
    assert verdict.category is None and verdict.categories == ()
    assert verdict.severity == "high"
    assert verdict.reason == "filtering-error:classify"
    assert verdict.rule == "filtering error in classify: blocked to be safe"
    assert REFERENCE.match(verdict.reference)


# ---------------------------------------------------------------------------------------------
# References


def test_reference_format_and_spread():
    references = [new_reference() for _ in range(2000)]
    assert [r for r in references if not REFERENCE.match(r)] == []
    # 50 random bits: 2000 draws never collide in practice (p < 1e-9).
    assert len(set(references)) == len(references)
    # Every one of the 32 symbols is used, in every position of the reference.
    for position in (0, 4, 6, 10):
        assert len({r[position] for r in references}) == 32


# ---------------------------------------------------------------------------------------------
# The block page

SUMMER_NOON_UTC = datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC)  # a Monday; London is on BST
WINTER_NOON_UTC = datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC)  # a Monday; London is on GMT


def blocked(category: str = "social_networks", group: str = "secondary") -> Verdict:
    return Verdict(action=BLOCK, group=group, reference="7KQ2M-9XDPA", category=category)


def test_block_page(config):
    page = BlockPage(config).render(blocked(), "www.facebook.com", SUMMER_NOON_UTC)
    body = page.body.decode("utf-8")

    assert page.status == 403
    assert page.headers == {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "X-Schoolgate-Reference": "7KQ2M-9XDPA",
    }
    assert "<h1>This page is blocked</h1>" in body
    assert "<dd>www.facebook.com</dd>" in body
    # People read titles, not machine names.
    assert "<dt>Category</dt><dd>Social media</dd>" in body
    assert "<dt>Policy</dt><dd>Secondary pupils</dd>" in body
    assert "social_networks" not in body
    assert '<dd class="ref">7KQ2M-9XDPA</dd>' in body
    assert "Internet use on the Test Academy network is monitored and recorded" in body
    assert "<title>This page is blocked – Test Academy</title>" in body


@pytest.mark.parametrize(
    ("timezone", "when", "shown"),
    [
        # The school's local time, with its zone's abbreviation, in summer and in winter.
        ("Europe/London", SUMMER_NOON_UTC, "Monday 01 July 2024, 13:00:00 BST"),
        ("Europe/London", WINTER_NOON_UTC, "Monday 15 January 2024, 12:00:00 GMT"),
        # A school elsewhere: the date can change too.
        ("Asia/Tokyo", SUMMER_NOON_UTC, "Monday 01 July 2024, 21:00:00 JST"),
        ("Pacific/Auckland", datetime(2024, 7, 1, 13, 30, tzinfo=UTC),
         "Tuesday 02 July 2024, 01:30:00 NZST"),
    ],
)
def test_block_page_time_is_in_the_schools_timezone(make_config, timezone, when, shown):
    config = make_config(replace_once(BASE_CONFIG, "Europe/London", timezone))
    body = BlockPage(config).render(blocked(), "www.facebook.com", when).body.decode()
    assert f"<dt>Time</dt><dd>{shown}</dd>" in body


@pytest.mark.parametrize(
    ("host", "escaped"),
    [
        # A host is attacker-controlled text: it must never become markup.
        ('<script>alert("x")</script>', "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
        ("a&b.example", "a&amp;b.example"),
        ("x'onmouseover='y", "x&#x27;onmouseover=&#x27;y"),
    ],
)
def test_block_page_escapes_the_host(config, host, escaped):
    body = BlockPage(config).render(blocked(), host, SUMMER_NOON_UTC).body.decode()
    assert f"<dd>{escaped}</dd>" in body
    assert "<script>" not in body
    assert host not in body


def test_block_page_escapes_school_and_titles(make_config):
    text = replace_once(BASE_CONFIG, "name: Test Academy", 'name: "St Mary & <St John>"')
    text = replace_once(text, "title: Social media", 'title: "Chat & <social>"')
    page = BlockPage(make_config(text)).render(blocked(), "x.example", SUMMER_NOON_UTC)
    body = page.body.decode()
    assert "Internet use on the St Mary &amp; &lt;St John&gt; network" in body
    assert "<dd>Chat &amp; &lt;social&gt;</dd>" in body
    assert "<St John>" not in body and "<social>" not in body


def test_error_page_is_503_filtering_error(config):
    verdict = Policy.failed("guest", "classify")
    page = BlockPage(config).render(verdict, "www.example.org", WINTER_NOON_UTC)
    body = page.body.decode()
    assert page.status == 503
    assert page.headers["X-Schoolgate-Reference"] == verdict.reference
    assert page.headers["Cache-Control"] == "no-store"
    assert "<h1>Filtering error</h1>" in body
    assert "could not check this page" in body
    assert "<dt>Reason</dt><dd>filtering error</dd>" in body
    assert "<dt>Policy</dt><dd>Guest Wi-Fi</dd>" in body
    assert "<dt>Category</dt>" not in body
    assert f'<dd class="ref">{verdict.reference}</dd>' in body
    assert "Monday 15 January 2024, 12:00:00 GMT" in body
    assert "is monitored and recorded" in body


def test_block_page_for_names_the_config_does_not_know(config):
    # A verdict from a newer rule may name a category or group with no title: show the name.
    verdict = blocked(category="mystery", group="visitors")
    body = BlockPage(config).render(verdict, "x.example", SUMMER_NOON_UTC).body.decode()
    assert "<dd>mystery</dd>" in body
    assert "<dd>visitors</dd>" in body


# ---------------------------------------------------------------------------------------------
# A school's own block page (the config's `templates` folder)


def with_templates(make_config, tmp_path, files: dict[str, str]):
    """The sample school with a `templates` folder holding `files`."""
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return make_config(BASE_CONFIG + "templates: templates\n"), folder


def test_a_schools_copy_of_the_block_page_replaces_the_package_one(make_config, tmp_path):
    config, folder = with_templates(make_config, tmp_path, {"blockpage.html": (
        "<h1>Oops: {{ heading }}</h1><p>{{ school }}</p>\n"
        "{% for label, value in details %}<b>{{ label }}={{ value }}</b>{% endfor %}\n"
        "<p>Quote {{ reference }}</p>\n")})
    assert config.templates == folder
    page = BlockPage(config).render(blocked(), "<i>x</i>.example", SUMMER_NOON_UTC)
    body = page.body.decode()
    assert "<h1>Oops: This page is blocked</h1>" in body and "<p>Test Academy</p>" in body
    assert "<p>Quote 7KQ2M-9XDPA</p>" in body
    # The school's copy is escaped just as the package's is.
    assert "<b>Site=&lt;i&gt;x&lt;/i&gt;.example</b>" in body and "<i>" not in body
    assert "monitored and recorded" not in body  # the package's copy was not used
    # Status and headers are Schoolgate's, whatever the template says.
    assert page.status == 403
    assert page.headers == {"Content-Type": "text/html; charset=utf-8",
                            "Cache-Control": "no-store", "X-Schoolgate-Reference": "7KQ2M-9XDPA"}


def test_a_template_the_school_has_not_copied_comes_from_the_package(make_config, tmp_path):
    config, _ = with_templates(make_config, tmp_path, {"daily.html": "only the report\n"})
    body = BlockPage(config).render(blocked(), "www.facebook.com", SUMMER_NOON_UTC).body.decode()
    assert "<h1>This page is blocked</h1>" in body
    assert "<dt>Category</dt><dd>Social media</dd>" in body


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        # A syntax error: found when the page is built (start-up or reload).
        ("<h1>{{ heading }}</h1>\n<p>\n{% if report %}\n<p>no end</p>\n", 4, "endif"),
        # A name the page does not have: found when the page is rendered.
        ("<h1>{{ heading }}</h1>\n\n<p>{{ headteacher }}</p>\n", 3, "headteacher"),
    ],
)
def test_a_broken_block_page_still_blocks_with_the_package_copy(make_config, tmp_path, caplog,
                                                                text, line, problem):
    config, folder = with_templates(make_config, tmp_path, {"blockpage.html": text})
    page = BlockPage(config).render(blocked(), "www.facebook.com", SUMMER_NOON_UTC)
    body = page.body.decode()
    # Never fails open: the same blocked page, from Schoolgate's own template.
    assert page.status == 403 and page.headers["X-Schoolgate-Reference"] == "7KQ2M-9XDPA"
    assert "<h1>This page is blocked</h1>" in body and '<dd class="ref">7KQ2M-9XDPA</dd>' in body
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert f"{folder / 'blockpage.html'}:{line}" in record.getMessage()
    assert problem in record.getMessage()


def test_a_missing_templates_folder_is_a_config_error(write_config, tmp_path):
    path = write_config(BASE_CONFIG + "templates: our-templates\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    line = BASE_CONFIG.count("\n") + 1
    assert str(e.value) == (f"{path}:{line}: templates: templates folder "
                            f"{tmp_path / 'our-templates'} does not exist")


def test_the_schools_templates_are_watched_for_a_reload(make_config, tmp_path):
    config, folder = with_templates(make_config, tmp_path, {"blockpage.html": "x\n"})
    (folder / "email").mkdir()
    (folder / "email" / "alert.txt").write_text("y\n", encoding="utf-8")
    files = watched_files(config)
    assert str(folder / "blockpage.html") in files and str(folder / "email" / "alert.txt") in files


# The page for a site that could not be reached, in the block page's style

def test_an_unreachable_site_gets_a_page_that_says_it_was_not_blocked(config):
    page = BlockPage(config).render_failure(FAILURES["dns"], "nonexistent.invalid",
                                            SUMMER_NOON_UTC, "7KQ2M-9XDPA")
    body = page.body.decode("utf-8")

    assert page.status == 502
    assert page.headers == {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "X-Schoolgate-Reference": "7KQ2M-9XDPA",
    }
    assert "<title>This site could not be reached – Test Academy</title>" in body
    assert ("The school&#x27;s web filter has not blocked this page: the site could not be "
            "reached.") in body
    assert "<dt>Site</dt><dd>nonexistent.invalid</dd>" in body
    assert "<dt>What happened</dt><dd>the site&#x27;s name was not found</dd>" in body
    assert "<dt>Time</dt><dd>Monday 01 July 2024, 13:00:00 BST</dd>" in body
    assert '<dd class="ref">7KQ2M-9XDPA</dd>' in body
    assert "This is not a block." in body
    # Neither a report form (there is nothing to unblock) nor a group's policy.
    assert "<form" not in body and "Policy" not in body


@pytest.mark.parametrize(("kind", "status", "heading"), [
    # The site at fault: 502, or 504 when it (or the name server) did not answer in time.
    ("refused", 502, "This site could not be reached"),
    ("tls", 502, "This site could not be reached"),
    ("timeout", 504, "This site could not be reached"),
    ("dns_timeout", 504, "This site could not be reached"),
    # The request at fault: nothing was sent.
    ("bad_request", 400, "This request could not be sent"),
    ("too_large", 413, "This request could not be sent"),
    ("loop", 400, "This is the school&#x27;s web filter"),
])
def test_each_failure_has_its_status_and_heading(config, kind, status, heading):
    page = BlockPage(config).render_failure(FAILURES[kind], None, SUMMER_NOON_UTC, "7KQ2M-9XDPA")
    assert page.status == status
    body = page.body.decode("utf-8")
    assert f"<h1>{heading}</h1>" in body
    assert "<dt>Site</dt>" not in body  # no host was known
    assert html.escape(FAILURES[kind].what) in body


def test_a_failure_page_escapes_the_host(config):
    body = BlockPage(config).render_failure(FAILURES["refused"], "<b>x</b>.test", SUMMER_NOON_UTC,
                                            "7KQ2M-9XDPA").body.decode()
    assert "<dd>&lt;b&gt;x&lt;/b&gt;.test</dd>" in body
