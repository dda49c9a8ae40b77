"""The whole classification of one request, as the gateway runs it: canonicalise, 100,000-entry
hashed IWF-style list, the full UT1 set (domains, URL lists, expressions) and a 5,000-phrase
keyword set, over 200,000 realistic URLs (20 % searches). Baseline in the same run: the naive
classifier (a Python set walked over parent domains, URL prefixes from a dict, `re.search` per
expression), which does less work (no canonicalisation, no illegal list, no keywords).
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import classify_index as ci  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UT1 = ROOT.parent / "shared" / "data" / "ut1"
URLS = int(os.environ.get("BENCH_URLS", "200000"))


def _keyword_set():
    from schoolgate.classify.keywords import KeywordSet, Phrase

    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    themes = ["suicide_selfharm", "drugs", "weapons_violence", "bullying", "hate", "adult"]
    phrases = []
    seen = set()
    while len(phrases) < 5000:
        words = ["".join(rng.choice(letters) for _ in range(rng.randint(4, 9)))
                 for _ in range(rng.randint(1, 3))]
        text = " ".join(words)
        if text in seen:
            continue
        seen.add(text)
        phrases.append(Phrase.of(text, theme=rng.choice(themes), severity="medium",
                                 mode="word" if rng.random() < 0.8 else "substring"))
    phrases.append(Phrase.of("kill myself", theme="suicide_selfharm", severity="high"))
    return KeywordSet(phrases)


def _illegal(tmp: Path):
    from schoolgate.classify.illegal import IllegalList, IllegalLists, IllegalListSpec

    rng = random.Random(11)
    lines = [hashlib.sha256(f"iwf{rng.getrandbits(64):x}.example/p/{i}".encode()).hexdigest()
             for i in range(100_000)]
    source = tmp / "iwf.sha256"
    source.write_text("\n".join(lines) + "\n")
    lst = IllegalList(IllegalListSpec("iwf", "iwf", str(source), "sha256"))
    t = time.perf_counter()
    assert lst.refresh()
    return IllegalLists([lst]), time.perf_counter() - t


def main() -> None:
    if not UT1.is_dir():
        sys.exit(f"classify_full: {UT1} not found (the shared data folder)")
    from schoolgate.classify import Classifier
    from schoolgate.classify.index import ListIndex, ut1_sources

    work = ci.make_workload(UT1, URLS)
    urls = ["http://" + u for _, u in work]
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        sources = ut1_sources(UT1)
        t0 = time.perf_counter()
        index = ListIndex.build(sources)
        build = time.perf_counter() - t0
        cache = tmp / "lists.idx"
        index.save(cache)
        t0 = time.perf_counter()
        index = ListIndex.load(cache)
        ready = time.perf_counter() - t0
        illegal, illegal_load = _illegal(tmp)
        t0 = time.perf_counter()
        keywords = _keyword_set()
        kw_build = time.perf_counter() - t0

        c = Classifier(index)
        c.illegal = illegal
        c.keyword_sets = (keywords,)
        whole = ci._time_calls(c.classify, urls)
        c.keyword_sets = ()
        no_kw = ci._time_calls(c.classify, urls)

    naive = ci._run_child("--child", "naive", "--ut1", str(UT1), "--workload", _dump(work))
    n = naive["full"]
    print(f"\nWhole classification: {URLS:,} URLs, full UT1 + 100,000 hashed IWF entries + "
          f"5,000 keyword phrases, one core")
    print(f"  build from text {build:.2f} s (target <= 5), ready from cache {ready:.3f} s "
          f"(target <= 1), IWF list load {illegal_load:.2f} s, keyword set build {kw_build:.2f} s")
    print(f"{'':36} {'p50 us':>8} {'p99 us':>8} {'URLs/s':>9} {'vs naive':>9}")
    for name, r in (("schoolgate (with keywords)", whole), ("schoolgate (without keywords)", no_kw),
                    ("naive baseline", n)):
        print(f"{name:36} {r['p50_us']:8.2f} {r['p99_us']:8.2f} {r['per_s']:9,.0f} "
              f"{r['per_s'] / n['per_s']:8.2f}x")
    print("targets: p50 <= 8 us, p99 <= 25 us, >= 80,000 URLs/s")


def _dump(work) -> str:
    import json

    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(work, f)
    f.close()
    return f.name


if __name__ == "__main__":
    main()
