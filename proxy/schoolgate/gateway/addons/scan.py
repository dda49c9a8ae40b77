"""ScanPages: score the text of allowed HTML, plain-text and JSON pages, and of server-sent event
streams (AI chat answers), with the keyword library, at the group's `keyword_threshold`; and
send every other large body on as it arrives (`_pass_through`), never held whole.

Two roads, decided at `responseheaders`:

- **Held** (a page up to its group's `page_scan.max_bytes`, or of undeclared length): mitmproxy
  buffers the body, `response` scores it whole, and a page at the threshold is replaced whole by
  the block page (403).
- **Streamed** (server-sent events, whatever their size; a page whose declared length is over the
  cap): the body is decoded (gzip, deflate, br, zstd) and scanned as it flows, each piece before
  it is sent, so allowed text waits for nothing but its own scan. The piece that takes the
  running score to the threshold is not sent: a notice takes its place (in a chat answer, in the
  answer's own JSON), the rest of the stream is dropped, and the event is recorded at once. A
  streamed body reaches the browser decoded (its `Content-Encoding` removed): the gateway must be
  able to write the notice into it, and the link to the browser is the school's own network.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator

from mitmproxy import http

from ...classify.library import Flag, KeywordLibrary
from ...classify.pages import (
    PageStream,
    StreamText,
    event_notice,
    page_findings,
    page_text,
    ready_part,
    scanned_type,
    stream_media,
    top_phrases,
)
from ...policy import ALLOW, BLOCK, Policy, Verdict
from ..bodies import StreamDecoder, UndecodableError, charset_of, decode_body, text_of
from ..decision import Decision
from ..service import Gateway
from . import decision_of, fail_closed, serve_verdict
from .metrics import count_page
from .record import record_page

__all__ = ["ScanPages"]

log = logging.getLogger("schoolgate.scan")

_STREAMING = "Streaming response from "


class _QuietStreams(logging.Filter):
    """mitmproxy logs "Streaming response from <host>" for every streamed response: a line per
    chat answer naming the site a pupil used. The event store is the record of browsing, kept
    and purged by the retention rules; the log is not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_STREAMING)


class ScanPages:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.metrics = gateway.metrics
        self._cache = FindingsCache()
        self._quiet = _QuietStreams()
        # mitmproxy's HTTP layer logs through the connection handler's logger.
        logging.getLogger("mitmproxy.proxy.server").addFilter(self._quiet)

    def done(self) -> None:
        logging.getLogger("mitmproxy.proxy.server").removeFilter(self._quiet)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        d = decision_of(flow)
        if d is None or not _allowed(d) or flow.response is None:
            return
        try:
            response = flow.response
            cap = _cap(d)
            streamed = stream_media(response.headers.get("content-type"))
            media = streamed or _media(response)
            if cap <= 0 or d.rules.classifier.library is None or media is None:
                _pass_through(response)
                return
            if response.stream:
                # Another addon streams it already: it cannot be held or scanned.
                self.metrics.pages_unscanned.labels("too_large").inc()
                return
            declared = _content_length(response)
            if streamed is not None or (declared is not None and declared > cap):
                self._stream(flow, d, media)
                return
            # Held: mitmproxy buffers the whole body (chunked or not) for `response`. A body of
            # undeclared length cannot be streamed once it grows past the cap: mitmproxy's only
            # per-flow way to stream, `stream` set now, sends the headers at once, so a page
            # within the cap could no longer be replaced whole with a 403. It is scanned whole
            # at `response`, as far as `_HELD_SCAN` reaches.
            d.scan = True
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            self._failed(flow, d, e)

    def response(self, flow: http.HTTPFlow) -> None:
        d = decision_of(flow)
        if d is None or not d.scan:
            return
        d.scan = False
        try:
            self._scan(flow, d)
        except Exception as e:  # noqa: BLE001 - fail closed: never pass an unscanned page
            self._failed(flow, d, e)

    # -- held pages -------------------------------------------------------------------------

    def _scan(self, flow: http.HTTPFlow, d: Decision) -> None:
        started = time.perf_counter()
        response = flow.response
        library = d.rules.classifier.library
        media = _media(response) if response is not None else None
        if response is None or media is None or library is None or d.verdict is None:
            return
        raw = response.raw_content
        if raw == b"":
            return  # nothing to read: a redirect, a 204, a 304
        cap = _cap(d)
        if raw is None:  # streamed after all: nothing held to read
            self.metrics.pages_unscanned.labels("too_large").inc()
            return
        content_type = response.headers.get("content-type", "text/html")
        coding = response.headers.get("content-encoding")
        try:
            # The cap holds once decoded too: it bounds the time the scan takes, and a
            # decompression bomb is never expanded.
            body = decode_body(raw, coding, cap) if len(raw) <= cap else None
            if body is not None:
                flags = self._findings(library, body, content_type, media)
            else:
                # Of undeclared length and over the cap, but all here already: scanned in
                # pieces as a stream is, and still replaced whole.
                flags = self._scan_in_pieces(d, raw, coding, content_type, media)
        except UndecodableError:
            self.metrics.pages_unscanned.labels("undecodable").inc()
            return
        verdict = d.rules.policy.page_verdict(d.verdict, flags, top_phrases(flags))
        outcome = "flagged" if flags else "clean"
        if verdict is not None:
            d.page = verdict
            outcome = "blocked" if verdict.action == BLOCK else "flagged"
            if verdict.action == BLOCK:
                serve_verdict(flow, d.rules, verdict)
        self.metrics.pages_scanned.labels(outcome).inc()
        self.metrics.page_scan_seconds.observe(time.perf_counter() - started)

    def _findings(self, library: KeywordLibrary, body: bytes, content_type: str,
                  media: str) -> tuple[Flag, ...]:
        """The page's flags, from the cache when this library has read these very bytes
        before (see `FindingsCache`)."""
        cache = self._cache
        if cache.library is not library:
            cache.clear(library)
        key = cache.key(body, content_type, media)
        flags = cache.get(key)
        if flags is None:
            self.metrics.page_scan_cache.labels("miss").inc()
            flags = page_findings(library, page_text(text_of(body, content_type), media))
            cache.put(key, flags)
        else:
            self.metrics.page_scan_cache.labels("hit").inc()
        return flags

    def _scan_in_pieces(self, d: Decision, raw: bytes, coding: str | None,
                        content_type: str, media: str) -> tuple[Flag, ...]:
        """The flags of a held body over the cap, scanned as a stream is (`PageStream`) up to
        `_HELD_SCAN` decoded bytes, stopping once they reach the threshold. Raises
        `UndecodableError` only when it is corrupt before anything was flagged."""
        library = d.rules.classifier.library
        verdict = d.verdict
        if library is None or verdict is None:
            return ()
        pieces = _Pieces(library, media, content_type)
        decoder = StreamDecoder(coding)
        seen = 0
        try:
            for piece in _then(decoder.feed(raw), decoder.end()):
                pieces.held += piece
                seen += len(piece)
                if seen >= _HELD_SCAN:
                    break
                _, new = pieces.take(final=False)
                if new:
                    page = d.rules.policy.page_verdict(verdict, pieces.findings.flags, ())
                    if page is not None and page.action == BLOCK:
                        return pieces.findings.flags
        except UndecodableError:
            if not pieces.findings.flags:
                raise
        pieces.take(final=True)
        return pieces.findings.flags

    # -- streamed pages ---------------------------------------------------------------------

    def _stream(self, flow: http.HTTPFlow, d: Decision, media: str) -> None:
        response = flow.response
        assert response is not None  # noqa: S101 - checked by responseheaders
        try:
            decoder = StreamDecoder(response.headers.get("content-encoding"))
        except UndecodableError:
            response.stream = True  # no browser reads it either: sent as it is, counted
            self.metrics.pages_unscanned.labels("undecodable").inc()
            return
        if not decoder.identity:
            # Sent decoded: the notice is written into the body (see the module's docstring).
            del response.headers["content-encoding"]
        if "content-length" in response.headers:
            del response.headers["content-length"]
            if not (response.is_http2 or response.is_http3):
                response.headers["transfer-encoding"] = "chunked"
        response.headers["cache-control"] = "no-store"  # a cut copy must never be cached
        response.stream = _Stream(self, flow, d, media, decoder)
        self.metrics.streams_scanned.inc()

    def _failed(self, flow: http.HTTPFlow, d: Decision, e: BaseException) -> None:
        fail_closed(self.gateway, flow, "scan", e)
        # The request's allow is recorded already; the page's failure is its own record.
        d.page = d.verdict


class FindingsCache:
    """The flags of the pages this worker scanned last, by a digest of the decoded body, for one
    library (a reload brings a new library and an empty cache).

    Why: a school's pupils read the same pages (a class of thirty opens the lesson's page within
    a minute; a site's shared pages recur), and a page's findings depend only on its bytes and
    the library, never on who asked: the verdict is still made per request, for the
    asker's group. A digest of 50 KB costs about 30 µs against about 2.5 ms to scan it. Pages that
    differ on every load (a clock, a token, an advert) are scanned every time. Held in memory
    only: the flags (the library's phrases and the few words they matched), never a page."""

    SIZE = 4096

    def __init__(self) -> None:
        self.library: KeywordLibrary | None = None
        self._flags: OrderedDict[bytes, tuple[Flag, ...]] = OrderedDict()

    def clear(self, library: KeywordLibrary) -> None:
        self.library = library
        self._flags.clear()

    @staticmethod
    def key(body: bytes, content_type: str, media: str) -> bytes:
        h = hashlib.blake2b(body, digest_size=16)
        h.update(b"\0" + content_type.encode("latin-1", "replace") + b"\0" + media.encode())
        return h.digest()

    def get(self, key: bytes) -> tuple[Flag, ...] | None:
        flags = self._flags.get(key)
        if flags is not None:
            self._flags.move_to_end(key)
        return flags

    def put(self, key: bytes, flags: tuple[Flag, ...]) -> None:
        self._flags[key] = flags
        if len(self._flags) > self.SIZE:
            self._flags.popitem(last=False)


_HELD_SCAN = 8 * 1024 * 1024
"""How much of a held body of undeclared length, over the cap, is scanned (decoded bytes): it is
in memory already (mitmproxy held it), but its scan runs on the worker's event loop, about 45 ms
per megabyte; the largest cap a group may set."""


def _then(first: Iterator[bytes], second: Iterator[bytes]) -> Iterator[bytes]:
    yield from first
    yield from second


class _Pieces:
    """A body read a piece at a time, for a stream and for a held body over the cap alike:
    decoded bytes are held until they end at a whole tag, event or word (`ready_part`), then
    read in the body's charset, reduced to text (`StreamText`) and scored (`PageStream`)."""

    def __init__(self, library: KeywordLibrary, media: str, content_type: str) -> None:
        self.media = media
        self.content_type = content_type
        self.findings = PageStream(library)
        self.reader = StreamText(media)
        self.held = b""
        """Decoded bytes not yet read."""
        self.hidden_before: str | None = None
        """The hidden element (`script`...) the bytes before the last ones read ended inside."""
        self._chars: codecs.IncrementalDecoder | None = None

    def take(self, final: bool) -> tuple[bytes, bool]:
        """Read what is ready of the held bytes (all of them when `final`): those bytes, and
        whether they brought a phrase not seen before."""
        cut = ready_part(self.held, self.media, final)
        ready, self.held = self.held[:cut], self.held[cut:]
        new = False
        if ready:
            if self._chars is None:
                self._chars = codecs.getincrementaldecoder(
                    charset_of(self.content_type, ready))(errors="replace")
            self.hidden_before = self.reader.hidden
            new = self.findings.feed(self.reader.feed(self._chars.decode(ready, final=final)),
                                     complete=self.media != "text/event-stream")
        if final:
            new = self.findings.end() or new
        return ready, new


class _Stream:
    """mitmproxy's `response.stream` for one scanned stream: called with each chunk as it
    arrives (b"" at the end), returns what to send on."""

    def __init__(self, scan: ScanPages, flow: http.HTTPFlow, d: Decision, media: str,
                 decoder: StreamDecoder) -> None:
        library = d.rules.classifier.library
        assert library is not None  # noqa: S101 - checked by responseheaders
        self.scan = scan
        self.flow = flow
        self.d = d
        self.media = media
        self.decoder = decoder
        self.pieces = _Pieces(library, media, flow.response.headers.get("content-type", "")
                              if flow.response else "")
        self.waiting: list[bytes] = []
        """A piece held back until the next says whether its last word is over."""
        self.cut = False
        self.seconds = 0.0

    def __call__(self, data: bytes) -> bytes | list[bytes]:
        if self.cut:
            return b""  # the rest of a cut stream is dropped
        started = time.perf_counter()
        final = data == b""
        try:
            out = self._pieces(data, final)
        except Exception as e:  # noqa: BLE001 - fail closed: cut, never pass it unscanned
            self.scan.gateway.fail_closed("scan", e)
            out = self._cut(None)
        self.seconds += time.perf_counter() - started
        if final and not self.cut:
            self._finish()
        return out

    def _pieces(self, data: bytes, final: bool) -> list[bytes]:
        out: list[bytes] = []
        try:
            pieces = _then(self.decoder.feed(data), self.decoder.end()) if final \
                else self.decoder.feed(data)
            for piece in pieces:
                self.pieces.held += piece
                if (sent := self._ready(final=False)) is None:
                    return [*out, *self._cut(self.d.page)]
                out += sent
        except UndecodableError:
            # Corrupt on the way: what was scanned is sent; the rest no browser could read.
            self.scan.metrics.pages_unscanned.labels("undecodable").inc()
            return [*out, *self._cut(None, undecodable=True)]
        if final:
            if (sent := self._ready(final=True)) is None:
                return [*out, *self._cut(self.d.page)]
            out += sent
        return out

    def _ready(self, final: bool) -> list[bytes] | None:
        """Scan what can be scanned of the held bytes; what to send, or None when the score
        reached the threshold (the held bytes are then never sent)."""
        ready, new = self.pieces.take(final)
        if not ready and not final:
            return []
        d = self.d
        assert d.verdict is not None  # noqa: S101 - an allowed flow has one
        findings = self.pieces.findings
        if new:
            flags = findings.flags
            d.page = d.rules.policy.page_verdict(d.verdict, flags, top_phrases(flags))
            if d.page is not None and d.page.action == BLOCK:
                return None  # neither this piece nor one held back is sent
        sent, self.waiting = [*self.waiting, *([ready] if ready else [])], []
        if ready and not final and self.media == "text/event-stream":
            # A chat answer's last word may not be over ("mother" + "fucker", or "ass" +
            # "essment"). If its ending here would cross the threshold, this piece waits for
            # the next, which says which: held back one piece at most, never more.
            flags = findings.if_ended()
            if len(flags) > len(findings.flags):
                page = d.rules.policy.page_verdict(d.verdict, flags, ())
                if page is not None and page.action == BLOCK:
                    self.waiting = [sent.pop()]
        return sent

    def _cut(self, verdict: Verdict | None, undecodable: bool = False) -> list[bytes]:
        """Stop the stream: the notice in place of the offending piece, the event recorded now
        (the `response` hook comes only when the server ends the stream)."""
        self.cut = True
        d = self.d
        scan = self.scan
        if verdict is None and not undecodable and d.verdict is not None:
            # A failure: the rest is not sent unscanned; recorded as the filtering error it is.
            d.page = Policy.failed(d.verdict.group, "scan")
            record_page(scan.gateway, self.flow)
            count_page(scan.metrics, self.flow)
            return []
        if verdict is not None and verdict.action == BLOCK:
            scan.metrics.pages_scanned.labels("blocked").inc()
            scan.metrics.streams_cut.inc()
            record_page(scan.gateway, self.flow)
            count_page(scan.metrics, self.flow)
            log.info("cut a streamed page (%s, reference %s)", verdict.theme, verdict.reference)
            return [self._notice(verdict)]
        return []

    def _notice(self, verdict: Verdict) -> bytes:
        text = self.d.rules.block_page.notice(verdict)
        if self.media == "text/event-stream":
            return event_notice(self.pieces.reader.template, text, self.pieces.reader.done)
        # Plain ASCII (entities in HTML): the page's own charset may not be UTF-8.
        if self.media in ("text/html", "application/xhtml+xml"):
            hidden = self.pieces.hidden_before
            close = f"</{hidden}>" if hidden else ""
            return (f"{close}<div role=\"alert\" style=\"margin:1em;padding:1em;border:3px solid "
                    f"#b3261e;font:16px/1.4 system-ui,sans-serif;color:#000;background:#fff\">"
                    f"{html.escape(text)}</div>").encode("ascii", "xmlcharrefreplace")
        return f"\n\n[{text}]\n".encode("ascii", "replace")

    def _finish(self) -> None:
        """The server ended an uncut stream: its outcome counted; its verdict (a flagged
        allow, or none) is recorded at `response`, which follows."""
        outcome = "flagged" if self.pieces.findings.flags else "clean"
        self.scan.metrics.pages_scanned.labels(outcome).inc()
        self.scan.metrics.page_scan_seconds.observe(self.seconds)


PASS_HELD = 1024 * 1024
"""A body that is not scanned is held (mitmproxy's way, whole, then sent) only up to this
declared length; a larger one, or one of undeclared length, is sent on as it arrives."""


def _pass_through(response: http.Response) -> None:
    """A body that is not scanned: sent on as it arrives unless it is small and says so.
    Without this, mitmproxy holds every response whole before the browser gets a byte: a
    500 MB download or a video would sit in a worker's memory, and a long one would seem
    to hang. Small bodies of declared length stay held: streaming costs a little per
    response, and they are sent at once anyway."""
    if response.stream:
        return
    declared = _content_length(response)
    if declared is None or declared > PASS_HELD:
        response.stream = True


def _allowed(d: Decision) -> bool:
    """A request let through to a server by its verdict: never a block page, a check's answer
    or a page the gateway makes itself (mitmproxy runs the response hooks for those too)."""
    return (d.verdict is not None and d.verdict.action == ALLOW and d.check is None
            and not d.own_page)


def _cap(d: Decision) -> int:
    if d.verdict is None:
        return 0
    return d.rules.policy.group(d.verdict.group).page_scan_bytes


def _media(response: http.Response | None) -> str | None:
    """The scanned media type of the response, or None. No Content-Type at all: browsers sniff
    it, and would show HTML as a page, so it is scanned as HTML."""
    if response is None:
        return None
    content_type = response.headers.get("content-type")
    return "text/html" if content_type is None else scanned_type(content_type)


def _content_length(response: http.Response) -> int | None:
    try:
        value = int(response.headers.get("content-length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None
