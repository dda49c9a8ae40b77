"""The DSL's daily suspicious-search report over a week of a large school's events (issue target:
build and render one day in <= 10 s over a 5,000,000-event store with 1 % flagged searches).

Steps:
  seed      a fresh store made by `open_for_writing` (the real schema and every migration), filled
            with a week of events (Monday to Sunday, school hours heavy, weekends light) from
            1,200 pupils, 150 staff and 200 guest devices; 1 % are flagged searches, a few are
            illegal-list hits. `executemany` in big transactions, PRAGMA synchronous=OFF (this
            throwaway database only). Timed on its own.
  indexed   a fresh process: `build_daily` for the Wednesday, `render_html`, `render_csv`;
            wall time of each (median of 3 runs) and the process's peak RSS; another process
            measures the Python heap's peak with tracemalloc.
  baseline  the same process after dropping migration 5's indexes (the store as it was before
            them), and the day's flagged-row query alone as a full table scan (NOT INDEXED).
  migrate   migration 5's indexes created again on the full store: what an upgrade costs once.
"gain" is baseline/indexed: above 1x the indexes win.

BENCH_REPORT_EVENTS=200000 shrinks the store for a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "proxy"))

TZ = "Europe/London"
SCHOOL = "Benchmark Academy"
MONDAY = date(2026, 3, 2)
REPORT_DAY = date(2026, 3, 4)  # a Wednesday: a full school day
EVENTS = int(os.environ.get("BENCH_REPORT_EVENTS", "5000000"))
FLAGGED = 0.01
ILLEGAL = 1 / 50_000
TARGET_S = 10.0
CHUNK = 250_000

FIRST = ("oliver amelia george isla harry ava noah mia jack ivy leo lily arthur sophia muhammad "
         "grace oscar freya charlie ella jacob emily thomas poppy henry evie william zara "
         "archie daisy").split()
SURNAMES = ("smith jones williams taylor brown davies evans wilson thomas johnson roberts "
            "robinson thompson wright walker white edwards hughes green hall lewis harris "
            "clarke patel jackson wood turner martin cooper hill ward morris moore clark lee "
            "king baker harrison morgan allen james scott phillips watson davis parker price "
            "bennett young griffiths mitchell kelly cook carter richardson bailey collins bell "
            "shaw murphy miller cox richards khan marshall anderson simpson ellis adams singh "
            "begum wilkinson foster chapman powell webb rogers gray mason ali hunt hussain").split()
SITES = [
    ("www.google.com", "/search?q={n}"), ("docs.google.com", "/document/d/{n}/edit"),
    ("classroom.google.com", "/c/{n}"), ("www.youtube.com", "/watch?v={n}"),
    ("i.ytimg.com", "/vi/{n}/hqdefault.jpg"), ("en.wikipedia.org", "/wiki/Topic_{n}"),
    ("www.bbc.co.uk", "/bitesize/topics/{n}"), ("login.microsoftonline.com", "/common/oauth2"),
    ("teams.microsoft.com", "/api/{n}"), ("outlook.office365.com", "/mail/{n}"),
    ("www.oaknational.academy", "/lessons/{n}"), ("www.khanacademy.org", "/math/{n}"),
    ("www.duolingo.com", "/lesson/{n}"), ("kahoot.it", "/challenge/{n}"),
    ("www.canva.com", "/design/{n}"), ("fonts.gstatic.com", "/s/{n}.woff2"),
    ("cdn.jsdelivr.net", "/npm/pkg@{n}"), ("www.gov.uk", "/guidance/{n}"),
    ("www.spotify.com", "/track/{n}"), ("www.amazon.co.uk", "/dp/{n}"),
    ("www.theguardian.com", "/world/{n}"), ("scratch.mit.edu", "/projects/{n}"),
    ("www.mathsisfun.com", "/algebra/{n}.html"), ("quizlet.com", "/gb/{n}"),
]
BLOCKED = [
    ("www.tiktok.com", "social_networks"), ("www.instagram.com", "social_networks"),
    ("www.snapchat.com", "social_networks"), ("poki.com", "games"), ("www.crazygames.com", "games"),
    ("www.bet365.com", "gambling"), ("www.pornhub.com", "adult"), ("www.hola.org", "vpn"),
]
TERMS = [  # (typed, matched phrase, theme, severity)
    ("how to kill myself", "kill myself", "suicide_selfharm", "high"),
    ("kms", "kms", "suicide_selfharm", "high"),
    ("self harm hide cuts", "hide my cuts", "suicide_selfharm", "high"),
    ("pro ana tips", "pro ana", "eating_disorders", "high"),
    ("how to lose weight fast not eating", "not eating", "eating_disorders", "medium"),
    ("join the great replacement", "great replacement", "extremism_radicalisation", "high"),
    ("older boyfriend secret snapchat", "older boyfriend", "cse_grooming", "high"),
    ("buy weed near me", "buy weed", "drugs", "medium"),
    ("how to make a knife", "make a knife", "weapons_violence", "medium"),
    ("fight videos school", "fight videos", "weapons_violence", "low"),
    ("kill yourself loser", "kill yourself", "bullying", "high"),
    ("ugly fat loser", "fat loser", "bullying", "medium"),
    ("hentai", "hentai", "adult", "low"),
    ("free vpn unblocked", "vpn", "circumvention", "low"),
    ("unblocked games 66", "unblocked games", "circumvention", "low"),
]
ENGINES = [("google", "www.google.com"), ("bing", "www.bing.com"),
           ("youtube", "www.youtube.com"), ("duckduckgo", "duckduckgo.com")]


# -- the store -------------------------------------------------------------------------------


def _people(rng: random.Random) -> list[tuple[str | None, str | None, str, str, float]]:
    """(user, device, ip, group, weight): who browses, and how much."""
    people = []
    names = set()
    for n in range(1200):
        entry = 20 + n % 7  # year 7 to year 13
        while True:
            name = f"{entry}{rng.choice(FIRST)[0]}{rng.choice(SURNAMES)}"
            if name not in names:
                break
            name += str(rng.randrange(10))
            if name not in names:
                break
        names.add(name)
        device = f"LAPTOP-{n:04d}" if rng.random() < 0.5 else None
        ip = f"10.20.{n // 250}.{n % 250 + 2}"
        people.append((name, device, ip, f"year{13 - (entry - 20)}", 1.0))
    for n in range(150):
        name = f"{rng.choice(FIRST)[0]}.{rng.choice(SURNAMES)}{n}"
        people.append((name, f"STAFF-{n:03d}", f"10.30.0.{n + 2}", "staff", 1.3))
    for n in range(200):
        device = f"GUEST-{n:03d}" if n % 2 else None
        people.append((None, device, f"172.16.{n // 250}.{n % 250 + 2}", "guest", 0.4))
    return people


def _timestamps(rng: random.Random, count: int) -> list[int]:
    """`count` sorted Unix times in ms over the week: weekdays 19 % each, weekend days 2.5 %,
    mostly 08:00-16:00 school time."""
    zone = ZoneInfo(TZ)
    minute_weights = []
    for minute in range(24 * 60):
        hour = minute / 60
        minute_weights.append(10.0 if 8 <= hour < 16 else 2.0 if 7 <= hour < 18 else 0.15)
    day_weights = [0.19] * 5 + [0.025] * 2
    days = rng.choices(range(7), weights=day_weights, k=count)
    minutes = rng.choices(range(24 * 60), weights=minute_weights, k=count)
    starts = [int(datetime.combine(MONDAY + timedelta(days=d), datetime.min.time(), tzinfo=zone)
                  .timestamp() * 1000) for d in range(7)]
    rand = rng.random
    out = [starts[d] + m * 60_000 + int(rand() * 60_000)
           for d, m in zip(days, minutes, strict=True)]
    out.sort()
    return out


def seed(db: Path, count: int, rng_seed: int = 2026) -> dict:
    from schoolgate.store import EVENT_COLUMNS, open_for_writing

    rng = random.Random(rng_seed)
    open_for_writing(db)
    people = _people(rng)
    weights = [p[4] for p in people]
    stamps = _timestamps(rng, count)
    insert = (f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
              f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # a throwaway benchmark store only
    conn.execute("PRAGMA cache_size = -262144")
    prefixes: dict[int, str] = {}
    rand, choice, bits = rng.random, rng.choice, rng.getrandbits
    flagged = illegal = 0
    for chunk_start in range(0, count, CHUNK):
        chunk = stamps[chunk_start:chunk_start + CHUNK]
        who = rng.choices(people, weights=weights, k=len(chunk))
        rows = []
        for ms, (user, device, ip, group, _) in zip(chunk, who, strict=True):
            minute, rest = divmod(ms, 60_000)
            prefix = prefixes.get(minute)
            if prefix is None:
                prefix = prefixes[minute] = datetime.fromtimestamp(minute * 60, UTC).strftime(
                    "%Y-%m-%dT%H:%M:")
            ts = f"{prefix}{rest // 1000:02d}.{rest % 1000:03d}Z"
            ref = f"{bits(25):07X}"[-5:] + "-" + f"{bits(25):07X}"[-5:]
            roll = rand()
            if roll < FLAGGED:
                typed, phrase, theme, severity = choice(TERMS)
                engine, host = choice(ENGINES)
                q = typed.replace(" ", "+")
                rows.append((ts, user, device, ip, group, "GET", "https", host,
                             f"https://{host}/search?q={q}", typed, "search_engines", None,
                             "allow", severity, ref, "keyword", theme, engine, typed, phrase))
                flagged += 1
            elif roll < FLAGGED + ILLEGAL:
                rows.append((ts, user, device, ip, group, "GET", "https", "bad.example", None,
                             None, None, "illegal-content list IWF", "block", "high", ref,
                             "illegal:IWF", None, None, None, None))
                illegal += 1
            elif roll < 0.07:
                host, category = choice(BLOCKED)
                rows.append((ts, user, device, ip, group, "GET", "https", host,
                             f"https://{host}/", None, category, f"group {group} blocks "
                             f"{category}", "block", None, ref, "category", None, None, None,
                             None))
            else:
                host, path = choice(SITES)
                rows.append((ts, user, device, ip, group, "GET", "https", host,
                             f"https://{host}{path.format(n=bits(20))}", None, None, None,
                             "allow", None, ref, None, None, None, None, None))
        conn.execute("BEGIN")
        conn.executemany(insert, rows)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"flagged": flagged, "illegal": illegal}


# -- measurements (each in its own process) --------------------------------------------------


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    """This process's peak RSS. Not getrusage's ru_maxrss: Linux keeps that across exec, so a
    child would report the (large) parent's RSS at fork."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_report(db: Path, trace: bool) -> dict:
    import tracemalloc

    from schoolgate.reports import build_daily, render_csv, render_html

    start_rss = _rss_mib()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    report = build_daily(db, REPORT_DAY, TZ, SCHOOL)
    t1 = time.perf_counter()
    html = render_html(report)
    t2 = time.perf_counter()
    text = render_csv(report)
    t3 = time.perf_counter()
    heap = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    return {
        "build_s": t1 - t0,
        "html_s": t2 - t1,
        "csv_s": t3 - t2,
        "total_s": t3 - t0,
        "start_rss_mib": start_rss,
        "peak_rss_mib": _peak_rss_mib(),
        "heap_mib": heap,
        "people": len(report.people),
        "incidents": report.incidents,
        "day_events": report.events_total,
        "windows": sum(len(p.context) for p in report.people),
        "context_rows": sum(len(w.events) for p in report.people for w in p.context),
        "html_mib": len(html.encode()) / 2**20,
        "csv_mib": len(text.encode()) / 2**20,
    }


def child_scan(db: Path) -> dict:
    from schoolgate.reports.reading import SAFEGUARDING_SQL, iso_utc, local_day_range

    start, end = local_day_range(REPORT_DAY, TZ)
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    out = {}
    for name, table in (("indexed", "events"), ("scan", "events NOT INDEXED")):
        t = time.perf_counter()
        rows = conn.execute(
            f"SELECT * FROM {table} WHERE {SAFEGUARDING_SQL} AND ts >= ? AND ts < ?",
            (iso_utc(start), iso_utc(end)),
        ).fetchall()
        out[f"{name}_s"] = time.perf_counter() - t
        out[f"{name}_rows"] = len(rows)
    conn.close()
    return out


def _run_child(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise SystemExit(f"benchmark child {args} failed:\n{result.stderr}")
    return json.loads(result.stdout)


def _report(db: Path, runs: int = 3) -> dict:
    measured = [_run_child("--child", "report", "--db", str(db)) for _ in range(runs)]
    out = dict(measured[0])
    for key in ("build_s", "html_s", "csv_s", "total_s"):
        out[key] = statistics.median(m[key] for m in measured)
    out["peak_rss_mib"] = max(m["peak_rss_mib"] for m in measured)
    out["heap_mib"] = _run_child("--child", "report", "--db", str(db), "--trace")["heap_mib"]
    return out


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=EVENTS, help="events in the store")
    parser.add_argument("--keep", type=Path, help="seed into this file and keep it")
    parser.add_argument("--child", choices=["report", "scan"], help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "report":
        print(json.dumps(child_report(args.db, args.trace)))
        return
    if args.child == "scan":
        print(json.dumps(child_scan(args.db)))
        return

    from schoolgate.store.migrations import MIGRATIONS

    with tempfile.TemporaryDirectory(prefix="sg-bench-report-") as tmp:
        db = args.keep or Path(tmp) / "schoolgate.sqlite3"
        if db.exists():
            sys.exit(f"{db} exists; give a new file to --keep")
        started = time.perf_counter()
        seeded = seed(db, args.events)
        seed_s = time.perf_counter() - started
        size_mib = db.stat().st_size / 2**20

        ours = _report(db)
        scan = _run_child("--child", "scan", "--db", str(db))

        (m5,) = [m for m in MIGRATIONS if m.number == 5]
        names = [sql.split()[2] for sql in m5.statements]
        conn = sqlite3.connect(db, isolation_level=None)
        for name in names:
            conn.execute(f"DROP INDEX {name}")
        conn.close()
        before = _report(db, runs=1)
        conn = sqlite3.connect(db, isolation_level=None)
        started = time.perf_counter()
        for sql in m5.statements:
            conn.execute(sql)
        migrate_s = time.perf_counter() - started
        conn.close()

    print(f"\nDaily report: {args.events:,} events over the week of {MONDAY} "
          f"({seeded['flagged']:,} flagged searches, {seeded['illegal']:,} illegal-list hits), "
          f"store {size_mib:,.0f} MiB")
    print(f"seeding: {seed_s:.1f} s ({args.events / seed_s:,.0f} events/s, executemany, "
          f"synchronous=OFF)")
    print(f"report day {REPORT_DAY} (Wednesday): {ours['day_events']:,} events, "
          f"{ours['incidents']:,} flagged searches by {ours['people']:,} people, "
          f"{ours['windows']:,} context windows showing {ours['context_rows']:,} events; "
          f"HTML {ours['html_mib']:.1f} MiB, CSV {ours['csv_mib']:.1f} MiB")
    rows = [
        ("build_daily (s)", ours["build_s"], before["build_s"]),
        ("render_html (s)", ours["html_s"], before["html_s"]),
        ("render_csv (s)", ours["csv_s"], before["csv_s"]),
        ("build + render (s)", ours["total_s"], before["total_s"]),
        ("peak RSS (MiB)", ours["peak_rss_mib"], before["peak_rss_mib"]),
        ("  of which at start (MiB)", ours["start_rss_mib"], before["start_rss_mib"]),
        ("Python heap peak (MiB)", ours["heap_mib"], before["heap_mib"]),
        ("day's flagged rows query (s)", scan["indexed_s"], scan["scan_s"]),
    ]
    print(f"{'':32}{'indexed':>11}{'baseline':>11}{'gain':>9}  target")
    for label, value, baseline in rows:
        gain = f"{baseline / value:.2f}x" if value and baseline else "-"
        goal = ""
        if label.startswith("build + render"):
            goal = f"<= {TARGET_S:g} s {'met' if value <= TARGET_S else 'MISSED'}"
        print(f"{label:32}{_fmt(value):>11}{_fmt(baseline):>11}{gain:>9}  {goal}")
    print("baseline: the same report without migration 5's indexes (events_safeguarding_ts, "
          "events_device_ts);\n          the last row: the query as a full table scan "
          f"({scan['scan_rows']:,} rows either way)")
    print(f"migration 5 on this store (creating both indexes once): {migrate_s:.1f} s")


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 1 else f"{value:.2f}"


if __name__ == "__main__":
    main()
