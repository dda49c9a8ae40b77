"""Group policies beyond blocked categories: schedules (exact boundaries with an injected clock),
walled gardens, circumvention tools, and the config keys that set them."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from sample_school import BASE_CONFIG, BASE_LISTS, line_of, replace_once
from schoolgate.config.model import ConfigError
from schoolgate.identify import Identity
from schoolgate.policy import ALLOW, BLOCK, Policy
from schoolgate.sources.lists import build_classifier

LISTS = dict(BASE_LISTS, games="roblox.com\n", vpn="nordvpn.com\n")
CATEGORIES = """\
  games:
    title: Games
    lists: [lists/games]
  vpn:
    title: VPNs and proxies
    lists: [lists/vpn]
groups:
"""
SCHEDULES = """\
schedules:
  school_day:
    title: the school day
    windows: ["Mon-Fri 08:30-15:30"]
  working_hours:
    title: working hours
    windows: ["Mon-Fri 08:00-16:00"]
default_group: guest
"""
PRIMARY = """\
    blocked_categories: [gambling, social_networks]
    walled_garden: true
    allowed_categories: [education]
    allow:
      - {target: scratch.mit.edu, reason: Computing lessons}
"""
SECONDARY = """\
    blocked_categories: [gambling, social_networks]
    blocked_during:
      school_day: [games]
"""
STAFF = """\
    blocked_categories: []
    blocked_during:
      working_hours: [social_networks]
    circumvention: log
"""


def _text() -> str:
    t = replace_once(BASE_CONFIG, "groups:\n", CATEGORIES)
    t = replace_once(t, "default_group: guest\n", SCHEDULES)
    primary, secondary = t.split("  secondary:\n", 1)
    primary = replace_once(primary, "    blocked_categories: [gambling, social_networks]\n", PRIMARY)
    # The first such line after "secondary:" is secondary's own (guest has the same one later).
    secondary = secondary.replace("    blocked_categories: [gambling, social_networks]\n",
                                  SECONDARY, 1)
    t = primary + "  secondary:\n" + secondary
    return replace_once(t, "    blocked_categories: []\n", STAFF)


LONDON = ZoneInfo("Europe/London")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


@pytest.fixture
def school(make_config):
    config = make_config(_text(), LISTS)
    now = [at("2026-11-23 10:00:00")]  # a Monday, mid-morning
    policy = Policy(config, clock=lambda: now[0])
    classifier = build_classifier(config)

    def decide(group: str, url: str, when: str | None = None):
        if when is not None:
            now[0] = at(when)
        return policy.decide(Identity("10.0.0.1", group, "subnet"), classifier.classify(url))

    return decide


@pytest.mark.parametrize(
    ("when", "action"),
    [
        # Games are blocked for secondary pupils from 08:30:00 to 15:29:59 on weekdays.
        ("2026-11-23 08:29:59", ALLOW),
        ("2026-11-23 08:30:00", BLOCK),
        ("2026-11-23 15:29:59", BLOCK),
        ("2026-11-23 15:30:00", ALLOW),
        ("2026-11-28 10:00:00", ALLOW),  # Saturday
    ],
)
def test_schedule_switches_exactly_at_its_boundary(school, when, action):
    v = school("secondary", "https://www.roblox.com/games", when)
    assert v.action == action
    if action == BLOCK:
        assert (v.rule, v.schedule, v.category) == (
            "group secondary blocks games during the school day", "school_day", "games")


def test_staff_social_media_after_16_00(school):
    assert school("staff", "https://www.tiktok.com/", "2026-11-23 15:59:59").action == BLOCK
    assert school("staff", "https://www.tiktok.com/", "2026-11-23 16:00:00").action == ALLOW


def test_blocked_categories_reports_the_scheduled_ones(make_config):
    config = make_config(_text(), LISTS)
    policy = Policy(config)
    assert policy.blocked_categories("secondary", at("2026-11-23 09:00:00")) == {
        "gambling", "social_networks", "games"}
    assert policy.blocked_categories("secondary", at("2026-11-23 18:00:00")) == {
        "gambling", "social_networks"}


@pytest.mark.parametrize(
    ("url", "action", "reason"),
    [
        # Only education and the group's allow list are open in the walled garden.
        ("https://www.bbc.co.uk/bitesize", ALLOW, "no-block"),
        ("https://scratch.mit.edu/projects", ALLOW, "override"),
        ("https://unlisted.example/", BLOCK, "walled-garden"),
        ("https://www.roblox.com/", BLOCK, "walled-garden"),
        # A blocked category names itself, not the garden.
        ("https://www.bet365.com/", BLOCK, "category"),
    ],
)
def test_walled_garden(school, url, action, reason):
    v = school("primary", url)
    assert (v.action, v.reason) == (action, reason)
    if reason == "walled-garden":
        assert v.rule == "group primary is a walled garden: only education is open"


def test_circumvention_tools_are_blocked_and_themed(school):
    v = school("secondary", "https://nordvpn.com/download")
    assert (v.action, v.theme, v.category, v.reason) == (BLOCK, "circumvention", "vpn", "circumvention")
    assert v.rule == "group secondary blocks circumvention tools (vpn)"
    # Staff are logged, not blocked: the event still carries the theme for the DSL.
    v = school("staff", "https://nordvpn.com/download")
    assert (v.action, v.theme) == (ALLOW, "circumvention")
    # Ordinary pages carry no theme.
    assert school("staff", "https://www.bbc.co.uk/").theme is None


def test_group_settings_are_read(make_config):
    text = replace_once(_text(), "    circumvention: log\n", """\
    circumvention: log
    safe_search: moderate
    youtube: "off"
    keyword_threshold: 25
    https: sni-only
    no_sni: log
""")
    staff = make_config(text, LISTS).groups["staff"]
    assert (staff.safe_search, staff.youtube, staff.keyword_threshold, staff.https,
            staff.no_sni, staff.circumvention) == ("moderate", "off", 25.0, "sni-only", "log", "log")
    guest = make_config(text, LISTS).groups["guest"]
    # The defaults are the safe ones.
    assert (guest.safe_search, guest.youtube, guest.https, guest.no_sni, guest.circumvention) == (
        "strict", "strict", "decrypt", "block", "block")


@pytest.mark.parametrize(
    ("old", "new", "fragment", "message"),
    [
        ("      school_day: [games]\n", "      lunch: [games]\n", "lunch: [games]",
         "groups.secondary.blocked_during.lunch: unknown schedule 'lunch' (defined: school_day, "
         "working_hours)"),
        ("      school_day: [games]\n", "      school_day: [gamez]\n", "school_day: [gamez]",
         "groups.secondary.blocked_during.school_day[0]: unknown category 'gamez'"),
        ('    windows: ["Mon-Fri 08:30-15:30"]\n', '    windows: ["Mon-Fri 8.30-15.30"]\n',
         "8.30-15.30", "schedules.school_day.windows[0]: '8.30' is not a time of day"),
        ("    circumvention: log\n", "    circumvention: allow\n", "circumvention: allow",
         "groups.staff.circumvention: must be one of block, log, not 'allow'"),
        ("    walled_garden: true\n", "    walled_garden: yes please\n", "walled_garden: yes",
         "groups.primary.walled_garden: must be true or false"),
    ],
)
def test_bad_policy_keys_name_file_line_and_key(write_config, old, new, fragment, message):
    text = replace_once(_text(), old, new)
    path = write_config(text, LISTS)
    with pytest.raises(ConfigError) as e:
        from schoolgate.config.loader import load_config
        load_config(path)
    assert e.value.problems[0].startswith(f"{path}:{line_of(text, fragment)}: {message}")


def test_allowed_categories_without_a_walled_garden_is_refused(write_config):
    text = replace_once(_text(), "    walled_garden: true\n", "")
    path = write_config(text, LISTS)
    with pytest.raises(ConfigError, match="only means something with walled_garden: true"):
        from schoolgate.config.loader import load_config
        load_config(path)
