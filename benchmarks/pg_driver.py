"""Which async PostgreSQL driver the event writer should use (#17 point 1, "measure and
choose"): psycopg 3 and asyncpg, each with its bulk path (COPY) and its plain path
(executemany of a multi-row INSERT), writing batches of events as Schoolgate's writer does
(one transaction per batch) into a table partitioned by day, against a real PostgreSQL.

    python benchmarks/pg_driver.py --dsn postgresql://user@127.0.0.1:PORT/db [--events N]

Needs a PostgreSQL to write to; the store's own tests start one (tests/pg_server.py). asyncpg is
not a dependency (psycopg 3 was chosen by this benchmark): `pip install asyncpg` to compare
again; without it, its rows are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import time
from datetime import UTC, datetime, timedelta

import psycopg

COLUMNS = ("ts", "node", "user_name", "device", "client_ip", "group_name", "method", "scheme",
           "host", "url", "search_term", "categories", "matched_rule", "action", "severity",
           "reference")

SCHEMA = """
DROP TABLE IF EXISTS bench_events;
CREATE TABLE bench_events (
    id bigint GENERATED ALWAYS AS IDENTITY,
    ts timestamptz NOT NULL, node text NOT NULL, user_name text, device text,
    client_ip inet NOT NULL, group_name text NOT NULL, method text, scheme text, host text,
    url text, search_term text, categories text, matched_rule text, action text NOT NULL,
    severity text, reference text
) PARTITION BY RANGE (ts);
CREATE TABLE bench_events_d0 PARTITION OF bench_events
    FOR VALUES FROM ('2026-12-07') TO ('2026-12-08');
CREATE INDEX ON bench_events (ts);
CREATE INDEX ON bench_events (reference);
CREATE INDEX ON bench_events (user_name, ts) WHERE user_name IS NOT NULL;
"""


def rows(n: int) -> list[tuple]:
    rng = random.Random(17)
    start = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        host = f"site{rng.randint(0, 5000)}.example"
        out.append((start + timedelta(milliseconds=i), "node-a", f"pupil{rng.randint(0, 1500)}",
                    None, f"10.20.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "secondary",
                    "GET", "https", host, f"https://{host}/page/{i}", None, "news", None,
                    "allow", None, f"R{i:09d}"))
    return out


async def psycopg_copy(dsn: str, data: list[tuple], batch: int) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        for at in range(0, len(data), batch):
            async with conn.transaction(), conn.cursor() as cur:
                async with cur.copy(f"COPY bench_events ({', '.join(COLUMNS)}) FROM STDIN") \
                        as copy:
                    for row in data[at:at + batch]:
                        await copy.write_row(row)


async def psycopg_insert(dsn: str, data: list[tuple], batch: int) -> None:
    marks = ", ".join(["%s"] * len(COLUMNS))
    sql = f"INSERT INTO bench_events ({', '.join(COLUMNS)}) VALUES ({marks})"
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        for at in range(0, len(data), batch):
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(sql, data[at:at + batch])


async def asyncpg_copy(dsn: str, data: list[tuple], batch: int) -> None:
    import asyncpg  # optional: see the module's docstring

    conn = await asyncpg.connect(dsn)
    try:
        for at in range(0, len(data), batch):
            async with conn.transaction():
                await conn.copy_records_to_table("bench_events", records=data[at:at + batch],
                                                 columns=COLUMNS)
    finally:
        await conn.close()


async def asyncpg_insert(dsn: str, data: list[tuple], batch: int) -> None:
    import asyncpg

    marks = ", ".join(f"${i + 1}" for i in range(len(COLUMNS)))
    sql = f"INSERT INTO bench_events ({', '.join(COLUMNS)}) VALUES ({marks})"
    conn = await asyncpg.connect(dsn)
    try:
        for at in range(0, len(data), batch):
            async with conn.transaction():
                await conn.executemany(sql, data[at:at + batch])
    finally:
        await conn.close()


async def reset(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(SCHEMA)


async def main_async(args: argparse.Namespace) -> None:
    data = rows(args.events)
    print(f"pg_driver: {args.events:,} events, batches of {args.batch}, one transaction each, "
          f"into a day-partitioned table with 3 indexes; best of {args.rounds}")
    results = {}
    drivers = [("psycopg 3 COPY", psycopg_copy), ("psycopg 3 executemany", psycopg_insert)]
    if importlib.util.find_spec("asyncpg") is not None:
        drivers += [("asyncpg COPY", asyncpg_copy), ("asyncpg executemany", asyncpg_insert)]
    else:
        print("  (asyncpg not installed: its rows are left out)")
    for name, fn in drivers:
        best = float("inf")
        for _ in range(args.rounds):
            await reset(args.dsn)
            started = time.perf_counter()
            await fn(args.dsn, data, args.batch)
            best = min(best, time.perf_counter() - started)
        results[name] = args.events / best
        print(f"  {name:24} {results[name]:10,.0f} events/s")
    base = results["psycopg 3 COPY"]
    for name, rate in results.items():
        print(f"  {name:24} {rate / base:6.2f}x psycopg 3 COPY")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
