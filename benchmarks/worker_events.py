"""Events per second into the store with N gateway workers, for the two designs `schoolgate run
--workers` could use:

- relay: each worker's `EventRelay` sends batches over its socket pair to one supervisor, whose
  single `EventWriter` stores them (the design chosen: alerts, dedup and the outbox stay single);
- wal: each worker runs its own `EventWriter` on the same SQLite file (WAL, busy timeout), the
  writers taking the database's one write lock in turn.

Each worker is a separate process producing EVENTS events as fast as it can (so this measures the
store path, not the proxy: a real worker makes a few thousand decisions a second). The time runs
from the start signal until the last event is committed.

    .venv/bin/python benchmarks/worker_events.py [--workers 2,4] [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))

from schoolgate.config.model import EventSettings  # noqa: E402
from schoolgate.events import Event  # noqa: E402
from schoolgate.gateway.workers.channel import open_channel  # noqa: E402
from schoolgate.gateway.workers.link import EventRelay  # noqa: E402
from schoolgate.store import EventWriter, open_for_writing  # noqa: E402

SETTINGS = EventSettings(queue_size=1_000_000, batch_size=500, flush_interval=0.05)


def event(worker: int, i: int) -> Event:
    return Event(ts=time.time(), client_ip="10.20.1.7", group="pupils", action="block",
                 reference=f"R{worker:02d}{i:08d}", user="jsmith", method="GET", scheme="https",
                 host="www.example.com", url=f"https://www.example.com/page/{i}?q=x",
                 categories=("gambling",), matched_rule="group pupils blocks gambling",
                 reason="category")


async def _produce(put, worker: int, events: int) -> None:
    for i in range(events):
        put(event(worker, i))
        if i % 200 == 0:
            await asyncio.sleep(0)  # a worker's loop has requests to serve between events


def relay_worker(fd: int, worker: int, events: int, start) -> None:
    async def main() -> None:
        channel = await open_channel(socket.socket(fileno=fd))
        relay = EventRelay(SETTINGS)
        relay.channel = channel
        await relay.start()
        start.wait()
        await _produce(relay.put, worker, events)
        await relay.close(timeout=600)
        await channel.close()

    asyncio.run(main())


def wal_worker(db: str, worker: int, events: int, start) -> None:
    async def main() -> None:
        writer = EventWriter(Path(db), SETTINGS)
        await writer.start()
        start.wait()
        await _produce(writer.put, worker, events)
        await writer.close(timeout=600)

    asyncio.run(main())


def run_relay(db: Path, workers: int, events: int) -> float:
    # fork: the children run nothing but the relay, and inherit their socket pair end.
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    pairs = [socket.socketpair() for _ in range(workers)]
    procs = [ctx.Process(target=relay_worker, args=(theirs.fileno(), n, events, start))
             for n, (_, theirs) in enumerate(pairs)]
    for p in procs:
        p.start()
    for _, theirs in pairs:
        theirs.close()

    async def supervisor() -> float:
        writer = EventWriter(db, SETTINGS)
        await writer.start()
        channels = [await open_channel(ours) for ours, _ in pairs]

        async def serve(channel) -> None:
            while (message := await channel.receive()) is not None:
                await writer.put_waiting(message[1])

        await asyncio.sleep(0.5)  # every child connected and waiting
        began = time.perf_counter()
        start.set()
        await asyncio.gather(*(serve(c) for c in channels))
        await writer.close(timeout=600)
        return time.perf_counter() - began

    seconds = asyncio.run(supervisor())
    for p in procs:
        p.join()
    return seconds


def run_wal(db: Path, workers: int, events: int) -> float:
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=wal_worker, args=(str(db), n, events, start))
             for n in range(workers)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    began = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
    return time.perf_counter() - began


def count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="2,4")
    ap.add_argument("--events", type=int, default=50_000, help="events per worker")
    args = ap.parse_args(argv)
    print(f"worker events: {args.events} events per worker, batch {SETTINGS.batch_size}")
    for workers in (int(w) for w in args.workers.split(",")):
        for name, run in (("relay", run_relay), ("wal", run_wal)):
            with tempfile.TemporaryDirectory() as tmp:
                db = Path(tmp) / "events.sqlite3"
                open_for_writing(db)
                seconds = run(db, workers, args.events)
                stored = count(db)
                total = workers * args.events
                print(f"  {name:5} {workers} workers: {stored}/{total} stored, "
                      f"{stored / seconds:,.0f} events/s")


if __name__ == "__main__":
    main()
