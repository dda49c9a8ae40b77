"""The full UT1 list index: build from text, ready from the cache, memory, and lookup latency,
against a naive baseline measured in the same run.

Steps:
  build     `ListIndex.build` over every UT1 domains/urls/expressions file (this process)
  save      `ListIndex.save` to a temporary cache file
  indexed   a fresh process: RSS, `ListIndex.load` (ready from cache), RSS again, then lookups
  naive     a fresh process: a Python set of every domain walked over parent names, a dict of
            URL prefixes per host, `re.search` per expression; RSS and the same lookups
Each lookup process times 200,000 realistic hosts (listed, subdomains of listed, other sites),
one call at a time for p50/p99, then in a tight loop for lookups/s. A "host" lookup is the domain
lists only; a "full" lookup adds the URL lists and the expressions for a URL on that host.
Both sides must agree on which hosts are listed; the table says how many did.
"indexed gain" is naive/indexed for times and memory, indexed/naive for rates: above 1x the
index wins.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_UT1 = ROOT.parent / "shared" / "data" / "ut1"
sys.path.insert(0, str(ROOT / "proxy"))

TARGETS = {
    "build_s": 5.0,  # rebuild from text
    "ready_s": 1.0,  # ready from cache
    "rss_mib": 40.0,  # index RSS, full set
    "host_p50_us": 8.0,  # lookup, well under
}

# Sites a school's traffic is mostly made of; some of them are in UT1 categories on purpose
# (a real mix has hits among the "other" hosts too).
COMMON_SITES = [
    "www.bbc.co.uk",
    "bbc.co.uk",
    "www.google.com",
    "docs.google.com",
    "classroom.google.com",
    "mail.google.com",
    "accounts.google.com",
    "fonts.gstatic.com",
    "www.youtube.com",
    "i.ytimg.com",
    "en.wikipedia.org",
    "upload.wikimedia.org",
    "login.microsoftonline.com",
    "outlook.office365.com",
    "teams.microsoft.com",
    "www.office.com",
    "www.gov.uk",
    "www.nationalgeographic.com",
    "www.khanacademy.org",
    "www.duolingo.com",
    "www.kahoot.it",
    "www.canva.com",
    "www.spotify.com",
    "www.instagram.com",
    "www.tiktok.com",
    "cdn.jsdelivr.net",
    "ajax.googleapis.com",
    "www.amazon.co.uk",
    "www.apple.com",
    "www.theguardian.com",
    "www.scratch.mit.edu",
    "www.oaknational.academy",
]
WORDS = (
    "maths science history school academy learn class library news sport art music trust "
    "primary county council online cloud portal media static cdn api app".split()
)
TLDS = ["co.uk", "org.uk", "ac.uk", "sch.uk", "com", "org", "net", "io", "edu", "gov.uk"]
PATHS = [
    "/",
    "/index.html",
    "/news/article-{n}",
    "/images/{n}.jpg",
    "/api/v1/items/{n}",
    "/learn/unit-{n}/lesson",
    "/static/app.{n}.js",
]
SEARCHES = [
    "/search?q=maths+homework",
    "/search?q=volcano+facts",
    "/results?search_query=song",
    "/search?q=how+to+revise",
    "/search?q=cache:{n}",
]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- workload --------------------------------------------------------------------------------


def make_workload(ut1: Path, count: int, seed: int = 2024) -> list[tuple[str, str]]:
    """`count` (host, URL without scheme) pairs: 30 % listed domains, 20 % subdomains of listed
    domains, 10 % URL-list entries, 40 % other sites; 20 % of the URLs are searches."""
    from schoolgate.classify.formats import read_domains, read_urls, read_ut1_folder

    rng = random.Random(seed)
    listed: list[str] = []
    url_entries: list[tuple[str, str]] = []
    for category in read_ut1_folder(ut1):
        for path in category.domains:
            entries, _ = read_domains(path)
            step = max(1, len(entries) // 2000)
            listed.extend(n.decode() for n in entries.names[::step])
        for path in category.urls:
            entries, _ = read_urls(path)
            url_entries.extend(
                (e.host, e.path) for e in entries.entries[:: max(1, len(entries) // 300)]
            )
    named = [name for name in listed if not name.replace(".", "").isdigit()]
    work: list[tuple[str, str]] = []
    for _ in range(count):
        roll = rng.random()
        n = rng.randrange(100000)
        if roll < 0.10:
            host, path = rng.choice(url_entries)
            work.append((host, host + (path or "/") + ("x" if rng.random() < 0.5 else "")))
            continue
        if roll < 0.40:
            host = rng.choice(listed)
        elif roll < 0.60:
            host = rng.choice(["www.", "cdn.", "a.b.", "m."]) + rng.choice(named)
        elif roll < 0.80:
            host = rng.choice(COMMON_SITES)
        else:
            labels = [rng.choice(WORDS) + str(rng.randrange(500)) for _ in range(rng.randint(1, 3))]
            host = ".".join(labels) + "." + rng.choice(TLDS)
        path = (rng.choice(SEARCHES) if rng.random() < 0.2 else rng.choice(PATHS)).format(n=n)
        work.append((host, host + path))
    return work


# -- the two sides -------------------------------------------------------------------------


def _time_calls(calls, items) -> dict[str, float]:
    """Per-call p50/p99 (µs) and calls/s of `calls(item)` over `items`."""
    for item in items[:5000]:  # warm caches and the interpreter's specialisations
        calls(item)
    clock = time.perf_counter_ns
    samples = []
    append = samples.append
    for item in items:
        start = clock()
        calls(item)
        append(clock() - start)
    samples.sort()
    start = time.perf_counter()
    for item in items:
        calls(item)
    elapsed = time.perf_counter() - start
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "per_s": len(items) / elapsed,
    }


def child_indexed(cache: Path, workload: Path) -> dict:
    from schoolgate.classify.index import ListIndex

    work = [tuple(x) for x in json.loads(workload.read_text())]
    before = _rss_bytes()
    start = time.perf_counter()
    index = ListIndex.load(cache)
    ready = time.perf_counter() - start
    rss = _rss_bytes() - before

    lookup_host, lookup_url, match = index.lookup_host, index.lookup_url, index.match_expressions

    def host_only(item):
        return lookup_host(item[0])

    def full(item):
        host, url = item
        slash = url.find("/")
        return lookup_host(host), lookup_url(host, url[slash:]), match(url)

    listed = [bool(lookup_host(h)) for h, _ in work]
    host, full_ = _time_calls(host_only, work), _time_calls(full, work)
    return {
        "ready_s": ready,
        "rss_mib": rss / 2**20,
        # RE2's DFA cache and the URL-path memo grow with use; this is after 1.2M lookups.
        "rss_used_mib": (_rss_bytes() - before) / 2**20,
        "nbytes_mib": index.nbytes / 2**20,
        "host": host,
        "full": full_,
        "listed": listed,
    }


def child_naive(ut1: Path, workload: Path) -> dict:
    from schoolgate.classify.formats import read_ut1_folder

    work = [tuple(x) for x in json.loads(workload.read_text())]
    before = _rss_bytes()
    start = time.perf_counter()
    names: set[str] = set()
    prefixes: dict[str, list[str]] = {}
    expressions: list[re.Pattern[str]] = []
    for category in read_ut1_folder(ut1):
        for path in category.domains:
            names.update(line.strip().lstrip(".") for line in path.read_text().splitlines())
        for path in category.urls:
            for line in path.read_text().splitlines():
                host, _, rest = line.strip().partition("/")
                prefixes.setdefault(host, []).append("/" + rest.lower())
        for path in (category.expressions, category.very_restrictive):
            if path is not None:
                expressions += [re.compile(p, re.I) for p in path.read_text().splitlines() if p]
    build = time.perf_counter() - start
    rss = _rss_bytes() - before

    def host_only(item):
        host = item[0]
        found = []
        while True:
            if host in names:
                found.append(host)
            dot = host.find(".")
            if dot < 0:
                return found
            host = host[dot + 1 :]

    def full(item):
        host, url = item
        path = url[url.find("/") :].lower()
        urls = [p for p in prefixes.get(host.removeprefix("www."), ()) if path.startswith(p)]
        return host_only(item), urls, [e for e in expressions if e.search(url)]

    listed = [bool(host_only(item)) for item in work]
    return {
        "build_s": build,
        "rss_mib": rss / 2**20,
        "host": _time_calls(host_only, work),
        "full": _time_calls(full, work),
        "listed": listed,
    }


def _run_child(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"benchmark child {args[:2]} failed:\n{result.stderr}")
    return json.loads(result.stdout)


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ut1", type=Path, default=DEFAULT_UT1, help="UT1 folder")
    parser.add_argument("--hosts", type=int, default=200_000, help="lookups per measurement")
    parser.add_argument("--child", choices=["indexed", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workload", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "indexed":
        print(json.dumps(child_indexed(args.cache, args.workload)))
        return
    if args.child == "naive":
        print(json.dumps(child_naive(args.ut1, args.workload)))
        return

    from schoolgate.classify.index import ListIndex, ut1_sources

    if not args.ut1.is_dir():
        raise SystemExit(f"UT1 lists not found at {args.ut1}; pass --ut1")
    sources = ut1_sources(args.ut1, very_restrictive=True)
    start = time.perf_counter()
    index = ListIndex.build(sources)
    build_s = time.perf_counter() - start
    bad = sum(len(s.problems) for s in index.summaries)

    with tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp:
        cache = Path(tmp) / "ut1.idx"
        start = time.perf_counter()
        index.save(cache)
        save_s = time.perf_counter() - start
        cache_mib = cache.stat().st_size / 2**20
        counts = (len(index.domains), len(index.urls), len(index.expressions), len(sources))
        del index
        workload = Path(tmp) / "workload.json"
        work = make_workload(args.ut1, args.hosts)
        workload.write_text(json.dumps(work))
        ours = _run_child("--child", "indexed", "--cache", str(cache), "--workload", str(workload))
        naive = _run_child("--child", "naive", "--ut1", str(args.ut1), "--workload", str(workload))

    agree = sum(a == b for a, b in zip(ours["listed"], naive["listed"], strict=True))
    listed = sum(ours["listed"])
    print(
        f"UT1 list index: {counts[0]:,} domains, {counts[1]:,} URL entries, {counts[2]} expressions"
        f" from {counts[3]} files ({bad} bad lines); {len(work):,} hosts, {listed:,} listed"
    )
    # (label, indexed, naive, higher is better, target key)
    rows = [
        ("build from text (s)", build_s, naive["build_s"], False, "build_s"),
        ("save cache (s)", save_s, None, False, None),
        ("ready from cache (s)", ours["ready_s"], None, False, "ready_s"),
        ("RSS of loaded lists (MiB)", ours["rss_mib"], naive["rss_mib"], False, "rss_mib"),
        ("  after all lookups (MiB)", ours["rss_used_mib"], None, False, None),
        ("  index arrays (MiB)", ours["nbytes_mib"], None, False, None),
        ("  cache file (MiB)", cache_mib, None, False, None),
        (
            "host lookup p50 (µs)",
            ours["host"]["p50_us"],
            naive["host"]["p50_us"],
            False,
            "host_p50_us",
        ),
        ("host lookup p99 (µs)", ours["host"]["p99_us"], naive["host"]["p99_us"], False, None),
        ("host lookups/s", ours["host"]["per_s"], naive["host"]["per_s"], True, None),
        ("full lookup p50 (µs)", ours["full"]["p50_us"], naive["full"]["p50_us"], False, None),
        ("full lookup p99 (µs)", ours["full"]["p99_us"], naive["full"]["p99_us"], False, None),
        ("full lookups/s", ours["full"]["per_s"], naive["full"]["per_s"], True, None),
    ]
    print(f"{'':30}{'indexed':>11}{'naive':>11}{'indexed gain':>14}  target")
    for label, value, baseline, higher_better, target in rows:
        shown_baseline = "-" if baseline is None else _fmt(baseline)
        gain = "-"
        if baseline and value:
            gain = f"{(value / baseline) if higher_better else (baseline / value):.2f}x"
        goal = ""
        if target:
            limit = TARGETS[target]
            goal = f"<= {limit:g} {'met' if value <= limit else 'MISSED'}"
        print(f"{label:30}{_fmt(value):>11}{shown_baseline:>11}{gain:>14}  {goal}")
    print("indexed gain > 1x: the index is faster or smaller than the naive baseline")
    print(f"listed/unlisted agreement with the naive baseline: {agree:,} of {len(work):,} hosts")


def _fmt(value: float) -> str:
    if value >= 10000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if value < 1 else f"{value:.2f}"


if __name__ == "__main__":
    main()
