"""Keyword matching: the one normaliser (case, Unicode, accents, leetspeak, separators, held-down
letters), URL decoding, and the Aho-Corasick keyword set (whole words and substrings, exclusions,
weights, themes, other scripts), with the obfuscations pupils actually type."""

from __future__ import annotations

import random

import pytest

from schoolgate.classify.keywords import (
    _LONG,
    KeywordMatch,
    KeywordSet,
    Phrase,
    _squeeze_long,
    _squeeze_loop,
    decode_url_text,
    normalise_text,
)

# ---------------------------------------------------------------------------------------------
# The normaliser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Case, full-width and mathematical letters (NFKC, then casefold; ß casefolds to ss).
        ("SUICIDE", "suicide"),
        ("ＳＵＩＣＩＤＥ", "suicide"),
        ("𝐬𝐮𝐢𝐜𝐢𝐝𝐞", "suicide"),
        ("Straße", "strasse"),
        # Accents stripped; letters that do not decompose folded by hand.
        ("sùïcìdé", "suicide"),
        ("samobójstwo", "samobojstwo"),
        ("Łódź", "lodz"),
        ("Søren", "soren"),
        ("Đorđe", "dorde"),
        ("să mă sinucid", "sa ma sinucid"),
        ("suicidarse cómo", "suicidarse como"),
        ("Mañana", "manana"),
        # Arabic script: harakat and hamza marks stripped, tatweel deleted, Persian/Urdu keheh
        # and yeh folded to the Arabic letters; the letters themselves stay.
        ("أَنْتَحِرُ", "انتحر"),
        ("انتـــحار", "انتحار"),
        ("خودکشی", "خودكشي"),
        ("قتل النفس", "قتل النفس"),
        # Other scripts survive, vowel signs and all; Cyrillic й keeps its breve.
        ("हिंदी में", "हिंदी में"),
        ("我想死", "我想死"),
        ("Самоубийство", "самоубийство"),
        # A Cyrillic or Greek look-alike inside a Latin word is read as the Latin letter.
        ("p\u043ern", "porn"),
        ("\u0455uicide", "suicide"),
        ("\u0440\u043e\u0440\u043d\u043e", "\u0440\u043e\u0440\u043d\u043e"),
        # Invisible characters are deleted, not turned into separators.
        ("sui\u200bcide", "suicide"),
        ("self\u00adharm", "selfharm"),
        ("su\u200di\ufeffcide", "suicide"),
        # Separators: any run of non-word characters is one space; none at the ends.
        ("self-harm", "self harm"),
        ("self_harm", "self harm"),
        ("self.harm", "self harm"),
        ("self+harm", "self harm"),
        ("  self // harm\t\n", "self harm"),
        ("/search?q=kill", "search q kill"),
        ("--__..", ""),
        ("", ""),
        # A word spelt out letter by letter is joined; two letters or plain numbers are not.
        ("s u i c i d e", "suicide"),
        ("s.u.i.c.i.d.e", "suicide"),
        ("kill m y s e l f", "kill myself"),
        ("$ u i c i d e", "suicide"),
        ("a b", "a b"),
        ("1 3 5", "1 3 5"),
        # Leetspeak inside words; one "1" is i, two or more are l; "!" between letters is i.
        ("su1c1de", "suicide"),
        ("$uicide", "suicide"),
        ("h4x0r", "haxor"),
        ("@ss", "ass"),
        ("k1ll", "kill"),
        ("ki11", "kill"),
        ("p1lls", "pills"),
        ("5h007", "shoot"),
        ("b00bs", "boobs"),
        ("su!c!de", "suicide"),
        # Numbers stay numbers: no letter in the word, or a digit that is not leetspeak.
        ("top 10", "top 10"),
        ("2024", "2024"),
        ("call 911", "call 911"),
        ("year 7", "year 7"),
        ("h264", "h264"),
        ("covid19", "covid19"),
        ("$100", "100"),
        ("hello!", "hello"),
        # A letter held down is cut to three; real double letters stay as written.
        ("suiiiicide", "suiiicide"),
        ("soooooo", "sooo"),
        ("killlll", "killl"),
        ("kill", "kill"),
        ("coffee", "coffee"),
    ],
)
def test_normalise_text(text, expected):
    assert normalise_text(text) == expected
    # Phrases and text meet in the same form however often they are normalised.
    assert normalise_text(expected) == expected


def test_normalise_text_is_idempotent_on_mixed_input():
    # Every step feeds the next (leetspeak makes letters, joining makes words, look-alikes need
    # a Latin neighbour), so check the fixed point on many small jumbles of the tricky parts.
    rng = random.Random(20240517)
    parts = list("aail1!0$@.-_ 4573 29kxś łøÉİß") + [
        "\u043e", "\u03bf", "\u0669", "ا", "\u064e", "\u200b", "हि", "我", "ee", "llll", "ﬀ",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(1, 12)))
        once = normalise_text(text)
        assert normalise_text(once) == once, text
        assert once == once.strip() and "  " not in once, text


# ---------------------------------------------------------------------------------------------
# URL decoding


@pytest.mark.parametrize(
    ("path_and_query", "expected"),
    [
        # "+" is a space in the query, a plus in the path.
        ("/search?q=how+to+k%69ll+myself", "/search?q=how to kill myself"),
        ("/a+b/c?d=e+f", "/a+b/c?d=e f"),
        # Percent-escapes are UTF-8; a bad byte becomes U+FFFD.
        ("/search?q=samob%C3%B3jstwo", "/search?q=samobójstwo"),
        ("/search?q=%D8%A7%D9%86%D8%AA%D8%AD%D8%A7%D8%B1", "/search?q=انتحار"),
        ("/search?q=%FFx", "/search?q=\ufffdx"),
        # Escaped escapes are decoded again: %2569 is %69 is i, and an escaped "+" is a plus.
        ("/k%2569ll", "/kill"),
        ("/x?q=%252B+a", "/x?q=+ a"),
        # ...but at most four times, so no input can keep the decoder busy.
        ("/%252525252569", "/%2569"),
        # Nothing to decode.
        ("/", "/"),
        ("/100%", "/100%"),
    ],
)
def test_decode_url_text(path_and_query, expected):
    assert decode_url_text(path_and_query) == expected


# ---------------------------------------------------------------------------------------------
# Matching against a small library

P = Phrase.of
LIBRARY = KeywordSet(
    [
        P("suicide", theme="suicide_selfharm", severity="high", weight=10),
        P("kill myself", theme="suicide_selfharm", severity="high", weight=10),
        P("self harm", theme="suicide_selfharm", severity="high", weight=8),
        P("samobójstwo", theme="suicide_selfharm", severity="high", weight=10, language="pl"),
        P("انتحار", theme="suicide_selfharm", severity="high", weight=10, language="ar"),
        P("khudkushi", theme="suicide_selfharm", severity="high", weight=10, language="ur"),
        P("kill", theme="weapons_violence", severity="medium", weight=3,
          exclusions=["kill process", "killall"]),
        P("shoot", theme="weapons_violence", severity="low", weight=2, exclusions=["photo"]),
        P("porn", theme="adult", severity="medium", mode="substring", weight=5),
        P("sex", theme="adult", severity="low", mode="substring", weight=1),
        P("ass", theme="adult", severity="low", weight=1),
        P("ana", theme="eating_disorders", severity="medium", weight=4),
        P("weed", theme="drugs", severity="low", weight=2),
        P("我想死", theme="suicide_selfharm", severity="high", mode="substring", weight=10,
          language="zh"),
    ]
)


def found(text: str) -> set[str]:
    return {m.phrase.text for m in LIBRARY.match(text)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Misspellings and obfuscations of one high-severity word.
        ("suicide", {"suicide"}),
        ("SUICIDE", {"suicide"}),
        ("s u i c i d e", {"suicide"}),
        ("s-u-i-c-i-d-e", {"suicide"}),
        ("su1c1de", {"suicide"}),
        ("$uicide", {"suicide"}),
        ("5u1c1d3", {"suicide"}),
        ("suiiiicide", {"suicide"}),
        ("suuuuiiiiciiiideeeee", {"suicide"}),
        ("sùïcìdé", {"suicide"}),
        ("ｓｕｉｃｉｄｅ", {"suicide"}),
        ("sui\u200bcide", {"suicide"}),
        ("how do i commit suicide?", {"suicide"}),
        # Compounds: a phrase of several words also matches with the spaces left out.
        ("self harm", {"self harm"}),
        ("self-harm", {"self harm"}),
        ("selfharm", {"self harm"}),
        ("SELF_HARM tips", {"self harm"}),
        ("#killmyself", {"kill myself"}),
        # Overlapping phrases of different themes are all reported.
        ("i want to kill myself", {"kill myself", "kill"}),
        ("k1ll myse1f", {"kill"}),  # a single 1 reads as i: "myseif" is not "myself"
        ("ki11 myself", {"kill myself", "kill"}),
        # Whole words only in word mode; anywhere in substring mode.
        ("skill", set()),
        ("killer", set()),
        ("kill", {"kill"}),
        ("pornhub", {"porn"}),
        ("p0rnhub", {"porn"}),
        ("essex", {"sex"}),
        ("class pass", set()),
        # A held-down letter matches; a real double letter keeps words apart.
        ("asssss", {"ass"}),
        ("as", set()),
        ("anna", set()),
        ("anaaaa", {"ana"}),
        ("wed", set()),
        ("weeeeed", {"weed"}),
        ("killlll", {"kill"}),
        ("kil", set()),
        # Exclusion contexts suppress a phrase anywhere in the same text, at a word start.
        ("photo shoot", set()),
        ("photoshoot", set()),
        ("photography shoot tomorrow", set()),
        ("shoot", {"shoot"}),
        ("kill process 1234", set()),
        ("how to kill process linux", set()),
        ("killall firefox", set()),
        ("kill the process", {"kill"}),
        # Other scripts and languages, with and without their accents.
        ("samobójstwo", {"samobójstwo"}),
        ("samobojstwo", {"samobójstwo"}),
        ("SAMOBÓJSTWO jak", {"samobójstwo"}),
        ("كيف انتحار", {"انتحار"}),
        ("كيف اِنْتِحَار", {"انتحار"}),
        ("khudkushi kaise karein", {"khudkushi"}),
        ("我想死了", {"我想死"}),
        # Nothing to find.
        ("", set()),
        ("homework help for year 7 maths", set()),
    ],
)
def test_match(text, expected):
    assert found(text) == expected


def test_match_reports_spans_in_the_normalised_text():
    text = "Please, K1LL   MYSELF now"
    norm = normalise_text(text)
    assert norm == "please kill myself now"
    matches = LIBRARY.match(text)
    # Same start: the longer phrase first.
    assert [(m.phrase.text, m.start, m.end, m.text) for m in matches] == [
        ("kill myself", 7, 18, "kill myself"),
        ("kill", 7, 11, "kill"),
    ]
    assert all(norm[m.start : m.end] == m.text for m in matches)


@pytest.mark.parametrize(
    ("text", "phrase", "span", "matched"),
    [
        # A held-down letter is part of the match.
        ("suiiiiiicide", "suicide", (0, 9), "suiiicide"),
        # A substring inside a run of its letter takes only its own letters.
        ("essex", "sex", (2, 5), "sex"),
        # The joined form of a compound.
        ("go selfharm", "self harm", (3, 11), "selfharm"),
    ],
)
def test_match_spans(text, phrase, span, matched):
    (m,) = [m for m in LIBRARY.match(text) if m.phrase.text == phrase]
    assert (m.start, m.end) == span
    assert m.text == matched


def test_match_on_text_already_normalised_gives_the_same_matches():
    for text in ("How to K1LL myself", "photo shoot", "su1c1de", "selfharm", "essex"):
        assert LIBRARY.match(normalise_text(text), normalised=True) == LIBRARY.match(text)


def test_suppressed_matches_are_shown_on_request():
    assert LIBRARY.match("photo shoot") == []
    (m,) = LIBRARY.match("photo shoot", with_suppressed=True)
    assert m.phrase.text == "shoot"
    assert m.suppressed_by == "photo"
    (m,) = LIBRARY.match("shoot")
    assert m.suppressed_by is None


def test_url_search_term_end_to_end():
    matches = LIBRARY.match(decode_url_text("/search?q=how+to+k%69ll+myself&hl=en-GB"))
    assert {(m.phrase.text, m.phrase.theme, m.phrase.severity) for m in matches} == {
        ("kill myself", "suicide_selfharm", "high"),
        ("kill", "weapons_violence", "medium"),
    }


# ---------------------------------------------------------------------------------------------
# Weights and scores


@pytest.mark.parametrize(
    ("text", "score"),
    [
        # One phrase.
        ("suicide", 10.0),
        # Two phrases: kill myself (10) and kill (3).
        ("kill myself", 13.0),
        # A phrase counts once however often it occurs.
        ("kill kill kill", 3.0),
        # Distinct phrases add up: porn (5), sex (1), ass (1).
        ("pornhub sex ass", 7.0),
        # Suppressed matches do not count.
        ("photo shoot", 0.0),
        ("photo shoot and kill", 3.0),
        # Nothing found.
        ("revision timetable", 0.0),
    ],
)
def test_score(text, score):
    assert LIBRARY.score(text) == score


def test_negative_weights_offset_a_score():
    # Content scanning can weigh educational phrases down, as weighted phrase lists do.
    phrases = KeywordSet(
        [
            P("breast", theme="adult", severity="low", weight=4),
            P("breast cancer", theme="adult", severity="low", weight=-4),
        ]
    )
    assert phrases.score("breast") == 4.0
    assert phrases.score("breast cancer awareness") == 0.0


# ---------------------------------------------------------------------------------------------
# Duplicates and the empty set


def test_same_phrase_in_two_themes_is_reported_for_each():
    pills_drugs = P("pills", theme="drugs", severity="medium", weight=2)
    pills_selfharm = P("pills", theme="suicide_selfharm", severity="high", weight=5)
    shoot_violence = P("shoot", theme="weapons_violence", severity="low", exclusions=["photo"])
    shoot_drugs = P("shoot up", theme="drugs", severity="medium")
    shoot_drugs_word = P("shoot", theme="drugs", severity="low", weight=0.5)
    phrases = KeywordSet(
        [pills_drugs, pills_selfharm, shoot_violence, shoot_drugs, shoot_drugs_word]
    )
    matches = phrases.match("how many p1lls")
    assert {(m.phrase.theme, m.phrase.severity) for m in matches} == {
        ("drugs", "medium"),
        ("suicide_selfharm", "high"),
    }
    assert phrases.score("how many pills") == 7.0
    # An exclusion belongs to its own phrase: the other theme's "shoot" still matches.
    assert [m.phrase for m in phrases.match("photo shoot")] == [shoot_drugs_word]


def test_exactly_equal_phrases_are_kept_once():
    kill = P("kill", theme="weapons_violence", severity="medium", weight=3)
    phrases = KeywordSet([kill, P("kill", theme="weapons_violence", severity="medium", weight=3)])
    assert len(phrases) == 1
    assert phrases.phrases == (kill,)
    assert phrases.match("kill") == [KeywordMatch(kill, 0, 4, "kill")]
    assert phrases.score("kill") == 3.0


def test_empty_set_matches_nothing():
    empty = KeywordSet([])
    assert len(empty) == 0
    assert empty.match("suicide") == []
    assert empty.match("") == []
    assert empty.score("kill myself") == 0.0


# ---------------------------------------------------------------------------------------------
# Phrases


def test_phrase_of_normalises_text_and_exclusions():
    p = P("Shoot", theme="weapons_violence", severity="low", exclusions=["PHOTO", "Photo", "!!"])
    assert p.normalised == "shoot"
    # Duplicates after normalising are kept once; contexts with nothing left are dropped.
    assert p.exclusions == ("photo",)
    assert p.mode == "word"
    assert p.weight == 1.0 and isinstance(p.weight, float)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # Nothing left to match.
        ({"text": "!!!"}, "has no letters or digits once normalised"),
        # A normalised form that normalise_text would not give.
        ({"normalised": "kil"}, "build phrases with Phrase.of"),
        # Exclusions must already be normalised.
        ({"exclusions": ("Photo",)}, "exclusion 'Photo' is not normalised"),
        ({"exclusions": ["photo"]}, "exclusions must be a tuple"),
        # Fields with a fixed set of values.
        ({"severity": "urgent"}, "severity must be one of high, medium, low"),
        ({"mode": "regex"}, "mode must be one of word, substring"),
        ({"theme": ""}, "has no theme"),
        # Weights are finite numbers.
        ({"weight": float("nan")}, "weight must be a finite number"),
        ({"weight": "3"}, "weight must be a number"),
    ],
)
def test_phrase_rejects_bad_fields(kwargs, message):
    fields = {
        "text": "kill",
        "normalised": "kill",
        "weight": 1.0,
        "theme": "weapons_violence",
        "severity": "medium",
    }
    fields.update(kwargs)
    if fields["text"] == "!!!":
        fields["normalised"] = ""
    with pytest.raises(ValueError, match=message):
        Phrase(**fields)


def test_every_phrase_matches_its_own_text():
    # Whatever a library writes, the phrase must find itself, alone and among other words.
    rng = random.Random(7)
    parts = list("aeiklmnosu1 0$@-_ś") + ["ee", "llll", "ا", "हि"]
    for _ in range(1000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(2, 10)))
        if not normalise_text(text):
            continue
        phrase = P(text, theme="t", severity="low", mode=rng.choice(["word", "substring"]))
        phrases = KeywordSet([phrase])
        for context in (text, f"hello {text} world", f"hello-{text}.world"):
            assert {m.phrase for m in phrases.match(context)} == {phrase}, (text, context)


# ---------------------------------------------------------------------------------------------
# A library the size of a real one


def synthetic_library(size: int = 5000, seed: int = 5) -> list[Phrase]:
    """Made-up phrases of one to three made-up words, 10 % in substring mode, 5 % with an
    exclusion. Letters are drawn without "q", "x" and "z", which the planted phrases use."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnoprstuvwy"
    themes = ("suicide_selfharm", "drugs", "adult", "hate", "bullying", "weapons_violence")
    seen: set[str] = set()
    phrases: list[Phrase] = []
    while len(phrases) < size:
        words = (
            "".join(rng.choice(letters) for _ in range(rng.randint(4, 9)))
            for _ in range(rng.choice((1, 1, 2, 2, 3)))
        )
        text = " ".join(words)
        if text in seen:
            continue
        seen.add(text)
        phrases.append(
            P(
                text,
                theme=rng.choice(themes),
                severity=rng.choice(("high", "medium", "low")),
                weight=rng.randint(1, 10),
                mode="substring" if rng.random() < 0.1 else "word",
                exclusions=["photo"] if rng.random() < 0.05 else [],
            )
        )
    return phrases


@pytest.fixture(scope="module")
def large_set() -> KeywordSet:
    planted = [
        P("qzx kill myself", theme="suicide_selfharm", severity="high", weight=10),
        P("zqxporn", theme="adult", severity="medium", mode="substring", weight=5),
    ]
    return KeywordSet(synthetic_library() + planted)


URLS = [
    "/search?q=how+to+make+a+chocolate+cake&rlz=1C1GCEU_enGB1000GB1000&oq=how+to+make&ie=UTF-8",
    "/watch?v=dQw4w9WgXcQ&list=PLFgquLnL59alCl_2TQvOiD5Vgm1hCaGSI&index=2&t=43s&ab_channel=Rick",
    "/wiki/Battle_of_Hastings_(1066)_and_the_Norman_conquest_of_England_in_the_eleventh_century",
    "/search?q=qzx+k%69ll+myself&source=hp&ei=abc123XYZ&iflsig=AO6bgOgAAAAAZ&oq=how+to+kill",
    "/en-gb/news/articles/2024/05/17/school-trip-to-the-science-museum-a-great-success-for-year-7",
]


def test_large_set_finds_planted_phrases(large_set):
    assert len(large_set) == 5002
    found_in = {m.phrase.text for m in large_set.match(decode_url_text(URLS[3]))}
    assert "qzx kill myself" in found_in
    found_in = {m.phrase.text for m in large_set.match("/videos/ZQXP0RNtube")}
    assert "zqxporn" in found_in


# ---------------------------------------------------------------------------------------------
# In the classifier: keyword sets run over each URL's decoded path and query


def test_classifier_runs_keyword_sets_over_the_decoded_url_and_handed_text():
    from schoolgate.classify import Classifier
    from schoolgate.classify.library import KeywordLibrary

    phrases = [P("kill myself", theme="suicide_selfharm", severity="high", weight=10),
               P("porn", theme="adult", severity="medium", mode="substring")]
    c = Classifier(library=KeywordLibrary((p, "test", {}) for p in phrases))
    found = c.classify("https://www.google.com/search?q=how+to+k%31ll+mys3lf&oq=x").keywords
    assert [(m.phrase.text, m.phrase.theme) for m in found] == [("kill myself", "suicide_selfharm")]
    assert [m.phrase.theme for m in c.classify("http://x.test/free-PORNvideos").keywords] == ["adult"]
    assert c.classify("https://www.google.com/").keywords == ()
    assert [m.phrase.text for m in c.library.keyword_set.match("I want to kill   myself")] == [
        "kill myself"]



@pytest.mark.parametrize("seed", range(4))
def test_long_ascii_text_is_squeezed_as_the_loop_squeezes_it(seed):
    """Pages take numpy's road through `_squeeze` (ASCII from `_LONG` characters on); it must
    give what the loop that search terms take gives, on runs of every length, at both ends,
    back to back, and with no run at all."""
    rng = random.Random(seed)
    alphabet = "aabeelloss tz09"
    texts = ["", "a", "aa", "aaaa", "abc", "a" * 3000, "ab" * 1500]
    for _ in range(100):
        texts.append("".join(rng.choice(alphabet) * rng.choice((1, 1, 2, 3, 4, 7))
                             for _ in range(rng.randint(1, 1200))))
    for text in texts:
        assert _squeeze_long(text) == _squeeze_loop(text), text[:60]
    assert any(len(t) >= _LONG for t in texts)
