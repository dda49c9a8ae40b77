"""The labelled search set's shape (tests/data/labelled_searches.tsv, described in
tests/data/README.md): enough rows of every theme and language, valid columns, and a
tune/holdout split that follows the documented rule. Recall floors belong to the rules, later."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import pytest

from sample_school import REPO
from schoolgate.events import THEMES

TABLE = REPO / "tests" / "data" / "labelled_searches.tsv"
README = REPO / "tests" / "data" / "README.md"
COLUMNS = ["id", "half", "language", "search", "theme", "min_severity", "trick", "note"]
LANGUAGES = {"en", "pl", "ro", "ur", "ur-Latn", "ar", "es", "so", "bn", "pt"}
TRICKS = {"plain", "combination", "misspelling", "leetspeak", "no-spaces", "slang", "negation",
          "diacritics", "script", "numerals", "homonym", "context"}


@pytest.fixture(scope="module")
def lines():
    return TABLE.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def rows(lines):
    return [dict(zip(COLUMNS, line.split("\t"), strict=True)) for line in lines[1:]]


def test_header_and_columns(lines):
    assert lines[0].split("\t") == COLUMNS
    for number, line in enumerate(lines[1:], start=2):
        assert line.count("\t") == len(COLUMNS) - 1, f"line {number}: {line!r}"


def test_enough_rows_with_unique_ascending_ids(rows):
    assert len(rows) >= 400
    ids = [r["id"] for r in rows]
    assert all(re.fullmatch(r"s\d{4}", i) for i in ids), [i for i in ids if not re.fullmatch(r"s\d{4}", i)]
    # Ascending: new rows go at the end with the next number, so an id is never reused.
    assert ids == sorted(set(ids))


def test_searches_are_distinct_and_trimmed(rows):
    searches = Counter(r["search"].casefold() for r in rows)
    assert [s for s, n in searches.items() if n > 1] == []
    for r in rows:
        assert r["search"] and r["search"] == r["search"].strip(), r["id"]
        assert r["note"].strip(), r["id"]


def test_values_are_valid(rows):
    for r in rows:
        assert r["half"] in ("tune", "holdout"), r
        assert r["language"] in LANGUAGES, r
        assert r["theme"] in (*THEMES, "none"), r
        assert r["trick"] in TRICKS, r
        if r["theme"] == "none":
            assert r["min_severity"] == "", r
        else:
            assert r["min_severity"] in ("high", "medium"), r


def test_every_trick_is_documented():
    text = README.read_text(encoding="utf-8")
    assert [t for t in sorted(TRICKS) if f"`{t}`" not in text] == []


def test_themes_and_balance(rows):
    concerning = Counter(r["theme"] for r in rows if r["theme"] != "none")
    assert {t: concerning[t] for t in THEMES if concerning[t] < 15} == {}
    # Roughly 60 % concerning, 40 % look-alikes: neither side may shrink to a token few.
    benign = sum(r["theme"] == "none" for r in rows)
    assert 0.3 <= benign / len(rows) <= 0.5


def test_high_severity_themes_ask_for_high(rows):
    # A suicide, grooming or extremism row at medium is possible (passive ideation), but rare.
    for theme in ("suicide_selfharm", "cse_grooming", "extremism_radicalisation"):
        marks = Counter(r["min_severity"] for r in rows if r["theme"] == theme)
        assert marks["high"] >= 0.9 * sum(marks.values()), (theme, marks)
    for theme in ("adult", "circumvention"):
        assert {r["min_severity"] for r in rows if r["theme"] == theme} == {"medium"}


def test_every_language_has_concerning_and_benign_rows(rows):
    kinds = Counter((r["language"], r["theme"] == "none") for r in rows)
    for language in LANGUAGES:
        assert kinds[(language, False)] > 0, f"{language}: no concerning row"
        assert kinds[(language, True)] > 0, f"{language}: no look-alike"
        if language != "en":
            assert kinds[(language, False)] + kinds[(language, True)] >= 12, language
    # Urdu in both scripts: Arabic letters for ur, Latin letters for ur-Latn.
    for r in rows:
        if r["language"] == "ur":
            assert re.search(r"[\u0600-\u06ff]", r["search"]), r
        elif r["language"] == "ur-Latn":
            assert re.fullmatch(r"[\x20-\x7e]+", r["search"]), r


def test_half_follows_the_documented_rule(rows):
    rule = "int(hashlib.sha256(id.encode()).hexdigest(), 16) % 2 == 0"
    assert rule in README.read_text(encoding="utf-8")
    wrong = [r["id"] for r in rows
             if (int(hashlib.sha256(r["id"].encode()).hexdigest(), 16) % 2 == 0)
             != (r["half"] == "tune")]
    assert wrong == []


def test_both_halves_hold_every_theme_and_language(rows):
    for half in ("tune", "holdout"):
        part = [r for r in rows if r["half"] == half]
        assert {r["theme"] for r in part} == {*THEMES, "none"}, half
        kinds = {(r["language"], r["theme"] == "none") for r in part}
        assert kinds == {(lang, benign) for lang in LANGUAGES for benign in (False, True)}, half
