"""A sample school for the unit tests: its configuration text, its tiny lists, and two helpers
for editing the text and finding line numbers in it (imported by conftest.py and the tests).

`BASE_CONFIG` mirrors the shape of config/schoolgate.yaml (nested sixth form inside secondary, an
IPv6 staff subnet, a strict default group) with tiny lists, so each test can change one thing and
know exactly what to expect.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "config" / "schoolgate.yaml"

BASE_CONFIG = """\
school:
  name: Test Academy
  timezone: Europe/London
listen:
  host: 127.0.0.1
  port: 8080
metrics:
  host: 127.0.0.1
  port: 0
data_dir: data
events:
  queue_size: 1000
  batch_size: 10
  flush_interval: 0.05
categories:
  gambling:
    title: Gambling
    lists: [lists/gambling]
  social_networks:
    title: Social media
    lists: [lists/social_networks]
  education:
    title: Education
    lists: [lists/education]
groups:
  primary:
    title: Primary pupils
    subnets: [10.10.0.0/16]
    blocked_categories: [gambling, social_networks]
  secondary:
    title: Secondary pupils
    subnets: [10.20.0.0/16]
    blocked_categories: [gambling, social_networks]
  sixth_form:
    title: Sixth form
    subnets: [10.20.50.0/24]
    blocked_categories: [gambling]
  staff:
    title: Staff
    subnets: [10.30.0.0/16, "fd00:30::/32"]
    blocked_categories: []
  guest:
    title: Guest Wi-Fi
    subnets: [172.16.0.0/16]
    blocked_categories: [gambling, social_networks]
default_group: guest
"""

BASE_LISTS = {
    "gambling": "bet365.com\nwilliamhill.com\n",
    "social_networks": "facebook.com\ntiktok.com\n",
    "education": "bbc.co.uk\n",
}


def replace_once(text: str, old: str, new: str) -> str:
    """`text` with the one occurrence of `old` replaced; fails loudly if a test's edit misses, so
    a typo in a test can never leave the configuration valid by accident."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, fragment: str) -> int:
    """1-based number of the only line of `text` containing `fragment`."""
    found = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    assert len(found) == 1, f"{fragment!r} is on lines {found}"
    return found[0]
