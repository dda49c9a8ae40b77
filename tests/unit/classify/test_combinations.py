"""Combination rules (one word of every group within a window of words, in any order), word
classes and generated misspellings: the parts of the one phrase engine that no single phrase
can do. Loaded from real files through `load_library`, as the gateway loads them, and matched
through the classifier the gateway and `schoolgate why` use."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from schoolgate.classify import Classifier
from schoolgate.classify.library import KeywordLibrary
from schoolgate.classify.variants import variants
from schoolgate.sources.keywords import load_library

CLASSES = """\
classes:
  child_age:
    numbers: 10-17
    words: [ten, eleven, twelve, thirteen, fourteen, fifteen]
    forms: ["{n}", "{n}yo", "{n} years old", "{n} year old"]
  adult_age:
    numbers: 19-70
    forms: ["{n}", "{n}yo", "{n} years old"]
  school_year:
    words: [year 7, year 8, year 9, y7, y8, y9]
"""

GROOMING = """\
theme: cse_grooming
title: Grooming
severity: high
phrases:
  - being groomed
combinations:
  - rule: an adult partner and a child's age
    all:
      - [boyfriend, girlfriend, bf, gf]
      - "@adult_age"
      - ["@child_age", "@school_year"]
    within: 10
  - rule: selling pictures, young
    all: [[sell pics, sell pictures, sell nudes], ["@child_age", how old]]
    within: 10
    severity: medium
"""

SELF_HARM = """\
theme: suicide_selfharm
title: Self-harm
severity: high
variants: true
phrases:
  - suicide
  - {phrase: anorexia, variants: false}
combinations:
  - rule: hurting without leaving marks
    all: [[hurt, cut, burn, hit], [without leaving marks, no marks, so nobody sees]]
    within: 8
"""

CONTEXTS = """\
contexts:
  - {context: nspcc, themes: [cse_grooming]}
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> KeywordLibrary:
    folder = tmp_path_factory.mktemp("keywords")
    for name, text in {"classes.yaml": CLASSES, "cse_grooming.yaml": GROOMING,
                       "suicide_selfharm.yaml": SELF_HARM, "contexts.yaml": CONTEXTS}.items():
        (folder / name).write_text(text, encoding="utf-8")
    lib = load_library(folder)
    assert [str(p) for p in lib.problems] == []
    return lib


def flagged(library: KeywordLibrary, text: str) -> list[tuple[str, str, bool]]:
    return [(f.rule, f.theme, f.combination) for f in library.match(text)]


@pytest.mark.parametrize(("text", "rule"), [
    ("my boyfriend is 24 and im 13", "an adult partner and a child's age"),
    ("is it ok if my bf is 13 and im 24", "an adult partner and a child's age"),
    ("im 13 my boyfriend is 24", "an adult partner and a child's age"),
    ("my girlfriend is 19 and i am in year 8", "an adult partner and a child's age"),
    ("my bf is twenty five... no 25yo and im fourteen", "an adult partner and a child's age"),
    ("b0yfr1end 24 me 13", "an adult partner and a child's age"),  # leetspeak in a member
    ("how old do you have to be to sell pics", "selling pictures, young"),
    ("can i sell pictures at 14", "selling pictures, young"),
    ("how to hurt someone without leaving marks", "hurting without leaving marks"),
    ("how to cut so nobody sees", "hurting without leaving marks"),
])
def test_a_combination_flags_what_no_phrase_does(library, text, rule):
    found = flagged(library, text)
    assert (rule in [r for r, _, combo in found if combo]), found
    # None of its words is a phrase: without the rule, nothing would be flagged.
    assert [r for r, _, combo in found if not combo] == []


@pytest.mark.parametrize("text", [
    "my boyfriend is 24",  # an adult's age alone
    "my boyfriend is 13 and so am i",  # no adult's age
    "my boyfriend is 24 and my sister, who is away at university this year, is 13 now",  # apart
    "year 8 maths 24 times table",  # no partner word
    "how to cut an onion",  # a harm verb, no concealment
    "how old do you have to be to sell on ebay",
    "sell pictures of my paintings online",  # no age
])
def test_a_combination_needs_every_group_within_its_window(library, text):
    assert [r for r, _, combo in flagged(library, text) if combo] == [], text


def test_one_word_cannot_stand_for_two_groups(tmp_path):
    (tmp_path / "t.yaml").write_text(textwrap.dedent("""\
        theme: hate
        title: Hate
        severity: medium
        combinations:
          - rule: overlap
            all: [[jokes about], [jokes, about them]]
    """), encoding="utf-8")
    lib = load_library(tmp_path)
    assert flagged(lib, "jokes about") == []
    assert flagged(lib, "jokes about them jokes") == [("overlap", "hate", True)]


def test_a_combination_flag_says_which_rule_and_what_matched(library):
    (flag,) = library.match("my boyfriend is 24 and im 13")
    assert (flag.rule, flag.phrase, flag.combination) == (
        "an adult partner and a child's age", "an adult partner and a child's age", True)
    assert flag.text == "boyfriend is 24 and im 13"
    assert (flag.theme, flag.severity) == ("cse_grooming", "high")
    assert flag.source.endswith("cse_grooming.yaml:7")  # the rule's line


def test_a_theme_context_suppresses_a_combination_and_says_why(library):
    findings = library.explain("nspcc my boyfriend is 24 and im 13")
    assert findings.flags == ()
    (s,) = findings.suppressed
    assert (s.flag.rule, s.kind, s.by) == ("an adult partner and a child's age", "context",
                                           "nspcc")


def test_the_classifier_flags_combinations_in_searches_and_addresses(library):
    c = Classifier(library=library)
    search = c.classify("https://www.google.com/search?q=my+boyfriend+is+24+and+im+13")
    assert [f.rule for f in search.flags] == ["an adult partner and a child's age"]
    page = c.classify("https://forum.example/t/my-boyfriend-is-24-and-im-13")
    assert [f.rule for f in page.flags] == ["an adult partner and a child's age"]
    # Members are not phrases: the address's own keyword matches do not list them.
    assert page.keywords == ()


def test_misspellings_are_made_at_load_time_and_flag_as_their_phrase(library):
    for typed in ("sucide", "suicdie", "suicides"):
        (flag,) = library.match(f"how to {typed}")
        assert (flag.rule, flag.text) == ("suicide", typed)
    # variants: false on the phrase
    assert library.match("anorxia tips") == []
    assert library.match("anorexia tips")[0].rule == "anorexia"
    # A misspelling and the phrase in one text are one phrase for the score.
    assert {f.phrase for f in library.match("suicide sucide")} == {"suicide"}
    # Generated forms are not counted as entries of the library.
    assert library.summary().by_theme["suicide_selfharm"] == 2


def test_the_variant_generator():
    assert "sucide" in variants("suicide") and "suicdie" in variants("suicide")
    assert "suicide" not in variants("suicide")
    # No edit in short words (too many real neighbours), no first-letter edits.
    assert not any(v.startswith("tarve") for v in variants("starve"))
    assert variants("starve") == {"starves", "starved", "starving"}
    assert variants("kill myself") == set()  # endings only for one word; both words short
    assert variants("مرحبا") == set()  # other scripts are listed by hand


@pytest.mark.parametrize(("files", "problem"), [
    ({"t.yaml": "theme: hate\ntitle: H\nseverity: low\ncombinations:\n"
                "  - {rule: r, all: [[a b], \"@nope\"]}\n"},
     "t.yaml:5: combinations[0].all[1]: no word class 'nope' (classes: none are defined); "
     "combination 'r' skipped"),
    ({"t.yaml": "theme: hate\ntitle: H\nseverity: low\ncombinations:\n"
                "  - {rule: r, all: [[a b]]}\n"},
     "t.yaml:5: combinations[0].all: needs at least two groups of words (one alone is a "
     "phrase); combination 'r' skipped"),
    ({"t.yaml": "theme: hate\ntitle: H\nseverity: low\ncombinations:\n"
                "  - {rule: r, all: [x, y], within: 1}\n"},
     "t.yaml:5: combinations[0].within: must be a whole number of words from 2 (the groups) "
     "to 50; combination 'r' skipped"),
    ({"t.yaml": "theme: hate\ntitle: H\nseverity: low\ncombinations:\n"
                "  - {rule: r, all: [x, y], withn: 3}\n"},
     "t.yaml:5: combinations[0].withn: unknown key (allowed: rule, all, within, severity, "
     "weight, language, exclude, ignore_contexts, variants); did you mean 'within'?; "
     "combination "
     "skipped"),
    ({"c.yaml": "classes:\n  age:\n    numbers: 17-10\n"},
     "c.yaml:3: classes.age.numbers: must run upwards and hold at most 200 numbers; class "
     "'age' skipped"),
    ({"c.yaml": "classes:\n  age:\n    numbers: 1-5\n    forms: [\"{n}\", yo]\n"},
     "c.yaml:4: classes.age.forms: every form holds {n}, where the number or word goes (such "
     "as '{n} years old'); class 'age' skipped"),
])
def test_a_broken_rule_or_class_names_its_file_and_line_and_the_rest_loads(
        tmp_path, files, problem):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "ok.yaml").write_text("theme: drugs\ntitle: D\nseverity: low\n"
                                      "phrases: [buy weed]\n", encoding="utf-8")
    lib = load_library(tmp_path)
    assert [str(p).removeprefix(f"{tmp_path}/") for p in lib.problems] == [problem]
    assert [p.text for p in lib.phrases] == ["buy weed"]


def test_the_shipped_library_still_loads_clean():
    lib = load_library(Path(__file__).resolve().parents[3] / "keywords")
    assert [str(p) for p in lib.problems] == []
