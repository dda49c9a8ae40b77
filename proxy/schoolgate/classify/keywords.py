"""Keyword libraries: one normaliser for phrases and for what people type, and one Aho-Corasick
automaton per keyword set, run over decoded URLs, search terms and page text.

Pure code: no mitmproxy or store import. A `KeywordSet` is built once and never changes; a reload
builds a new one and swaps it whole.
"""

from __future__ import annotations

import math
import re
import unicodedata
from bisect import bisect_left
from collections.abc import Container, Iterable
from dataclasses import dataclass
from itertools import accumulate, chain
from typing import Literal, NamedTuple
from urllib.parse import unquote

import ahocorasick
import numpy as np

__all__ = [
    "MODES",
    "SEVERITIES",
    "KeywordMatch",
    "KeywordSet",
    "Member",
    "MemberHit",
    "MemberHits",
    "Phrase",
    "Scan",
    "decode_url_text",
    "normalise_text",
]

Severity = Literal["high", "medium", "low"]
Mode = Literal["word", "substring"]
SEVERITIES: tuple[str, ...] = ("high", "medium", "low")
MODES: tuple[str, ...] = ("word", "substring")

# ---------------------------------------------------------------------------------------------
# The normaliser. Its tables are built once, at import (about 30 ms).

# Diacritics on Latin, Greek and Cyrillic letters, Hebrew points and Arabic harakat are optional in
# writing, so they are stripped. The vowel signs of Indic and other scripts are part of the letter:
# stripping them would turn different words into one, so they stay, inside their word.
_STRIPPED_MARKS = (
    (0x0300, 0x036F),  # combining diacritical marks
    (0x0483, 0x0489),  # Cyrillic
    (0x0591, 0x05C7),  # Hebrew points and accents
    (0x0610, 0x061A),  # Arabic honorifics
    (0x064B, 0x065F),  # Arabic harakat, hamza above and below
    (0x0670, 0x0670),  # Arabic superscript alef
    (0x06D6, 0x06ED),  # Quranic annotation
    (0x08D3, 0x08FF),  # Arabic extended-A
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),  # combining marks for symbols
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFE20, 0xFE2F),  # combining half marks
    (0xE0100, 0xE01EF),  # variation selectors supplement
)

# Letters that NFD does not decompose but that people read, and type, as a plain Latin letter.
_LETTER_FOLDS = {
    "ł": "l", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "æ": "ae", "œ": "oe", "ı": "i", "ħ": "h",
    "ŧ": "t", "ƀ": "b", "ƶ": "z", "ɨ": "i", "ŋ": "n", "ĸ": "k",
    # Arabic script: tatweel only stretches a word; Persian and Urdu keyboards type yeh and kaf
    # as other code points than Arabic keyboards do; teh marbuta and Urdu heh are often typed as
    # heh. (Alef with hamza or madda needs nothing here: NFD splits off the hamza, a harakah.)
    "\u0640": "", "\u0649": "\u064a", "\u06cc": "\u064a", "\u06a9": "\u0643", "\u0629": "\u0647",
    "\u06c1": "\u0647",
}


def _fold_table() -> dict[int, str | None]:
    """The `str.translate` table for text that is not ASCII, applied after NFKC, casefold and NFD:
    stripped marks and invisible format characters are deleted, every other character that is
    not part of a word (punctuation, symbols, spaces, controls) becomes a space, and the letter
    folds apply. "@" and "$" stay for leetspeak."""
    table: dict[int, str | None] = {}
    category = unicodedata.category
    for cp in chain(range(0xD800), range(0xE000, 0x20000), range(0xE0000, 0xE0200)):
        cat = category(chr(cp))
        if cat == "Cf":
            # Zero-width space and joiners, soft hyphen, direction marks, tags: deleted, not made
            # separators, so "sui\u200bcide" stays one word.
            table[cp] = None
        elif cat[0] == "M":
            if any(lo <= cp <= hi for lo, hi in _STRIPPED_MARKS):
                table[cp] = None
        elif (cat[0] in "PSZ" or cat == "Cc") and chr(cp) not in "@$":
            table[cp] = " "
        elif cat == "Nd" and cp >= 0x80:
            # Digits of every script are the digits: "আমার ১৩", "۱۳ سال" and "13" are one
            # age to a rule that reads ages.
            table[cp] = str(unicodedata.digit(chr(cp)))
    for letter, plain in _LETTER_FOLDS.items():
        table[ord(letter)] = plain or None
    return table


_FOLD = _fold_table()
_SHORT_I = "\U000f0439"  # a private-use stand-in that NFD leaves alone
# ASCII text takes a faster road: one bytes.translate lowercases it and turns every character
# that is not a letter, a digit, "@" or "$" into a space.
_ASCII_FOLD = bytes(
    (c | 0x20) if 0x41 <= c <= 0x5A else c if chr(c).isalnum() or chr(c) in "@$" else 0x20
    for c in range(128)
) + b" " * 128

# Cyrillic and Greek letters that look like Latin ones. Mapped only inside a word that also holds
# a Latin letter ("pоrn" typed with a Cyrillic о): words wholly in Russian or Greek stay as written.
_HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "һ": "h", "ԛ": "q",
    "ԝ": "w", "ӏ": "l", "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ω": "w",
})
_MIXED_SCRIPT = re.compile(r"[a-z][\u0370-\u04ff]|[\u0370-\u04ff][a-z]")

_LETTER = r"[^\W\d_]"
# "!" reads as i only between two letters ("su!c!de"); anywhere else it is punctuation.
_BANG = re.compile(rf"(?<={_LETTER})!(?={_LETTER})")
_BANG_ASCII = re.compile(r"(?<=[a-zA-Z])!(?=[a-zA-Z])")
# Three or more one-character words in a row are one word spelt out: "s u i c i d e". Matched on
# the text with a space added at each end, so the search can jump from space to space. A real
# one-letter word just before is taken in too ("should i k i l l" gives "should ikill"): telling
# "i" the word from "i" the letter needs a dictionary, so libraries that care list "ikill".
_SPELT_OUT = re.compile(r" ((?:[^\W_]|[@$])(?: (?:[^\W_]|[@$])){2,})(?= )")
_SPELT_OUT_ASCII = re.compile(r" ([a-z0-9@$](?: [a-z0-9@$]){2,})(?= )")
_HAS_LETTER = re.compile(_LETTER)
# Leetspeak. Inside a word that has a letter, a run of digits, "@" and "$" is a word in disguise
# when all its characters stand for letters: "su1c1de", "h4x0r", "$uicide". Words without a
# letter are numbers ("top 10", "2024", "999"), and so is a run with any other digit ("h264",
# "covid19"). (Every run in a word with a letter touches a letter, so this is the rule "map leet
# characters next to letters" made exact.)
_LEET = (
    ("0", "o"), ("1", "i"), ("3", "e"), ("4", "a"), ("5", "s"), ("7", "t"), ("@", "a"), ("$", "s"),
)
_LEET_CHAR = re.compile(r"[013457@$]")
_OTHER_DIGIT = re.compile(r"[2689]")
_NUMERALS = re.compile(r"([0-9@$]+)")
_NUMERALS_CHARS = "0123456789@$"
_ONES = re.compile(r"1{2,}")
# Runs of one repeated letter: capped at _HELD in the normalised text, squeezed to one letter in
# the skeleton the automaton reads. For ASCII, a small automaton of "aa".."zz" finds them faster
# than a regular expression with a back-reference can.
_REPEATED = re.compile(rf"({_LETTER})\1+")
_DOUBLES = ahocorasick.Automaton(ahocorasick.STORE_LENGTH, ahocorasick.KEY_STRING)
for _c in "abcdefghijklmnopqrstuvwxyz":
    _DOUBLES.add_word(_c + _c)
_DOUBLES.make_automaton()
del _c
# A letter held down: a run cut to this length stands for one letter, two, or itself.
_HELD = 3


def normalise_text(text: str) -> str:
    """The one normal form for keyword phrases and for the text they are matched against.

    - NFKC and casefold: full-width, mathematical and circled letters become plain ones, "ß" is
      "ss". Accents are stripped ("sùïcìdé" is "suicide", "samobójstwo" is "samobojstwo"), as
      are letters that do not decompose ("ł", "ø", "đ"), Arabic harakat and tatweel; invisible
      format characters are deleted. Letters of every script stay.
    - Cyrillic and Greek look-alikes inside an otherwise Latin word become Latin letters.
    - Every run of separators (anything but letters, digits and combining marks: spaces,
      punctuation, "_", "-", ".", "+", "/") is one space, with none at either end; three or more
      one-character words in a row are joined ("s u i c i d e").
    - Digits of every script (Bengali, Arabic-Indic, Devanagari...) become 0-9.
    - Leetspeak (0→o, 1→i, 3→e, 4→a, 5→s, 7→t, @→a, $→s; "!" between letters → i) in a run of
      those characters that touches a letter; two or more "1" together are "ll" ("ki11").
    - A letter repeated four or more times is cut to three ("suiiiicide" is "suiiicide").

    Idempotent: normalising normalised text changes nothing.
    """
    return _squeeze(_words(text))[0]


def _words(text: str) -> str:
    """`normalise_text` but for the cap on repeated letters."""
    if text.isascii():
        # ASCII is its own NFKC and casefold is lower: skip the Unicode work.
        if "!" in text:
            text = _BANG_ASCII.sub("i", text)
        s = b" ".join(text.encode("ascii").translate(_ASCII_FOLD).split()).decode("ascii")
    else:
        s = unicodedata.normalize("NFKC", text).casefold()
        if "!" in s:
            s = _BANG.sub("i", s)
        # The breve of Cyrillic "й" is part of the letter (й and и are different letters, and
        # nobody leaves it off), so it is kept apart from the marks that are stripped.
        short_i = "\u0439" in s
        if short_i:
            s = s.replace("\u0439", _SHORT_I)
        s = " ".join(unicodedata.normalize("NFD", s).translate(_FOLD).split())
        s = unicodedata.normalize("NFC", s)
        if short_i:
            s = s.replace(_SHORT_I, "\u0439")
    if not s:
        return s
    if "@" in s or "$" in s:
        # "@" and "$" in a word without a letter are not leetspeak ("$100"); alone, they may
        # be a letter spelt out ("$ u i c i d e"), so they stay for now.
        kept = (
            w if len(w) == 1 or w.strip(_NUMERALS_CHARS) else w.replace("@", "").replace("$", "")
            for w in s.split(" ")
        )
        s = " ".join(" ".join(kept).split())
    if " " in s:
        spelt_out = _SPELT_OUT_ASCII if s.isascii() else _SPELT_OUT
        s = spelt_out.sub(_join_spelt_out, f" {s} ")[1:-1]
    if _LEET_CHAR.search(s):
        # Only the words with both a letter and a leet character: a page's one "covid19" must
        # not cost a Python pass over its ten thousand words.
        s = _deleet_words(s)
        if "@" in s or "$" in s:
            # What is left of "@" and "$" was not leetspeak: a lone "@", or "a$2".
            s = " ".join(s.replace("@", "").replace("$", "").split())
    if not s.isascii() and _MIXED_SCRIPT.search(s):
        # Last, so that letters made by leetspeak or by joining count too.
        s = " ".join(_unmix(word) for word in s.split(" "))
    return s


def _deleet_words(s: str) -> str:
    """`s` with each word that holds a letter and a leet character read as letters; found from
    the leet characters outward (a regular expression trying every word start costs a page
    more than a millisecond)."""
    out: list[str] = []
    done = word_end = 0
    for m in _LEET_CHAR.finditer(s):
        at = m.start()
        if at < word_end:
            continue  # in the word just done
        start = s.rfind(" ", 0, at) + 1
        word_end = s.find(" ", at)
        if word_end == -1:
            word_end = len(s)
        word = s[start:word_end]
        if _HAS_LETTER.search(word):  # "2024" and "10" hold no letter: numbers
            out += (s[done:start], _deleet(word))
            done = word_end
    out.append(s[done:])
    return "".join(out)


def _deleet(word: str) -> str:
    if _OTHER_DIGIT.search(word):
        # Only the runs of leet characters alone are words in disguise: "h264" stays.
        parts = _NUMERALS.split(word)
        for j in range(1, len(parts), 2):
            if not _OTHER_DIGIT.search(parts[j]):
                parts[j] = _unleet(parts[j])
        return "".join(parts)
    return _unleet(word)


def _unmix(word: str) -> str:
    if any("a" <= c <= "z" for c in word) and any("\u0370" <= c <= "\u04ff" for c in word):
        return word.translate(_HOMOGLYPHS)
    return word


def _join_spelt_out(m: re.Match[str]) -> str:
    spelt = m.group(1)
    # "1 3 5" stays a list of numbers; "s u 1 c 1 d e" is a word.
    return " " + (spelt.replace(" ", "") if _HAS_LETTER.search(spelt) else spelt)


def _unleet(run: str) -> str:
    if "11" in run:
        # "1" stands for i and for l. One "1" is read as i (su1c1de, k1ll, p1lls); two or more
        # together as l, because a doubled i is rare in the languages we match and a doubled l is
        # common (ki11, wi11, a11ah). Reading every "1" both ways would double the work per "1"
        # and make "bail" match "ball"; a phrase that needs the other reading can be written that
        # way in the library ("se1f harm"), since phrases go through this same function.
        run = _ONES.sub(lambda ones: "l" * len(ones.group()), run)
    # str.replace beats str.translate with a table on words this short.
    for numeral, letter in _LEET:
        if numeral in run:
            run = run.replace(numeral, letter)
    return run


def _squeeze(s: str) -> tuple[str, str, list[tuple[int, int]]]:
    """Cap runs of a repeated letter at three; return the capped text, its skeleton (every run
    squeezed to one letter) and the spans of the runs in the capped text.

    Why three, and why a skeleton: squeezing every run to one letter in the normalised text
    would make "ass" and "as", "weed" and "wed", "anna" and "ana" one word, while keeping two
    would leave "suiiiicide" short of "suicide". So the text keeps up to three, the automaton
    reads the skeleton, and each hit is checked against the phrase's own letter counts (see
    `_Runs.check`): a run of three is a held-down key and stands for one or two.
    """
    if len(s) >= _LONG and s.isascii():
        return _squeeze_long(s)
    return _squeeze_loop(s)


def _squeeze_loop(s: str) -> tuple[str, str, list[tuple[int, int]]]:
    """`_squeeze`, one run at a time."""
    if s.isascii():
        spans: list[tuple[int, int]] = []
        for end, _ in _DOUBLES.iter(s):
            if spans and spans[-1][1] == end:
                spans[-1] = (spans[-1][0], end + 1)
            else:
                spans.append((end - 1, end + 1))
    else:
        spans = [m.span() for m in _REPEATED.finditer(s)]
    if not spans:
        return s, s, spans
    text: list[str] = []
    skeleton: list[str] = []
    capped_spans: list[tuple[int, int]] = []
    done = cut = 0
    for start, end in spans:
        keep = min(end - start, _HELD)
        text.append(s[done : start + keep])
        skeleton.append(s[done : start + 1])
        capped_spans.append((start - cut, start - cut + keep))
        cut += end - start - keep
        done = end
    text.append(s[done:])
    skeleton.append(s[done:])
    return "".join(text), "".join(skeleton), capped_spans


_LONG = 2048
"""From this length on, ASCII text is squeezed with array operations (a page: 10x faster than
the loop, whose per-run cost a page's thousand "ll", "ee" and "oo" add up); below it, the loop
(a search term: numpy's fixed cost per call is more than the whole loop)."""


def _squeeze_long(s: str) -> tuple[str, str, list[tuple[int, int]]]:
    """`_squeeze` of ASCII text, in numpy; the same result (a test compares the two)."""
    b = np.frombuffer(s.encode("ascii"), np.uint8)
    tail = b[1:]
    # repeat[i]: character i + 1 is a letter and repeats character i.
    repeat = (tail == b[:-1]) & (tail >= 0x61) & (tail <= 0x7A)
    if not repeat.any():
        return s, s, []
    edges = np.diff(np.concatenate(([0], repeat.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) + 1
    lengths = ends - starts
    keep = np.ones(len(b), dtype=bool)
    keep[1:] = ~repeat
    skeleton = b[keep].tobytes().decode("ascii")
    if int(lengths.max()) <= _HELD:
        return s, skeleton, list(zip(starts.tolist(), ends.tolist(), strict=True))
    kept = np.minimum(lengths, _HELD)
    keep = np.ones(len(b), dtype=bool)
    for k in np.flatnonzero(lengths > _HELD).tolist():
        keep[starts[k] + _HELD : ends[k]] = False
    cut = np.concatenate(([0], np.cumsum(lengths - kept)[:-1]))
    capped = starts - cut
    return (b[keep].tobytes().decode("ascii"), skeleton,
            list(zip(capped.tolist(), (capped + kept).tolist(), strict=True)))


def decode_url_text(path_and_query: str) -> str:
    """The text of a URL's path and query as a person typed it, for keyword matching.

    "+" is a space in the query (never in the path); percent-escapes are decoded as UTF-8, bad
    bytes becoming U+FFFD, and decoded again while that changes anything, at most four times, so
    "%2569" is "i" but no input can make decoding loop.
    """
    path, question, query = path_and_query.partition("?")
    text = path + question + query.replace("+", " ")
    for _ in range(4):
        if "%" not in text:
            break
        decoded = unquote(text, errors="replace")
        if decoded == text:
            break
        text = decoded
    return text


# ---------------------------------------------------------------------------------------------
# Phrases and matches


@dataclass(frozen=True, slots=True)
class Phrase:
    """One entry of a keyword library. Build it with `Phrase.of`, which normalises for you."""

    text: str
    """The phrase as the library writes it."""
    normalised: str
    """`normalise_text(text)`: what is matched."""
    weight: float
    """Added to a text's score when the phrase matches (may be negative, to offset phrases that
    educational pages use)."""
    theme: str
    """The library's theme, such as `suicide_selfharm`."""
    severity: Severity
    """`high`, `medium` or `low`."""
    mode: Mode = "word"
    """`word`: only whole words ("kill" never in "skill"); `substring`: anywhere ("porn" in
    "pornhub"). Scripts written without spaces (Chinese, Japanese, Thai) need `substring`."""
    language: str | None = None
    """Language code (`pl`, `ur`, `ar`...) for the library's bookkeeping; matching ignores it."""
    exclusions: tuple[str, ...] = ()
    """Normalised contexts that suppress this phrase when any of them occurs in the same text.
    A context matches at the start of a word, so "photo" also covers "photography"."""

    def __post_init__(self) -> None:
        where = f"phrase {self.text!r}"
        if not self.normalised:
            raise ValueError(f"{where} has no letters or digits once normalised")
        if self.normalised != normalise_text(self.text):
            raise ValueError(
                f"{where}: normalised is {self.normalised!r}, but normalise_text gives "
                f"{normalise_text(self.text)!r}; build phrases with Phrase.of"
            )
        if isinstance(self.weight, bool) or not isinstance(self.weight, int | float):
            raise ValueError(f"{where}: weight must be a number, not {self.weight!r}")
        if not math.isfinite(self.weight):
            raise ValueError(f"{where}: weight must be a finite number, not {self.weight!r}")
        object.__setattr__(self, "weight", float(self.weight))
        if not self.theme:
            raise ValueError(f"{where} has no theme")
        if self.severity not in SEVERITIES:
            raise ValueError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
        if self.mode not in MODES:
            raise ValueError(f"{where}: mode must be one of {', '.join(MODES)}")
        if not isinstance(self.exclusions, tuple):
            raise ValueError(f"{where}: exclusions must be a tuple of normalised strings")
        for context in self.exclusions:
            if not context or normalise_text(context) != context:
                raise ValueError(
                    f"{where}: exclusion {context!r} is not normalised (it would be "
                    f"{normalise_text(context)!r}); build phrases with Phrase.of"
                )

    @classmethod
    def of(
        cls,
        text: str,
        *,
        theme: str,
        severity: Severity = "medium",
        weight: float = 1.0,
        mode: Mode = "word",
        language: str | None = None,
        exclusions: Iterable[str] = (),
    ) -> Phrase:
        """A phrase with its text and its exclusion contexts normalised; empty contexts dropped."""
        contexts = (normalise_text(c) for c in exclusions)
        return cls(
            text=text,
            normalised=normalise_text(text),
            weight=weight,
            theme=theme,
            severity=severity,
            mode=mode,
            language=language,
            exclusions=tuple(dict.fromkeys(c for c in contexts if c)),
        )


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    """One phrase found in a text."""

    phrase: Phrase
    start: int
    """Offset of the match in the normalised text."""
    end: int
    """Offset just past the match in the normalised text."""
    text: str
    """The matched part of the normalised text, such as `kill myself` or `suiiicide`."""
    suppressed_by: str | None = None
    """The exclusion context that suppressed this match; only set when suppressed matches were
    asked for (`KeywordSet.match(..., with_suppressed=True)`, for `schoolgate why`)."""


@dataclass(frozen=True, slots=True)
class Member:
    """A word or phrase that is part of a combination rule (or of a word class it uses): found
    in the same pass as the phrases, but never a flag on its own."""

    normalised: str
    mode: Mode = "word"

    def __post_init__(self) -> None:
        if not self.normalised or normalise_text(self.normalised) != self.normalised:
            raise ValueError(f"member {self.normalised!r} is not normalised text")
        if self.mode not in MODES:
            raise ValueError(f"member {self.normalised!r}: mode must be one of "
                             f"{', '.join(MODES)}")


class MemberHit(NamedTuple):
    """Where a `Member` was found. (Tuples: one is made per hit, on the request path.)"""

    member: int
    """Its index in the set's `members`."""
    start: int
    end: int
    """Offsets in the normalised text."""


class MemberHits:
    """The combination members one scan found, placed in the text only when asked."""

    __slots__ = ("_all", "_found", "_runs")

    FEW = 64
    """Up to this many raw hits (a search term's), every hit is placed at once: placing a few
    costs less than choosing which to place."""

    def __init__(self, found: list[tuple[int, int, tuple[int, ...], bool, int]],
                 runs: _Runs | None) -> None:
        self._found = found
        """(skeleton offset, how to check, letter counts, plain, member number) per raw hit"""
        self._runs = runs
        self._all: tuple[MemberHit, ...] | None = None

    def __bool__(self) -> bool:
        return bool(self._found)

    @property
    def few(self) -> bool:
        """True when every hit is placed at once (see `FEW`)."""
        return len(self._found) <= self.FEW

    @property
    def ids(self) -> frozenset[int]:
        """The member numbers found: each confirmed by its first hit whose letters agree (a
        word a page repeats a hundred times is checked once)."""
        runs = self._runs
        if runs is None:
            return frozenset()
        if self.few:
            return frozenset(h.member for h in self.hits())
        confirmed: set[int] = set()
        for first, rule, counts, plain, target in self._found:
            if target not in confirmed and runs.span(counts, first, rule, plain) is not None:
                confirmed.add(target)
        return frozenset(confirmed)

    def hits(self, wanted: Container[int] | None = None) -> tuple[MemberHit, ...]:
        """Where each member (of `wanted`, or every one) was found, by position."""
        runs = self._runs
        if runs is None:
            return ()
        if self.few:
            if self._all is None:
                self._all = self._place(runs, None)
            return self._all if wanted is None else tuple(
                h for h in self._all if h.member in wanted)
        return self._place(runs, wanted)

    def _place(self, runs: _Runs, wanted: Container[int] | None) -> tuple[MemberHit, ...]:
        placed: dict[tuple[int, int, int], None] = {}
        for first, rule, counts, plain, target in self._found:
            if wanted is not None and target not in wanted:
                continue
            span = runs.span(counts, first, rule, plain)
            if span is not None:
                placed[(span[0], span[1], target)] = None
        return tuple(MemberHit(target, start, end) for start, end, target in sorted(placed))


_NO_MEMBERS = MemberHits([], None)


class Scan(NamedTuple):
    """Everything one pass of a `KeywordSet` found in a text. (A tuple: one is made for every
    address classified, and a frozen dataclass costs a microsecond to build.)"""

    text: str
    """The normalised text (held-down letters capped at three): what the offsets point into."""
    matches: tuple[KeywordMatch, ...]
    members: MemberHits
    """The combination members found: `members.ids` which, `members.hits(ids)` where (placed
    only when asked, so the hundreds of common words a page holds cost little unless a rule
    they belong to has every group present)."""
    contexts: Container[str]
    """The normalised contexts (exclusions) that occur in the text: `context in scan.contexts`.
    Looked up when asked, not found in the pass: pages are full of context words ("school",
    "history", "art"), and only the few a hit's exclusions name are ever asked for."""


# Kinds of automaton entry.
_WHOLE_WORD, _SUBSTRING, _CONTEXT, _MEMBER_WORD, _MEMBER_SUBSTRING = 0, 1, 2, 3, 4
_CHECK_AS = (_WHOLE_WORD, _SUBSTRING, _CONTEXT, _WHOLE_WORD, _SUBSTRING)
"""How each kind's hit is checked: a member as the phrase kind of its mode."""

_Entry = tuple[int, int, tuple[int, ...], bool]
"""(kind, phrase or member number, the letter count of each character of the skeleton, whether
every count is one)"""
_Form = tuple[str, int, tuple[int, ...], bool]
"""(automaton key, kind, letter counts, whether every count is one): one way a phrase is found"""


class KeywordSet:
    """A keyword library compiled into one Aho-Corasick automaton, built once, never changed.

    The automaton reads the text's skeleton (its normalised form with each run of a repeated
    letter squeezed to one), and each hit is checked against the phrase's own letter counts, so
    a held-down letter matches ("suiiiicide" is "suicide", "killlll" is "kill") while a real double
    letter keeps words apart ("ass" is not "as", "weed" is not "wed", "ana" is not "anna").
    Whole-word phrases are stored with a space at each end and the text is read with a space
    added at each end, so the automaton itself enforces word boundaries.

    A phrase of several words is also stored without its spaces, so "self harm" matches
    "selfharm" and "#killmyself". Exclusion contexts are not in the automaton: a context only
    matters beside a hit, so each is looked for (`str.find` on the skeleton, the same letter
    check) when a hit's exclusions name it, and a page's hundreds of "school"s cost nothing.

    Every phrase found is reported, overlapping ones included ("kill myself" and "kill" in the
    same words), because each may belong to another theme; a phrase that two themes list is
    reported once for each. Exactly equal phrases are kept once.
    """

    __slots__ = ("_automaton", "_context_automaton", "_context_forms", "_context_ids",
                 "_contexts", "_exclusions",
                 "_members", "_phrases")

    def __init__(self, phrases: Iterable[Phrase], members: Iterable[Member] = (),
                 contexts: Iterable[str] = ()) -> None:
        """`members` are the words of combination rules, reported apart (`scan`); `contexts`
        are normalised exclusion contexts to report when present, beyond the phrases' own."""
        self._phrases: tuple[Phrase, ...] = tuple(dict.fromkeys(phrases))
        self._members: tuple[Member, ...] = tuple(dict.fromkeys(members))
        known: dict[str, int] = {}
        table: dict[str, dict[_Entry, None]] = {}
        exclusions: list[tuple[int, ...]] = []
        forms: list[tuple[_Form, ...]] = []

        def context_id(context: str) -> int:
            if context not in known:
                known[context] = len(known)
                forms.append(tuple(_forms(context, _CONTEXT)))
            return known[context]

        for number, phrase in enumerate(self._phrases):
            kind = _WHOLE_WORD if phrase.mode == "word" else _SUBSTRING
            _store(table, phrase.normalised, kind, number)
            exclusions.append(tuple(context_id(c) for c in phrase.exclusions))
        for number, member in enumerate(self._members):
            kind = _MEMBER_WORD if member.mode == "word" else _MEMBER_SUBSTRING
            _store(table, member.normalised, kind, number)
        for context in contexts:
            if not context or normalise_text(context) != context:
                raise ValueError(f"context {context!r} is not normalised text")
            context_id(context)
        self._exclusions = tuple(exclusions)
        self._contexts = tuple(known)
        self._context_ids = known
        self._context_forms = tuple(forms)
        # Short texts (search terms) look for every context in one pass of their own automaton
        # the first time one is asked for: a flagged search's phrase may name fifty contexts.
        context_automaton = None
        if forms:
            context_automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY,
                                                      ahocorasick.KEY_STRING)
            keyed: dict[str, list[tuple[int, tuple[int, ...], bool]]] = {}
            for number, context_forms in enumerate(forms):
                for key, _, counts, plain in context_forms:
                    keyed.setdefault(key, []).append((number, counts, plain))
            for key, context_entries in keyed.items():
                context_automaton.add_word(key, tuple(context_entries))
            context_automaton.make_automaton()
        self._context_automaton = context_automaton
        automaton = None
        if table:
            automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY, ahocorasick.KEY_STRING)
            for key, entries in table.items():
                automaton.add_word(key, tuple(entries))
            automaton.make_automaton()
        self._automaton = automaton

    @property
    def phrases(self) -> tuple[Phrase, ...]:
        """The phrases of the set, exact duplicates removed, in the order given."""
        return self._phrases

    @property
    def members(self) -> tuple[Member, ...]:
        """The combination members of the set, exact duplicates removed, in the order given."""
        return self._members

    def __len__(self) -> int:
        return len(self._phrases)

    def __repr__(self) -> str:
        return f"<KeywordSet of {len(self._phrases)} phrases>"

    def match(
        self, text: str, *, normalised: bool = False, with_suppressed: bool = False
    ) -> list[KeywordMatch]:
        """Every phrase found in `text`, by position, the longest first at each position.

        `normalised=True` says `text` is already `normalise_text` output (a search term that was
        normalised for its event anyway). Offsets are into the normalised text. A match that an
        exclusion context suppresses is left out unless `with_suppressed` is true.
        """
        return list(self.scan(text, normalised=normalised, with_suppressed=with_suppressed)
                    .matches)

    def scan(self, text: str, *, normalised: bool = False,
             with_suppressed: bool = False) -> Scan:
        """One pass over `text`: the phrases found (as `match` gives them), the combination
        members found, and the contexts present."""
        automaton = self._automaton
        if automaton is None:
            return Scan("", (), _NO_MEMBERS, frozenset())
        norm, skeleton, spans = _squeeze(text if normalised else _words(text))
        if not norm:
            return Scan(norm, (), _NO_MEMBERS, frozenset())
        runs = _Runs(spans)
        padded = f" {skeleton} "
        hits: dict[tuple[int, int, int], None] = {}
        members: list[tuple[int, int, tuple[int, ...], bool, int]] = []
        # In the padded text, index i is skeleton index i - 1.
        for end, entries in automaton.iter(padded):
            for kind, target, counts, plain in entries:
                rule = _CHECK_AS[kind]
                first = (end - 2 if rule == _WHOLE_WORD else end - 1) - len(counts) + 1
                if kind >= _MEMBER_WORD:
                    members.append((first, rule, counts, plain, target))
                    continue
                span = runs.span(counts, first, rule, plain)
                if span is not None:
                    hits[(span[0], -span[1], target)] = None
        present = _Present(self, padded, runs)
        found: list[KeywordMatch] = []
        for start, negative_end, target in sorted(hits):
            suppressed_by = next(
                (self._contexts[c] for c in self._exclusions[target] if present.has(c)), None
            )
            if suppressed_by is None or with_suppressed:
                end = -negative_end
                found.append(
                    KeywordMatch(self._phrases[target], start, end, norm[start:end], suppressed_by)
                )
        return Scan(norm, tuple(found), MemberHits(members, runs) if members else _NO_MEMBERS,
                    present)

    def score(self, text: str, *, normalised: bool = False) -> float:
        """The sum of the weights of the distinct phrases found (suppressed ones not counted)."""
        weights = {id(m.phrase): m.phrase.weight for m in self.match(text, normalised=normalised)}
        return math.fsum(weights.values())


RUN_ON = 10
"""A phrase of several words is also found inside a longer run-together word once its joined
form has this many letters: "kill myself" in "howtokillmyself". Shorter joined forms sit
inside ordinary words ("ex boy" in "sexboy" aside, "go die" in "indigodie")."""


def _store(table: dict[str, dict[_Entry, None]], normalised: str, kind: int, target: int) -> None:
    for key, form_kind, counts, plain in _forms(normalised, kind):
        table.setdefault(key, {})[(form_kind, target, counts, plain)] = None


def _forms(normalised: str, kind: int) -> list[_Form]:
    """The automaton keys (or, for a context, the `str.find` needles) of one normalised entry."""
    forms = [(normalised, kind)]
    if " " in normalised:
        # "self harm" also as "selfharm"; normalised again, since joining can make a new word
        # whose digits now touch letters ("2 girls 1 cup" joined is "2girlsicup").
        joined = normalise_text(normalised.replace(" ", ""))
        if joined != normalised:
            # Long enough, anywhere in a word: nobody leaves the spaces out of the words
            # around it either ("howtokillmyself").
            run_on = len(joined) >= RUN_ON and kind in (_WHOLE_WORD, _MEMBER_WORD)
            forms.append((joined, (_SUBSTRING if kind == _WHOLE_WORD else _MEMBER_SUBSTRING)
                          if run_on else kind))
    out: list[_Form] = []
    for form, form_kind in forms:
        _, skeleton, spans = _squeeze(form)
        counts = [1] * len(skeleton)
        dropped = 0
        for start, end in spans:
            counts[start - dropped] = end - start
            dropped += end - start - 1
        # Whole words carry a space at each end; a context must start a word but may run on
        # ("photo" in "photography"); a substring may sit anywhere.
        key = {_WHOLE_WORD: f" {skeleton} ", _MEMBER_WORD: f" {skeleton} ",
               _CONTEXT: f" {skeleton}"}.get(form_kind, skeleton)
        out.append((key, form_kind, tuple(counts), all(c == 1 for c in counts)))
    return out


class _Present:
    """The contexts present in one scanned text, looked up when first asked (see `Scan`)."""

    __slots__ = ("_all", "_known", "_padded", "_runs", "_set", "_words")

    def __init__(self, keywords: KeywordSet, padded: str, runs: _Runs) -> None:
        self._set = keywords
        self._padded = padded
        self._runs = runs
        self._all: set[int] | None = None
        """A short text's contexts, all found at the first question."""
        self._known: dict[int, bool] = {}
        """A long text's contexts, each looked for when first asked."""
        self._words: list[str] | None = None

    def __contains__(self, context: object) -> bool:
        number = self._set._context_ids.get(context) if isinstance(context, str) else None
        return number is not None and self.has(number)

    def has(self, number: int) -> bool:
        if len(self._padded) < _LONG:
            if self._all is None:
                self._all = self._find_all()
            return number in self._all
        known = self._known.get(number)
        if known is None:
            known = self._known[number] = self._find(number)
        return known

    def _find_all(self) -> set[int]:
        """Every context in a short text, in one pass of the contexts' own automaton."""
        automaton = self._set._context_automaton
        found: set[int] = set()
        if automaton is None:
            return found
        runs = self._runs
        for end, entries in automaton.iter(self._padded):
            for number, counts, plain in entries:
                # A context's key is " " + its skeleton: it ends at padded index `end`, so its
                # letters start at skeleton index end - len(counts).
                if number not in found and runs.span(counts, end - len(counts), _CONTEXT,
                                                     plain) is not None:
                    found.add(number)
        return found

    def _find(self, number: int) -> bool:
        padded, runs = self._padded, self._runs
        words = self._words
        if words is None:
            # The distinct words, sorted: one split in C, then a context that is not there
            # (most of those asked for) costs a bisection instead of a search of the page.
            words = self._words = sorted(set(padded.split()))
        for key, kind, counts, plain in self._set._context_forms[number]:
            first, _, rest = key[1:].partition(" ")
            i = bisect_left(words, first)
            if i == len(words) or not (words[i] == first if rest else
                                       words[i].startswith(first)):
                continue  # its first word (or, alone, the start of a word) is not in the text
            # The needle is " " + the skeleton: found at padded index p, the skeleton's own
            # letters start at skeleton index p.
            at = padded.find(key)
            while at != -1:
                if runs.span(counts, at, kind, plain) is not None:
                    return True
                at = padded.find(key, at + 1)
        return False


class _Runs:
    """Maps a hit in the skeleton back to the normalised text, given the spans of the runs of a
    repeated letter there. Texts hold few such runs, so a hit costs a bisection."""

    __slots__ = ("dropped_before", "lengths", "positions", "total_dropped")

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        # Comprehensions and accumulate, not a loop of appends: a page has a thousand runs.
        self.lengths: list[int] = [end - start for start, end in spans]
        dropped = list(accumulate((n - 1 for n in self.lengths), initial=0))
        self.dropped_before: list[int] = dropped[:-1]
        self.positions: list[int] = [
            start - d for (start, _), d in zip(spans, self.dropped_before, strict=True)]
        self.total_dropped = dropped[-1]

    def span(self, counts: tuple[int, ...], first: int, kind: int,
             plain: bool) -> tuple[int, int] | None:
        """`check`, with the common case first: no held-down or double letter in the phrase
        (`plain`), nor in the text where it was found; the offsets are shifted by what runs
        before dropped, and no letter needs checking (a page has thousands of hits)."""
        if plain:
            positions = self.positions
            size = len(counts)
            i = bisect_left(positions, first)
            if i == len(positions):
                return first + self.total_dropped, first + size + self.total_dropped
            if positions[i] >= first + size:
                shift = self.dropped_before[i]
                return first + shift, first + size + shift
        return self.check(counts, first, kind)

    def check(self, counts: tuple[int, ...], first: int, kind: int) -> tuple[int, int] | None:
        """The span in the normalised text of a hit at skeleton offset `first`, or None when the
        letter counts disagree.

        A letter the text holds down (a run cut to three) stands for one, two or three; any
        other count must be the phrase's own. At a substring's edges (and at a context's end)
        the text may hold more of the letter than the phrase: "sex" is inside "essex".
        """
        positions, lengths = self.positions, self.lengths
        i = bisect_left(positions, first)
        dropped = self.dropped_before[i] if i < len(positions) else self.total_dropped
        final = len(counts) - 1
        start = end = 0
        for j, want in enumerate(counts):
            k = first + j
            if i < len(positions) and positions[i] == k:
                have = lengths[i]
                i += 1
            else:
                have = 1
            run_start = k + dropped
            run_end = run_start + have
            dropped += have - 1
            if j == 0:
                start = run_start
            end = run_end
            if have == want or have == _HELD:
                continue
            loose_left = j == 0 and kind == _SUBSTRING
            loose_right = j == final and kind != _WHOLE_WORD
            if have > want and (loose_left or loose_right):
                # Only the phrase's own letters are the match: "essex" holds "sex" at "sex".
                if loose_left:
                    start = run_end - want
                else:
                    end = run_start + want
                continue
            return None
        return start, end
