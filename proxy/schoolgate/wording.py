"""Counts with their unit, in the school's words: "1 person", "2 people", "1,204 searches". The
one way reports, alerts, the check and the command line write a number of things, so none says
"1 people" or "alert(s)".

A leaf: it imports nothing of Schoolgate, so every layer may use it; `pages` gives it to the
templates as the `counted` filter.
"""

from __future__ import annotations

__all__ = ["counted", "plural"]

_IRREGULAR = {"person": "people", "child": "children", "woman": "women", "man": "men"}
"""The last words whose plural no rule below makes."""
_SIBILANT = ("s", "x", "z", "ch", "sh")


def plural(one: str) -> str:
    """The plural of `one`, changing its last word only: "flagged search" -> "flagged
    searches", "different person" -> "different people", "entry" -> "entries"."""
    head, space, last = one.rpartition(" ")
    lower = last.lower()
    if lower in _IRREGULAR:
        many = _IRREGULAR[lower]
        many = many.capitalize() if last[:1].isupper() else many
    elif lower.endswith(_SIBILANT):
        many = last + "es"
    elif len(lower) > 1 and lower.endswith("y") and lower[-2] not in "aeiou":
        many = last[:-1] + "ies"
    else:
        many = last + "s"
    return f"{head}{space}{many}"


def counted(count: int, one: str, many: str | None = None) -> str:
    """`count` with its unit, singular for exactly one: `counted(1, "person")` is "1 person",
    `counted(2, "person")` "2 people", `counted(1500, "event")` "1,500 events". `many` gives a
    plural no rule makes."""
    word = one if count == 1 else many if many is not None else plural(one)
    return f"{count:,} {word}"
