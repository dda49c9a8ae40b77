"""Counts with their unit: the one helper reports, alerts, the check and the commands use, so
none says "1 people" or "alert(s)"."""

from __future__ import annotations

import pytest

from schoolgate.wording import counted, plural


@pytest.mark.parametrize(
    ("count", "one", "text"),
    [
        # Exactly one is singular; zero and more are plural.
        (1, "person", "1 person"),
        (0, "person", "0 people"),
        (2, "person", "2 people"),
        (2, "different person", "2 different people"),
        # The last word changes, by the usual rules.
        (1, "flagged search", "1 flagged search"),
        (3, "flagged search", "3 flagged searches"),
        (2, "illegal-list hit", "2 illegal-list hits"),
        (2, "entry", "2 entries"),
        (2, "day", "2 days"),
        (2, "process", "2 processes"),
        (2, "box", "2 boxes"),
        # Thousands are grouped.
        (1500, "event", "1,500 events"),
    ],
)
def test_a_count_says_its_unit(count, one, text):
    assert counted(count, one) == text


def test_a_plural_no_rule_makes_can_be_given():
    assert counted(2, "criterion", "criteria") == "2 criteria"
    assert counted(1, "criterion", "criteria") == "1 criterion"
    assert plural("Person") == "People"
