"""Page text: what a person reads on an HTML, plain-text or JSON page, and what the keyword
library finds in it, each phrase once per page (as e2guardian counts a page's phrases).

Pure code: the gateway hands in the decoded text (mitmproxy has undone the content encoding and
the charset); `page_findings` is the one place page text meets the phrase engine, so a new
engine replaces this function and nothing in the gateway.
"""

from __future__ import annotations

from collections.abc import Iterable

from selectolax.lexbor import LexborHTMLParser

from .keywords import normalise_text
from .library import Flag, KeywordLibrary

__all__ = ["HIDDEN_TAGS", "SCANNED_TYPES", "page_findings", "page_text", "scanned_type",
           "top_phrases"]

SCANNED_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "application/json")
"""The media types whose text is scanned; anything else (images, video, scripts, CSS) is not
text a person reads on a page."""

HIDDEN_TAGS = ["script", "style", "noscript", "template"]
"""Elements whose content a browser does not show as text (a `noscript` fallback is not shown
to a browser that runs scripts, and its text repeats what the page says)."""

_SEVERITY_POINTS = {"high": 10, "medium": 3, "low": 1}


def scanned_type(content_type: str | None) -> str | None:
    """The media type of a `Content-Type` header if its text is scanned, else None."""
    if not content_type:
        return None
    media = content_type.partition(";")[0].strip().lower()
    return media if media in SCANNED_TYPES else None


def page_text(body: str, media_type: str) -> str:
    """The text a person reads: for HTML, the text nodes outside `HIDDEN_TAGS` (lexbor, in C:
    no DOM is built in Python, and attributes are never read), one space between nodes so words
    of adjacent elements stay apart; plain text and JSON as they are."""
    if media_type not in ("text/html", "application/xhtml+xml"):
        return body
    tree = LexborHTMLParser(body)
    tree.strip_tags(HIDDEN_TAGS)
    return tree.text(separator=" ")


def page_findings(library: KeywordLibrary, text: str) -> tuple[Flag, ...]:
    """The library's flags in a page's text, one per distinct phrase (its first occurrence),
    most points first: a page that says a phrase fifty times is one flag, so a long page does
    not outscore a short one by repetition. Suppression (exclusions, contexts) applies over the
    whole page, as for a search. Feed the flags to `Policy.keyword_score`."""
    normalised = normalise_text(text)
    if not normalised:
        return ()
    first: dict[str, Flag] = {}
    for flag in library.match(normalised, normalised=True):
        first.setdefault(flag.phrase, flag)
    return tuple(sorted(first.values(), key=lambda f: (-_points(f), f.start)))


def top_phrases(flags: Iterable[Flag], limit: int = 5) -> tuple[str, ...]:
    """The phrases that weigh most, as the library writes them (never the page's own words),
    for the block page and the event."""
    ranked = sorted(flags, key=lambda f: -_points(f))
    return tuple(dict.fromkeys(f.phrase for f in ranked if _points(f) > 0))[:limit]


def _points(flag: Flag) -> float:
    return flag.weight * _SEVERITY_POINTS.get(flag.severity, 1)
