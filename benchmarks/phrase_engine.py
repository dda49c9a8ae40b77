"""The phrase engine's cost (#16 point 6): text scanned per second with 5,000 weighted phrases
and 500 combination rules, and a search term scored, against the same phrases without the
combinations in the same run (the baseline: what combinations add).

- Text: a deterministic 100 KB page of ordinary words with, here and there, a phrase or a
  combination member; scanned through `KeywordLibrary.explain` (normalise, one automaton pass,
  suppression, combinations), the code page scanning and searches share. HTML extraction is
  measured apart, by the page-scanning benchmark.
- Searches: the labelled set's searches (tests/data/labelled_searches.tsv) through the
  gateway's search path with the shipped library: `extract_search`, `library.match` on the
  normalised term, `Policy.keyword_score`.

Thread CPU time, median of 7 rounds.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "proxy"))

from schoolgate.classify.keywords import Member, Phrase, normalise_text  # noqa: E402
from schoolgate.classify.library import Combination, KeywordLibrary  # noqa: E402
from schoolgate.classify.search import extract_search  # noqa: E402
from schoolgate.events import THEMES  # noqa: E402
from schoolgate.policy import Policy  # noqa: E402
from schoolgate.sources.keywords import load_library  # noqa: E402

SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fe", "go", "hu", "ji",
             "pe", "qu", "ro", "su", "te", "wa", "xe", "yo", "zu", "an", "el", "in", "on", "ur")
COMMON = ("the", "a", "of", "and", "to", "in", "is", "for", "on", "with", "as", "by", "at",
          "this", "that", "from", "page", "school", "news", "sport", "article", "video", "more")
ROUNDS = 7


def word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def synthetic(phrases: int, combinations: int, seed: int = 16) -> tuple[KeywordLibrary,
                                                                       list[str]]:
    """A library of `phrases` weighted phrases (1-3 words, weights from -3 to 5) and
    `combinations` rules (2-3 groups of 3-8 words, within 8), and the words they use."""
    rng = random.Random(seed)
    used: list[str] = []
    built: dict[str, Phrase] = {}
    while len(built) < phrases:
        text = " ".join(word(rng) for _ in range(rng.randint(1, 3)))
        built.setdefault(normalise_text(text), Phrase.of(
            text, theme=rng.choice(THEMES), severity=rng.choice(("high", "medium", "low")),
            weight=rng.choice((-3, -1, 1, 1, 2, 5))))
    used += [p.text for p in list(built.values())[:200]]
    combos = []
    for n in range(combinations):
        groups = tuple(tuple(Member(normalise_text(word(rng))) for _ in range(rng.randint(3, 8)))
                       for _ in range(rng.randint(2, 3)))
        combos.append(Combination(f"rule {n}", rng.choice(THEMES), "medium", groups, within=8,
                                  source=f"synthetic:{n}"))
        used += [g[0].normalised for g in groups]
    return KeywordLibrary(((p, "synthetic", {}) for p in built.values()),
                          combinations=combos), used


def page(used: list[str], size: int = 100_000, seed: int = 7) -> str:
    """Ordinary words, with one phrase or member in about every 40 words."""
    rng = random.Random(seed)
    out: list[str] = []
    length = 0
    while length < size:
        w = rng.choice(used) if rng.random() < 0.025 else rng.choice(COMMON + (word(rng),))
        out.append(w)
        length += len(w) + 1
    return " ".join(out)


def cpu_time(fn, repeat: int) -> float:
    start = time.thread_time()
    for _ in range(repeat):
        fn()
    return (time.thread_time() - start) / repeat


def median_of_rounds(fn, repeat: int) -> float:
    return statistics.median(cpu_time(fn, repeat) for _ in range(ROUNDS))


def searches() -> list[str]:
    table = ROOT / "tests" / "data" / "labelled_searches.tsv"
    with table.open(encoding="utf-8", newline="") as f:
        return [r["search"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phrases", type=int, default=5000)
    parser.add_argument("--combinations", type=int, default=500)
    args = parser.parse_args(argv)

    full, used = synthetic(args.phrases, args.combinations)
    plain = KeywordLibrary((p, "synthetic", {}) for p in full.phrases)
    text = page(used)
    megabytes = len(text.encode("utf-8")) / 1e6
    found = full.explain(text)
    combined = sum(f.combination for f in found.flags)
    print(f"phrase engine: {len(full.phrases):,} weighted phrases, {len(full.combinations)} "
          f"combination rules ({len(full.keyword_set.members):,} member words), a "
          f"{megabytes * 1000:.0f} KB page ({len(found.flags)} flags, {combined} from "
          f"combinations); thread CPU, median of {ROUNDS} rounds")
    t_full = median_of_rounds(lambda: full.explain(text), 5)
    t_plain = median_of_rounds(lambda: plain.explain(text), 5)
    print(f"  page, phrases and combinations   {megabytes / t_full:8.1f} MB/s per core "
          f"({t_full * 1000:.1f} ms a page)")
    print(f"  page, the phrases alone           {megabytes / t_plain:8.1f} MB/s per core "
          f"({t_plain * 1000:.1f} ms a page)")
    print(f"  combinations cost                 {t_full / t_plain:8.2f}x the phrases alone")

    shipped = load_library(ROOT / "keywords")
    terms = []
    for text in searches():
        s = extract_search("GET", "www.google.com", "/search?q=" + urllib.parse.quote_plus(text))
        if s is not None and s.normalised:
            terms.append(s.normalised)

    def score_all(lib: KeywordLibrary) -> None:
        for term in terms:
            Policy.keyword_score(lib.match(term, normalised=True))

    shipped_plain = KeywordLibrary(
        (p, "shipped", {}) for p in shipped.keyword_set.phrases)
    t_search = median_of_rounds(lambda: score_all(shipped), 3) / len(terms)
    t_search_plain = median_of_rounds(lambda: score_all(shipped_plain), 3) / len(terms)
    print(f"search terms ({len(terms)} from the labelled set), the shipped library "
          f"({len(shipped.phrases):,} phrases, {len(shipped.keyword_set.phrases):,} with "
          f"misspellings, {len(shipped.combinations)} combinations):")
    print(f"  scored, phrases and combinations  {t_search * 1e6:8.1f} us a search")
    print(f"  scored, the phrases alone         {t_search_plain * 1e6:8.1f} us a search "
          f"({t_search / t_search_plain:.2f}x)")


if __name__ == "__main__":
    main(sys.argv[1:])
