"""Page text: what a person reads on an HTML, plain-text or JSON page, and what the keyword
library finds in it, each phrase once per page (as e2guardian counts a page's phrases).

Pure code: the gateway hands in the decoded text (mitmproxy has undone the content encoding and
the charset); `page_findings` is the one place page text meets the phrase engine, so a new
engine replaces this function and nothing in the gateway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from selectolax.lexbor import LexborHTMLParser

from .library import Flag, KeywordLibrary

__all__ = ["HIDDEN_TAGS", "HOLD_LIMIT", "SCANNED_TYPES", "STREAMED_TYPES", "TEXT_KEYS",
           "PageStream", "StreamText", "event_notice", "page_findings", "page_text",
           "ready_part", "scanned_type", "stream_media", "top_phrases"]

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
    first: dict[str, Flag] = {}
    for flag in library.match(text):
        first.setdefault(flag.phrase, flag)
    return tuple(sorted(first.values(), key=lambda f: (-_points(f), f.start)))


def top_phrases(flags: Iterable[Flag], limit: int = 5) -> tuple[str, ...]:
    """The phrases that weigh most, as the library writes them (never the page's own words),
    for the block page and the event."""
    ranked = sorted(flags, key=lambda f: -_points(f))
    return tuple(dict.fromkeys(f.phrase for f in ranked if _points(f) > 0))[:limit]


def _points(flag: Flag) -> float:
    return flag.weight * _SEVERITY_POINTS.get(flag.severity, 1)


# ---------------------------------------------------------------------------------------------
# Pages that arrive in pieces: server-sent events (AI chat answers) and bodies over the cap.

STREAMED_TYPES = ("text/event-stream",)
"""Media types only ever read as a stream: each is scanned as it flows, whatever its size."""

TEXT_KEYS = frozenset({"content", "text", "delta", "token", "response", "completion", "answer",
                       "parts", "message", "output_text", "reasoning"})
"""In a server-sent event's JSON, the keys whose strings are what the person reads: OpenAI's
`choices[].delta.content`, Anthropic's `delta.text`, Gemini's `parts[].text`, Ollama's
`response` and `message.content`, ChatGPT's `message.content.parts`. Ids, model names and
timestamps beside them are not text a person reads."""

HOLD_LIMIT = 64 * 1024
"""The most of a stream held back waiting for the end of a tag, an event or a word; past it,
the held part is sent and scanned as it is."""


def stream_media(content_type: str | None) -> str | None:
    """The media type of a `Content-Type` that is scanned as a stream only, else None."""
    if not content_type:
        return None
    media = content_type.partition(";")[0].strip().lower()
    return media if media in STREAMED_TYPES else None


def ready_part(held: bytes, media: str, final: bool = False) -> int:
    """How much of `held` (decoded bytes, not yet sent) can be scanned and sent now: up to the
    last complete tag for HTML (so a notice never lands inside a tag), the last complete event
    for server-sent events (so one is never cut in two), the last space for other text (so a
    word is never scanned in halves). Everything at the end of the stream, or once
    `HOLD_LIMIT` is held. Byte-level: for every ASCII-compatible charset, these bytes are
    those characters."""
    if final or len(held) >= HOLD_LIMIT:
        return len(held)
    if media in ("text/html", "application/xhtml+xml"):
        return held.rfind(b">") + 1
    if media == "text/event-stream":
        ends = [at + len(blank) for blank in (b"\n\n", b"\r\n\r\n", b"\r\r")
                if (at := held.rfind(blank)) != -1]
        return max(ends, default=0)
    return max(held.rfind(b" "), held.rfind(b"\n"), held.rfind(b"\t")) + 1


_OPEN_WORD = re.compile(r"[^\W_]+$")
_HIDDEN_TAG = re.compile(r"<(/?)(script|style|noscript|template)\b", re.IGNORECASE)


class StreamText:
    """The text a person reads in a page that arrives in complete pieces (`ready_part`), piece
    by piece: HTML reduced as `page_text` reduces it, with a script or style element that
    spans pieces skipped whole; server-sent events reduced to their data, and for JSON data to
    the strings under `TEXT_KEYS`, joined as the tokens of one answer; other text as it is."""

    def __init__(self, media: str) -> None:
        self.media = media
        self.hidden: str | None = None
        """The hidden element (`script`, `style`...) the text sent so far ends inside."""
        self.template: object | None = None
        """The last server-sent event's JSON that carried text: the shape a notice takes."""
        self.done = False
        """A server-sent `data: [DONE]` was seen (OpenAI's end of an answer)."""

    def feed(self, text: str) -> str:
        if self.media in ("text/html", "application/xhtml+xml"):
            return self._html(text)
        if self.media == "text/event-stream":
            return self._events(text)
        return text

    def _html(self, text: str) -> str:
        if self.hidden is not None:
            close = re.search(rf"</{self.hidden}\b[^>]*>", text, re.IGNORECASE)
            if close is None:
                return ""
            text = text[close.end():]
            self.hidden = None
        opened: tuple[str, int] | None = None
        for m in _HIDDEN_TAG.finditer(text):
            name = m.group(2).lower()
            if not m.group(1) and opened is None:
                opened = (name, m.start())
            elif m.group(1) and opened is not None and opened[0] == name:
                opened = None
        if opened is not None:
            self.hidden = opened[0]
            text = text[:opened[1]]
        # One space before: the piece before ended at a tag, a word boundary.
        return " " + page_text(text, "text/html") if text else ""

    def _events(self, text: str) -> str:
        out: list[str] = []
        for event in re.split(r"\r\n\r\n|\n\n|\r\r", text):
            data = "\n".join(line[5:].removeprefix(" ")
                             for line in re.split(r"\r\n|\n|\r", event) if line.startswith("data:"))
            if not data:
                continue
            if data.strip() == "[DONE]":
                self.done = True
                continue
            try:
                parsed = json.loads(data)
            except ValueError:
                out.append(data + " ")  # plain text data: one event, one line of it
                continue
            found: list[str] = []
            _strings(parsed, False, found)
            if found:
                self.template = parsed
                out.append("".join(found))
        return "".join(out)


def _strings(value: object, under_text_key: bool, found: list[str]) -> None:
    if isinstance(value, str):
        if under_text_key:
            found.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _strings(item, under_text_key or key in TEXT_KEYS, found)
    elif isinstance(value, list):
        for item in value:
            _strings(item, under_text_key, found)


def event_notice(template: object | None, notice: str, done: bool) -> bytes:
    """A server-sent event that shows `notice` where the stream's answer text was shown: the
    last event's JSON with its first text string replaced by the notice and the others
    emptied, so a chat page writes it into the answer; plain `data:` when the stream sent no
    JSON. With OpenAI's `[DONE]` after it when the stream used that end marker."""
    if template is None:
        body = "data: " + "\ndata: ".join(notice.splitlines()) + "\n\n"
    else:
        placed = [False]

        def swap(value: object, under_text_key: bool) -> object:
            if isinstance(value, str) and under_text_key:
                if placed[0]:
                    return ""
                placed[0] = True
                return notice
            if isinstance(value, dict):
                return {k: swap(v, under_text_key or k in TEXT_KEYS) for k, v in value.items()}
            if isinstance(value, list):
                return [swap(v, under_text_key) for v in value]
            return value

        body = "data: " + json.dumps(swap(template, False)) + "\n\n"
    if done:
        body += "data: [DONE]\n\n"
    return body.encode("utf-8")


class PageStream:
    """The running findings of a page that arrives in pieces: each phrase once (its first
    occurrence), as `page_findings` counts a whole page. Each piece is matched with the end of
    the text before it (`tail` characters, at least a combination's window of words), so a
    phrase or a combination across two pieces is found; a piece whose last word may go on in
    the next (`complete=False`: tokens of a chat answer) keeps that word back until then.

    What a stream cannot do that a whole page does: an exclusion context suppresses only the
    matches in its own piece or the words just before it, not the whole page's."""

    def __init__(self, library: KeywordLibrary) -> None:
        self._library = library
        within = max((c.within for c in library.combinations), default=0)
        self._tail_size = max(400, 16 * within)
        self._tail = ""
        self._open = ""
        self._seen: dict[str, Flag] = {}

    def feed(self, text: str, *, complete: bool = True) -> bool:
        """Scan one more piece; True when it brought a phrase not seen before."""
        text = self._open + text
        self._open = ""
        if not complete:
            # The last run of letters and digits may go on in the next piece.
            m = _OPEN_WORD.search(text)
            cut = m.start() if m else len(text)
            text, self._open = text[:cut], text[cut:]
            if len(self._open) > HOLD_LIMIT:
                text, self._open = text + self._open, ""
        if not text:
            return False
        window = self._tail + text
        new = False
        for flag in self._library.match(window):
            if flag.phrase not in self._seen:
                self._seen[flag.phrase] = flag
                new = True
        tail = window[-self._tail_size:]
        # Start the tail at a word, or a word cut in two could match as another ("skill").
        space = tail.find(" ")
        self._tail = tail[space + 1:] if space != -1 and len(window) > self._tail_size else tail
        return new

    def end(self) -> bool:
        """The word kept back, if any: the stream is over."""
        return self.feed("", complete=True) if self._open else False

    def if_ended(self) -> tuple[Flag, ...]:
        """The flags there would be if the word kept back ended here (nothing is kept): the
        gateway holds a piece back when these would cross the threshold, until the next piece
        says whether the word went on ("ass" + "essment") or ended."""
        if not self._open:
            return self.flags
        seen = dict(self._seen)
        for flag in self._library.match(self._tail + self._open):
            seen.setdefault(flag.phrase, flag)
        return tuple(sorted(seen.values(), key=lambda f: (-_points(f), f.start)))

    @property
    def flags(self) -> tuple[Flag, ...]:
        """The flags so far, most points first (as `page_findings` orders them)."""
        return tuple(sorted(self._seen.values(), key=lambda f: (-_points(f), f.start)))
