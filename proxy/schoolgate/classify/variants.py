"""Misspellings and word forms of a keyword phrase, generated once when a library loads (never
per request): the automaton then holds them beside the phrase, so matching costs nothing more.

What pupils get wrong, and what is generated (only for phrases whose library asks, with
`variants: true`):

- in each word of at least `MIN_LETTERS` Latin letters, one letter left out, except the
  first ("sucide", "anorxia"), or two neighbouring letters swapped, except the first
  ("suicdie"). Shorter words have too many real neighbours ("starve" without its "v" is
  "stare"), so their misspellings are listed by hand;
- for a phrase of one word of at least `MIN_STEM` letters, the endings -s, -es, -ed and -ing
  (a final "e" dropped before -ed and -ing: "starve" → "starving", "starved"). Not -er: an
  agent noun is often another meaning ("kill" and "killer brownies"); and not in a phrase of
  several words, whose last word is as often a pronoun or a noun that takes no ending
  ("kill myself").

The normaliser already covers case, accents, leetspeak, held-down letters and spacing, so none
of that is generated. Words in other scripts are left alone: their misspellings follow other
rules, and a library lists them.
"""

from __future__ import annotations

import re

__all__ = ["MIN_LETTERS", "MIN_STEM", "variants"]

MIN_LETTERS = 7
MIN_STEM = 5
_LATIN_WORD = re.compile(r"[a-z]+")
_ENDINGS = ("s", "es", "ed", "ing")


def variants(normalised: str) -> set[str]:
    """The misspellings and word forms of a normalised phrase, the phrase itself left out.
    Each differs from the phrase in one word by one edit, or in its last word's ending."""
    words = normalised.split(" ")
    found: set[str] = set()
    for i, word in enumerate(words):
        if not _LATIN_WORD.fullmatch(word):
            continue
        spelt: set[str] = set()
        if len(word) >= MIN_LETTERS:
            for j in range(1, len(word)):
                spelt.add(word[:j] + word[j + 1:])  # one letter left out
                if j < len(word) - 1 and word[j] != word[j + 1]:
                    spelt.add(word[:j] + word[j + 1] + word[j] + word[j + 2:])  # swapped
        if len(words) == 1 and len(word) >= MIN_STEM:
            stem = word[:-1] if word.endswith("e") else word
            for ending in _ENDINGS:
                spelt.add((stem if ending[0] in "ei" else word) + ending)
        for other in spelt:
            found.add(" ".join((*words[:i], other, *words[i + 1:])))
    found.discard(normalised)
    return found
