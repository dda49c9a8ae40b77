"""Page scanning's cost on a ~100 KB HTML page (#16 point 3): visible text with selectolax,
the normaliser, the shipped keyword library's automaton, and the whole scan as ScanPages runs
it (gzip undone, charset, text, findings, score). Printed per page (µs) and as throughput of the
page's HTML (MB/s), so the later throughput goal can be checked against it.
"""

from __future__ import annotations

import gzip
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = int(os.environ.get("BENCH_PAGE_ROUNDS", "200"))


def make_page(size: int = 100_000, seed: int = 3) -> str:
    """An HTML page like a news article: a head with styles and scripts, navigation, paragraphs
    with links and attributes, a few library phrases in passing."""
    rng = random.Random(seed)
    words = ("the school said pupils would learn about volcanoes history maths science lesson "
             "teacher report government weather football music health support young people "
             "community local council library project results parents week year").split()
    phrases = ["self harm support", "buy weed", "suicide", "how to make a bomb", "porn"]
    head = ("<!doctype html><html><head><meta charset='utf-8'><title>Local news</title>"
            "<style>" + "p{margin:0 0 1em}.nav a{color:#333}" * 40 + "</style>"
            "<script>" + "window.dataLayer=window.dataLayer||[];function g(){}" * 60
            + "</script></head><body><nav class='nav'>"
            + "".join(f"<a href='/s/{i}' class='link' data-id='{i}'>{rng.choice(words)}</a>"
                      for i in range(40)) + "</nav><main>")
    parts = [head]
    length = len(head)
    while length < size:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(8, 20)))
        if rng.random() < 0.02:
            sentence += " " + rng.choice(phrases)
        p = (f"<p class='body' data-track='x'>{sentence.capitalize()}. "
             f"<a href='https://example.org/{rng.randint(0, 10**6)}'>more</a></p>\n")
        parts.append(p)
        length += len(p)
    parts.append("</main><script>console.log('end')</script></body></html>")
    return "".join(parts)


def timed(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    """Seconds per call: the best of three runs of `rounds` calls."""
    fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - start) / rounds)
    return best


def main() -> None:
    from schoolgate.classify.keywords import normalise_text
    from schoolgate.classify.pages import page_findings, page_text, top_phrases
    from schoolgate.gateway.bodies import decode_body, text_of
    from schoolgate.policy import Policy
    from schoolgate.sources.keywords import load_library

    library = load_library(ROOT / "keywords")
    html = make_page()
    raw = html.encode("utf-8")
    compressed = gzip.compress(raw)
    text = page_text(html, "text/html")
    normalised = normalise_text(text)

    def whole() -> float:
        body = decode_body(compressed, "gzip", 16 * 2**20)
        assert body is not None
        flags = page_findings(library, page_text(text_of(body, "text/html"), "text/html"))
        top_phrases(flags)
        return Policy.keyword_score(flags)

    rows = [
        ("visible text (selectolax)", lambda: page_text(html, "text/html")),
        ("normalise_text", lambda: normalise_text(text)),
        ("library.match (normalised)", lambda: library.match(normalised, normalised=True)),
        ("page_findings (normalise + match)", lambda: page_findings(library, text)),
        ("whole scan (gunzip, charset, text, findings, score)", whole),
    ]
    print(f"page scanning: a {len(raw) / 1000:.0f} KB HTML page ({len(compressed) / 1000:.0f} KB "
          f"gzipped), {len(text) / 1000:.0f} KB of visible text; the shipped library, "
          f"{len(library)} phrases; best of 3 x {ROUNDS}")
    for name, fn in rows:
        seconds = timed(fn)
        print(f"  {name:<52} {seconds * 1e6:>9,.0f} µs  {len(raw) / seconds / 1e6:>7.1f} MB/s")
    print(f"  score of the page: {whole():g}")


if __name__ == "__main__":
    sys.exit(main())
