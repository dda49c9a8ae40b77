"""Pages read in pieces (#16 point 4): where a stream may be cut, the text of HTML and server-sent
events that arrive a piece at a time, the running findings, and the notice in a chat answer's
own shape. (Whole pages: tests/unit/gateway/test_scan.py, with the addon.)"""

from __future__ import annotations

import json

import pytest

from schoolgate.classify.keywords import Phrase
from schoolgate.classify.library import Combination, KeywordLibrary, Member
from schoolgate.classify.pages import (
    HOLD_LIMIT,
    PageStream,
    StreamText,
    event_notice,
    page_findings,
    page_text,
    ready_part,
    stream_media,
)


def _library() -> KeywordLibrary:
    phrases = [Phrase.of(p, theme="violence", severity="high") for p in
               ("kill myself", "stab")]
    phrases.append(Phrase.of("ass", theme="adult", severity="medium"))
    combo = Combination(
        name="hurt without marks", theme="violence", severity="high", weight=1.0,
        groups=((Member("hurt"), Member("hit")), (Member("without marks"),)), within=6,
        source="test.yaml:1")
    return KeywordLibrary([(p, "test.yaml:1", {}) for p in phrases], combinations=[combo])


LIBRARY = _library()


@pytest.mark.parametrize(("held", "media", "ready"), [
    (b"<p>hello</p><p>wor", "text/html", len(b"<p>hello</p><p>")),
    (b"no tag yet", "text/html", 0),
    (b"data: a\n\ndata: b", "text/event-stream", len(b"data: a\n\n")),
    (b"data: a\r\n\r\ndata: b", "text/event-stream", len(b"data: a\r\n\r\n")),
    (b"data: partial", "text/event-stream", 0),
    (b"some words and a par", "text/plain", len(b"some words and a ")),
    (b'{"a": "b c', "application/json", len(b'{"a": "b ')),
])
def test_a_stream_is_sent_up_to_the_last_whole_tag_event_or_word(held, media, ready):
    assert ready_part(held, media) == ready
    assert ready_part(held, media, final=True) == len(held)


def test_what_is_held_back_is_bounded():
    held = b"x" * HOLD_LIMIT
    assert ready_part(held, "text/html") == HOLD_LIMIT


def test_only_event_streams_are_always_streamed():
    assert stream_media("text/event-stream; charset=utf-8") == "text/event-stream"
    assert stream_media("text/html") is None and stream_media(None) is None


def test_html_in_pieces_reads_as_the_whole_page_reads():
    page = ("<html><head><style>p{}</style><script>var kill = 'myself';\nmore()</script>"
            "</head><body><p>one two</p><p>three</p><script>x()</script><p>four</p></body>")
    # Cut where ready_part would cut: after tags, one of them inside the script.
    cut_at = [page.index("\nmore()") - 1, page.index("<p>three"), len(page)]
    reader = StreamText("text/html")
    pieces, done = [], 0
    for at in cut_at:
        chunk = page[done:at + 1] if at < len(page) else page[done:]
        end = chunk.rfind(">") + 1 or len(chunk)
        pieces.append(reader.feed(chunk[:end]))
        done += end
    text = " ".join("".join(pieces).split())
    assert text == " ".join(page_text(page, "text/html").split()) == "one two three four"
    assert "myself" not in text  # the script's text, across a cut, is never read


def test_server_sent_events_read_as_the_answer_they_carry():
    reader = StreamText("text/event-stream")
    events = "".join(f"data: {json.dumps({'id': 7, 'model': 'm1', 'choices': [{'delta': {'content': t}}]})}\n\n"  # noqa: E501
                     for t in ["I want to", " kill", " my", "self"])
    assert reader.feed(events) == "I want to kill myself"
    assert reader.template is not None and reader.done is False
    assert reader.feed("event: ping\ndata: plain words\n\ndata: [DONE]\n\n") == "plain words "
    assert reader.done is True


def test_running_findings_find_a_phrase_across_pieces_once():
    stream = PageStream(LIBRARY)
    assert stream.feed("I want to kill", complete=False) is False
    assert stream.feed(" my", complete=False) is False
    assert stream.feed("self. Kill myself", complete=False) is True
    assert stream.feed(" again and again", complete=False) is False  # each phrase once
    assert [f.phrase for f in stream.flags] == ["kill myself"]


def test_a_combination_across_pieces_is_found():
    stream = PageStream(LIBRARY)
    stream.feed("how to hurt someone", complete=True)
    assert stream.feed(" without marks on them", complete=True) is True
    assert [f.phrase for f in stream.flags] == ["hurt without marks"]


def test_the_last_word_waits_for_the_next_piece():
    stream = PageStream(LIBRARY)
    stream.feed("an ass", complete=False)
    assert stream.flags == ()  # "ass" may go on...
    assert [f.phrase for f in stream.if_ended()] == ["ass"]  # ...unless it ends here
    stream.feed("essment of the work", complete=False)
    assert stream.flags == () and stream.if_ended() == ()  # it went on: "assessment"
    stream.feed(" you stab", complete=False)
    assert stream.end() is True
    assert [f.phrase for f in stream.flags] == ["stab"]


def test_a_stream_finds_what_the_whole_page_finds():
    page = ("<p>" + "word " * 300 + "</p><p>kill myself</p><p>" + "more " * 300
            + "hurt them without marks</p><p>stab</p>")
    whole = {f.phrase for f in page_findings(LIBRARY, page_text(page, "text/html"))}
    reader, stream = StreamText("text/html"), PageStream(LIBRARY)
    done = 0
    for at in range(200, len(page) + 200, 200):
        chunk = page[done:at]
        end = len(chunk) if at >= len(page) else chunk.rfind(">") + 1
        stream.feed(reader.feed(chunk[:end]))
        done += end
    stream.end()
    assert {f.phrase for f in stream.flags} == whole == {"kill myself", "hurt without marks",
                                                         "stab"}


def test_the_notice_takes_the_shape_of_the_answer():
    template = {"id": "c1", "choices": [{"index": 0, "delta": {"content": "tok",
                                                               "text": "other"}}]}
    event = event_notice(template, "Stopped.", done=True).decode()
    first, done, _ = event.split("\n\n")
    parsed = json.loads(first.removeprefix("data: "))
    assert parsed["id"] == "c1" and parsed["choices"][0]["index"] == 0
    assert parsed["choices"][0]["delta"] == {"content": "Stopped.", "text": ""}
    assert done == "data: [DONE]"
    assert event_notice(None, "Line one\nline two", done=False) == \
        b"data: Line one\ndata: line two\n\n"
