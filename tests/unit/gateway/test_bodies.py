"""Bodies decoded as they arrive (#16 point 4): every content coding a browser reads, in chunks
of every size, stacked, cut short and corrupt; and the charset a browser would read."""

from __future__ import annotations

import gzip
import os
import random
import zlib

import brotli  # type: ignore[import-untyped]
import pytest
from mitmproxy.net.encoding import zstd

from schoolgate.gateway.bodies import PIECE, StreamDecoder, UndecodableError, charset_of

BODY = os.urandom(3000).hex().encode() * 200 + b"<p>the end</p>"  # 1.2 MB, some repeats


def _raw_deflate(data: bytes) -> bytes:
    z = zlib.compressobj(wbits=-15)
    return z.compress(data) + z.flush()


CODINGS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "raw deflate": _raw_deflate,
    "br": brotli.compress,
    "zstd": zstd.compress,
    "gzip, br": lambda d: brotli.compress(gzip.compress(d)),
    "identity": lambda d: d,
}


def _decode(coding: str, raw: bytes, sizes: random.Random) -> list[bytes]:
    decoder = StreamDecoder("deflate" if coding == "raw deflate" else coding)
    out: list[bytes] = []
    at = 0
    while at < len(raw):
        n = sizes.choice((1, 7, 100, 4096, 65536))
        out += decoder.feed(raw[at:at + n])
        at += n
    out += decoder.end()
    return out


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("seed", range(3))
def test_a_body_in_chunks_decodes_to_itself_in_bounded_pieces(coding, seed):
    raw = CODINGS[coding](BODY)
    pieces = _decode(coding, raw, random.Random(seed))
    assert b"".join(pieces) == BODY
    if coding != "identity":  # identity passes each chunk as it came
        assert max(map(len, pieces)) <= 2 * PIECE


def test_a_bomb_comes_out_in_pieces():
    bomb = gzip.compress(b"a" * (20 * PIECE))
    assert len(bomb) < 30_000
    pieces = list(StreamDecoder("gzip").feed(bomb))
    assert len(pieces) >= 20 and max(map(len, pieces)) <= PIECE


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_a_body_cut_short_or_corrupt_is_undecodable(coding):
    raw = CODINGS[coding](BODY)
    decoder = StreamDecoder(coding)
    list(decoder.feed(raw[: len(raw) // 2]))
    with pytest.raises(UndecodableError, match="ends early"):
        list(decoder.end())
    with pytest.raises(UndecodableError):
        decoder = StreamDecoder(coding)
        list(decoder.feed(b"this is not compressed at all" * 10))
        list(decoder.end())


def test_an_unknown_coding_is_undecodable():
    with pytest.raises(UndecodableError, match="compress"):
        StreamDecoder("compress")
    assert StreamDecoder(" identity ").identity


@pytest.mark.parametrize(("content_type", "start", "charset"), [
    ("text/html; charset=ISO-8859-1", b"", "cp1252"),  # as browsers read Latin-1
    ("text/html; charset=us-ascii", b"", "cp1252"),
    ("text/html", b'<meta charset="windows-1252">', "cp1252"),
    ("text/html; charset=shift_jis", b"", "shift_jis"),
    ("text/plain; charset=no-such-charset", b"", "utf-8"),
    ("application/json", b"{}", "utf-8"),
])
def test_the_charset_is_the_one_a_browser_reads(content_type, start, charset):
    assert charset_of(content_type, start) == charset
