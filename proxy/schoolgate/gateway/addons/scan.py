"""ScanPages: hold an allowed HTML, plain-text or JSON page up to its group's `page_scan`
size, score its text with the keyword library, and replace it whole with the block page when
the score reaches the group's `keyword_threshold`.

Decided at `responseheaders` (scan or not: mitmproxy buffers a response unless `stream` is
set), scanned at `response`. Not yet (a later part of #16): pages sent as a stream (server-sent
events, AI chat output) and pages larger than the cap are passed through unscanned and counted in
`schoolgate_pages_unscanned_total{reason}`.
"""

from __future__ import annotations

import time
import zlib

import brotli  # type: ignore[import-untyped]
from mitmproxy import http
from mitmproxy.net.encoding import zstd  # the stdlib's (3.14) or its backport, as mitmproxy
from mitmproxy.net.http.headers import infer_content_encoding

from ...classify.pages import page_findings, page_text, scanned_type, top_phrases
from ...policy import ALLOW, BLOCK
from ..decision import Decision
from ..service import Gateway
from . import decision_of, fail_closed, serve_verdict

__all__ = ["ScanPages", "UndecodableError", "decode_body"]


class UndecodableError(ValueError):
    """The body's content encoding is one no browser reads, or the body is corrupt: a browser
    shows nothing of it either, so it passes unscanned (and counted)."""


class ScanPages:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.metrics = gateway.metrics

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        d = decision_of(flow)
        if d is None or not _allowed(d) or flow.response is None:
            return
        try:
            response = flow.response
            cap = _cap(d)
            if cap <= 0 or d.rules.classifier.library is None or _media(response) is None:
                return
            if response.stream:
                # mitmproxy's own `stream_large_bodies` (unset by Schoolgate) or another addon
                # streams it: it cannot be held.
                self.metrics.pages_unscanned.labels("too_large").inc()
                return
            declared = _content_length(response)
            if declared is not None and declared > cap:
                # Not held: sent on as it arrives, unscanned (a later part of #16 scans streams).
                response.stream = True
                self.metrics.pages_unscanned.labels("too_large").inc()
                return
            # Held: mitmproxy buffers the whole body (chunked or not) for `response`. A chunked
            # body that grows past the cap is still buffered whole, as mitmproxy buffers every
            # response Schoolgate does not stream (its only per-flow
            # alternative, `stream` set now, sends the headers at once, so the page could no
            # longer be replaced; its `stream_large_bodies` is global and would also stream
            # request bodies past Enforce's body check), and passed unscanned at `response`.
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

    def _scan(self, flow: http.HTTPFlow, d: Decision) -> None:
        started = time.perf_counter()
        response = flow.response
        library = d.rules.classifier.library
        media = _media(response) if response is not None else None
        if response is None or media is None or library is None or d.verdict is None:
            return
        cap = _cap(d)
        raw = response.raw_content
        if raw == b"":
            return  # nothing to read: a redirect, a 204, a 304
        if raw is None or len(raw) > cap:
            self.metrics.pages_unscanned.labels("too_large").inc()
            return
        try:
            # The cap holds once decoded too: it bounds the time the scan takes (about 10 ms
            # per 100 KB of HTML), and a decompression bomb is never expanded.
            body = decode_body(raw, response.headers.get("content-encoding"), cap)
        except UndecodableError:
            self.metrics.pages_unscanned.labels("undecodable").inc()
            return
        if body is None:
            self.metrics.pages_unscanned.labels("too_large").inc()
            return
        text = page_text(_text(body, response.headers.get("content-type", "text/html")), media)
        flags = page_findings(library, text)
        page = d.rules.policy.page_verdict(d.verdict, flags, top_phrases(flags))
        if page is None:
            outcome = "flagged" if flags else "clean"
        else:
            d.page = page
            outcome = "blocked" if page.action == BLOCK else "flagged"
            if page.action == BLOCK:
                serve_verdict(flow, d.rules, page)
        self.metrics.pages_scanned.labels(outcome).inc()
        self.metrics.page_scan_seconds.observe(time.perf_counter() - started)

    def _failed(self, flow: http.HTTPFlow, d: Decision, e: BaseException) -> None:
        fail_closed(self.gateway, flow, "scan", e)
        # The request's allow is recorded already; the page's failure is its own record.
        d.page = d.verdict


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes | None:
    """`raw` with its content encodings undone (`gzip`, `deflate`, `br`, `zstd`, in the order
    the header lists them), or None when it decodes to more than `limit` bytes: decoded in
    bounded steps, so a small compressed body can never expand in memory without end, as
    mitmproxy's own decoding would. Raises `UndecodableError`."""
    body = raw
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        try:
            if coding in ("gzip", "x-gzip", "deflate"):
                # 47: gzip or zlib headers detected; a raw deflate stream (some servers send
                # one as `deflate`) needs -15.
                try:
                    body = _inflate(body, 47, limit)
                except zlib.error:
                    body = _inflate(body, -15, limit)
            elif coding == "br":
                out = brotli.Decompressor()
                body = out.process(body, output_buffer_limit=limit + 1)
                if len(body) <= limit and not out.is_finished():
                    raise UndecodableError("a brotli body that ends early")
            elif coding == "zstd":
                z = zstd.ZstdDecompressor()
                body = z.decompress(body, max_length=limit + 1)
            else:
                raise UndecodableError(f"unknown content encoding {coding!r}")
        except (zlib.error, brotli.error, zstd.ZstdError, EOFError) as e:
            raise UndecodableError(f"{coding}: {e}") from None
        if len(body) > limit:
            return None
    return body


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    z = zlib.decompressobj(wbits)
    return z.decompress(data, limit + 1)


def _text(body: bytes, content_type: str) -> str:
    """The body as text, in the charset the header (or an HTML `<meta>`) names, as mitmproxy's
    `get_text` reads it; what does not decode is replaced, never an error."""
    charset = infer_content_encoding(content_type, body)
    # As browsers do (WHATWG Encoding): a page labelled Latin-1 or ASCII is read as
    # windows-1252, whose curly quotes and dashes Latin-1 leaves as control characters.
    if charset.lower().replace("_", "-") in _WINDOWS_1252:
        charset = "cp1252"
    try:
        return body.decode(charset, "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", "replace")


_WINDOWS_1252 = frozenset({"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "ascii",
                           "us-ascii", "windows-1252", "cp1252"})


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
