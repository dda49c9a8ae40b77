"""`make bench`: every benchmark, each printing its figures and ratios against a baseline run in
the same process; first, the keyword library's recall on the labelled searches."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import classify_full  # noqa: E402
import classify_index  # noqa: E402
import daily_report  # noqa: E402
import gateway_load  # noqa: E402
import hook_time  # noqa: E402
import lossless  # noqa: E402
import metrics_cost  # noqa: E402
import page_latency  # noqa: E402
import page_scan  # noqa: E402
import phrase_engine  # noqa: E402
import reload_stall  # noqa: E402
import search_recall  # noqa: E402
import worker_events  # noqa: E402

if __name__ == "__main__":
    # First: not a speed but the keyword library's recall on the labelled searches (seconds).
    search_recall.main([])
    classify_index.main([])
    classify_full.main()
    hook_time.main([])
    phrase_engine.main([])
    page_scan.main()
    page_latency.main([])
    reload_stall.main()
    metrics_cost.main()
    gateway_load.main()
    worker_events.main([])
    if lossless.main([]) != 0:
        sys.exit("lossless: events were lost (see above)")
    # Last: seeding 5 million events takes about two minutes (BENCH_REPORT_EVENTS shrinks it).
    daily_report.main([])
