"""Event-loop stall while the gateway reloads the full UT1 set (issue target: never > 50 ms).

Runs the real `Gateway.reload` in-process with every UT1 category folder configured, while a
probe task measures how late the loop wakes it (1 ms sleeps). Baseline in the same run: the same
rebuild done in a worker thread of the gateway (`build_rules` without the child process), which
is what the child process exists to avoid.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UT1 = ROOT.parent / "shared" / "data" / "ut1"


def _config(tmp: Path) -> Path:
    cats = sorted(p.name for p in UT1.iterdir() if p.is_dir())
    touched = tmp / "local-extra"
    touched.write_text("reload-probe.example\n")
    lines = ["data_dir: " + str(tmp / "data"), "metrics: {host: 127.0.0.1, port: 0}", "categories:"]
    for c in cats:
        lines.append(f"  {c.replace('-', '_')}: {{lists: [{UT1 / c}]}}")
    lines.append(f"  local_extra: {{lists: [{touched}]}}")
    lines += ["groups:", "  pupils: {subnets: [10.0.0.0/8], blocked_categories: [gambling]}",
              "default_group: pupils"]
    path = tmp / "bench.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def _probe(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - t - 0.001)


async def _measure(action) -> tuple[float, float, float]:
    stop, lags = asyncio.Event(), []
    probe = asyncio.create_task(_probe(stop, lags))
    await asyncio.sleep(0.05)
    t = time.perf_counter()
    await action()
    took = time.perf_counter() - t
    stop.set()
    await probe
    lags.sort()
    return took, max(lags) * 1000, lags[int(len(lags) * 0.99)] * 1000


async def main_async() -> None:
    from schoolgate.config.loader import load_config
    from schoolgate.gateway.rules import build_rules
    from schoolgate.gateway.service import Gateway

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        (tmp / "data").mkdir()
        config = load_config(_config(tmp))
        gateway = Gateway(config)  # first build, and the cache, before measuring
        extra = tmp / "local-extra"

        async def child_reload():
            os.utime(extra, ns=(time.time_ns(), time.time_ns()))  # force a rebuild
            assert await gateway.reloader.reload("benchmark")

        async def thread_reload():
            os.utime(extra, ns=(time.time_ns(), time.time_ns()))
            await asyncio.to_thread(functools.partial(build_rules, config, gateway.illegal))

        rows = [("gateway reload (child process)", await _measure(child_reload)),
                ("baseline: rebuild in a thread", await _measure(thread_reload))]
        entries = len(gateway.rules.classifier.index.domains)
    print(f"\nReload of the full UT1 set ({entries:,} domains), event-loop stall")
    print(f"{'':34} {'reload s':>9} {'max stall ms':>13} {'p99 stall ms':>13}")
    for name, (took, worst, p99) in rows:
        print(f"{name:34} {took:9.2f} {worst:13.1f} {p99:13.1f}")
    print("target: max stall <= 50 ms")


def main() -> None:
    if not UT1.is_dir():
        sys.exit(f"reload_stall: {UT1} not found (the shared data folder)")
    asyncio.run(main_async())


if __name__ == "__main__":
    main()
