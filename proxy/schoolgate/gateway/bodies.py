"""Response bodies as text: content encodings (gzip, deflate, br, zstd) undone, whole or as they
arrive, and the charset read as a browser reads it. Used by page scanning (addons/scan.py).

Why our own decoding and not mitmproxy's: mitmproxy decodes a whole body at once with no limit,
so a small compressed body could expand without end in a worker's memory, and it has no decoder
that takes a body a chunk at a time. Here every step is bounded: a whole body to the group's cap,
a streamed one in pieces of at most `PIECE` bytes.
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Iterator

import brotli  # type: ignore[import-untyped]
from mitmproxy.net.encoding import zstd  # the stdlib's (3.14) or its backport, as mitmproxy
from mitmproxy.net.http.headers import infer_content_encoding

__all__ = ["PIECE", "StreamDecoder", "UndecodableError", "charset_of", "codings_of",
           "decode_body", "text_of"]

PIECE = 256 * 1024
"""The most a streamed body's decoder gives out at once: a chunk that expands a thousandfold
comes out in pieces, each scanned and sent before the next is made."""


class UndecodableError(ValueError):
    """The body's content encoding is one no browser reads, or the body is corrupt: a browser
    shows nothing of it either, so it passes unscanned (and counted)."""


def codings_of(content_encoding: str | None) -> list[str]:
    """The content codings to undo, in the order to undo them (the header lists them in the
    order they were applied); `identity` left out."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    return [c for c in reversed(codings) if c != "identity"]


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes | None:
    """`raw` with its content encodings undone, or None when it decodes to more than `limit`
    bytes: decoded in bounded steps, so a small compressed body can never expand in memory
    without end, as mitmproxy's own decoding would. Raises `UndecodableError`."""
    body = raw
    for coding in codings_of(content_encoding):
        try:
            if coding in ("gzip", "x-gzip", "deflate"):
                # 47: gzip or zlib headers detected; a raw deflate stream (some servers send
                # one as `deflate`) needs -15.
                try:
                    body = zlib.decompressobj(47).decompress(body, limit + 1)
                except zlib.error:
                    body = zlib.decompressobj(-15).decompress(body, limit + 1)
            elif coding == "br":
                out = brotli.Decompressor()
                body = out.process(body, output_buffer_limit=limit + 1)
                if len(body) <= limit and not out.is_finished():
                    raise UndecodableError("a brotli body that ends early")
            elif coding == "zstd":
                body = zstd.ZstdDecompressor().decompress(body, max_length=limit + 1)
            else:
                raise UndecodableError(f"unknown content encoding {coding!r}")
        except (zlib.error, brotli.error, zstd.ZstdError, EOFError) as e:
            raise UndecodableError(f"{coding}: {e}") from None
        if len(body) > limit:
            return None
    return body


class _Step:
    """One content coding undone a chunk at a time, giving out at most `PIECE` bytes a call."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._pending = b""
        self._zlib: zlib._Decompress | None = None
        self._brotli: brotli.Decompressor | None = None
        self._zstd: zstd.ZstdDecompressor | None = None
        if coding in ("gzip", "x-gzip", "deflate"):
            self._zlib = zlib.decompressobj(47)
            self._first = True
        elif coding == "br":
            self._brotli = brotli.Decompressor()
        elif coding == "zstd":
            self._zstd = zstd.ZstdDecompressor()
        else:
            raise UndecodableError(f"unknown content encoding {coding!r}")

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            if self._zlib is not None:
                yield from self._inflate(self._zlib, data)
            elif self._brotli is not None:
                b = self._brotli
                out = b.process(data, output_buffer_limit=PIECE)
                while True:
                    if out:
                        yield out
                    if b.can_accept_more_data() or b.is_finished():
                        break
                    out = b.process(b"", output_buffer_limit=PIECE)
            elif self._zstd is not None:
                z = self._zstd
                if z.eof:
                    return  # what follows the frame's end is not the body's
                out = z.decompress(data, max_length=PIECE)
                while True:
                    if out:
                        yield out
                    if z.eof or z.needs_input:
                        break
                    out = z.decompress(b"", max_length=PIECE)
        except (zlib.error, brotli.error, zstd.ZstdError, EOFError) as e:
            raise UndecodableError(f"{self.coding}: {e}") from None

    def _inflate(self, z: zlib._Decompress, data: bytes) -> Iterator[bytes]:
        if self._first:
            # Which of gzip, zlib or raw deflate (some servers send one as `deflate`) shows in
            # the first two bytes: held until there are two.
            data = self._pending + data
            if len(data) < 2:
                self._pending = data
                return
            self._first, self._pending = False, b""
            try:
                out = z.decompress(data, PIECE)
            except zlib.error:
                z = self._zlib = zlib.decompressobj(-15)
                out = z.decompress(data, PIECE)
        else:
            out = z.decompress(data, PIECE)
        while True:
            if out:
                yield out
            if not z.unconsumed_tail:
                break
            out = z.decompress(z.unconsumed_tail, PIECE)

    def end(self) -> Iterator[bytes]:
        """What is left, and an error when the body stopped short of its coding's end."""
        if self._zlib is not None:
            if not self._zlib.eof:
                tail = self._zlib.flush()
                if tail:
                    yield tail
                if not self._zlib.eof:
                    raise UndecodableError(f"{self.coding}: the body ends early")
        elif self._brotli is not None:
            b = self._brotli
            try:
                while not b.is_finished():
                    out = b.process(b"", output_buffer_limit=PIECE)
                    if not out:
                        break
                    yield out
            except brotli.error as e:
                raise UndecodableError(f"br: {e}") from None
            if not b.is_finished():
                raise UndecodableError("br: the body ends early")
        elif self._zstd is not None:
            z = self._zstd
            try:
                while not z.eof and not z.needs_input:
                    out = z.decompress(b"", max_length=PIECE)
                    if not out:
                        break
                    yield out
            except zstd.ZstdError as e:
                raise UndecodableError(f"zstd: {e}") from None
            if not z.eof:
                raise UndecodableError("zstd: the body ends early")


class StreamDecoder:
    """A body's content encodings undone as its chunks arrive (`feed`), then `end`. Each call
    gives the decoded bytes in pieces of at most `PIECE` bytes (more when several codings are
    stacked, never without bound). Raises `UndecodableError` on an unknown coding or a corrupt
    body."""

    def __init__(self, content_encoding: str | None) -> None:
        self._steps = [_Step(c) for c in codings_of(content_encoding)]

    @property
    def identity(self) -> bool:
        """True when nothing is encoded: the chunks are the body as they are."""
        return not self._steps

    def feed(self, data: bytes) -> Iterator[bytes]:
        yield from self._through(0, data)

    def end(self) -> Iterator[bytes]:
        for i, step in enumerate(self._steps):
            for piece in step.end():
                yield from self._through(i + 1, piece)

    def _through(self, first: int, data: bytes) -> Iterator[bytes]:
        if first == len(self._steps):
            if data:
                yield data
            return
        for piece in self._steps[first].feed(data):
            yield from self._through(first + 1, piece)


_WINDOWS_1252 = frozenset({"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "ascii",
                           "us-ascii", "windows-1252", "cp1252"})


def charset_of(content_type: str, body_start: bytes) -> str:
    """The charset to read a body in, as mitmproxy's `get_text` finds it (the header's, an HTML
    `<meta>`, UTF-8 for JSON...), with one correction browsers make (WHATWG Encoding): a page
    labelled Latin-1 or ASCII is read as windows-1252, whose curly quotes and dashes Latin-1
    leaves as control characters. A charset Python does not know is read as UTF-8."""
    charset = infer_content_encoding(content_type, body_start)
    if charset.lower().replace("_", "-") in _WINDOWS_1252:
        return "cp1252"
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return "utf-8"


def text_of(body: bytes, content_type: str) -> str:
    """The body as text in its charset (`charset_of`); what does not decode is replaced, never
    an error."""
    return body.decode(charset_of(content_type, body), "replace")
