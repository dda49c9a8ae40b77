"""Allowed-request hook time: `requestheaders` and `request` through every Schoolgate addon, in
the gateway's order, dispatched as `schoolgate run` dispatches them (gateway/master.py's
DispatchAddonManager, `handle_lifecycle` per hook), for requests the policy allows (the common
case: nothing is answered, everything is decided and recorded). Thread CPU time per request,
median of interleaved rounds, one core.

Three ways, in one process on the same rules:
- keep-alive: ten requests per client connection, the identity worked out once per connection
  and reused (the per-connection identity cache);
- keep-alive, cache off: the same flows with the cache bypassed, so every request works out who
  is behind the connection again (what the gateway did before the cache); the difference is what
  the cache saves;
- one request per connection: every request a new client, so a new identity each time.

Identity comes from the IP map (2,000 addresses), with devices and user groups, as in a school.
The event store is a queue that discards (the writer is measured in `gateway_load`).

Before #13's redesign, this measurement ported to commit 475a02b's addon API and run beside it
on the same machine at the same time gave: old 237.9 us (ten per connection) and 237.5 us (one
per connection); new 223.4 us, 255.6 us with the cache off, 268.9 us one per connection. The
cache is what makes the new pipeline cheaper; without it each request now also does the search,
flags and DoH classification once in Classify (about 15 us) that the old code spread over later
addons, so a connection's first request costs more than before. Compare only figures from one run.

#14 measured in one sitting: 168.9 / 191.3 / 195.0 us (ten per connection / cache off / one per
connection) through mitmproxy's addon manager; 161.8 / 183.7 / 185.8 us with reference IDs from
buffered OS randomness, client addresses parsed once (memoised) and metric label children kept;
and 138.0 / 141.8 / 151.5 us dispatched through the gateway's own manager, as measured now. The
memoised address parsing is also why the identity cache now saves little.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mitmproxy import http
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook
from mitmproxy.test import taddons, tflow

from schoolgate.config.loader import load_config
from schoolgate.events import Event
from schoolgate.gateway import bootstrap
from schoolgate.gateway.addons import identify as identify_addon
from schoolgate.gateway.master import DispatchAddonManager

ROOT = Path(__file__).resolve().parents[1]
KEYWORDS = ROOT / "keywords"
REQUESTS = int(os.environ.get("BENCH_HOOK_REQUESTS", "5000"))
ROUNDS = int(os.environ.get("BENCH_HOOK_ROUNDS", "7"))
PER_CONNECTION = 10
CLIENTS = 2000

URLS = [
    "http://www.bbc.co.uk/news/articles/{i}",
    "http://cdn.example-school.org/static/app.js?v={i}",
    "http://www.google.com/search?q=volcano+eruption+{i}",
    "http://en.wikipedia.org/wiki/Volcano_{i}",
]


def _address(n: int) -> str:
    return f"10.20.{n % CLIENTS // 250}.{n % 250 + 1}"


def write_config(tmp: Path) -> Path:
    lists = tmp / "lists"
    lists.mkdir()
    (lists / "gambling").write_text("bet365.com\nwilliamhill.com\n")
    (lists / "games").write_text("miniclip.com\nroblox.com\n")
    (lists / "social").write_text("tiktok.com\nfacebook.com\n")
    (tmp / "iwf.txt").write_text("iwf-dom.test\n")
    (tmp / "ip-users.csv").write_text("ip,user,ttl_seconds\n" + "".join(
        f"{_address(i)},pupil{i},\n" for i in range(CLIENTS)))
    (tmp / "devices.csv").write_text("key,device\n" + "".join(
        f"{_address(i)},PC-{i}\n" for i in range(CLIENTS)))
    (tmp / "user-groups.csv").write_text("user,group\n" + "".join(
        f"pupil{i},{'ks3' if i % 2 else 'ks4'}\n" for i in range(CLIENTS)))
    config = tmp / "bench.yaml"
    config.write_text(f"""
school: {{name: Bench School, timezone: Europe/London}}
data_dir: {tmp / 'data'}
ca_dir: {tmp / 'ca'}
metrics: {{host: 127.0.0.1, port: 0}}
keywords: {{library: {KEYWORDS}}}
illegal_lists:
  iwf: {{kind: iwf, source: {tmp / 'iwf.txt'}, form: plain}}
categories:
  gambling: {{title: Gambling, lists: [{lists / 'gambling'}]}}
  games: {{title: Games, lists: [{lists / 'games'}]}}
  social: {{title: Social media, lists: [{lists / 'social'}]}}
identity:
  ip_map: {tmp / 'ip-users.csv'}
  devices: {tmp / 'devices.csv'}
  user_groups: {tmp / 'user-groups.csv'}
groups:
  ks3: {{subnets: [10.20.0.0/16], blocked_categories: [gambling, games, social]}}
  ks4: {{subnets: [10.21.0.0/16], blocked_categories: [gambling, games]}}
  staff: {{subnets: [10.30.0.0/16], blocked_categories: [gambling]}}
default_group: ks3
""")
    return config


class _Discard:
    """Stands in for the event writer's queue: accepts every event and keeps none."""

    depth = 0

    def put(self, event: Event) -> bool:
        return True


Batch = list[tuple[http.HTTPFlow, str]]


def flows(per_connection: int) -> Batch:
    out: Batch = []
    client = tflow.tclient_conn()
    for i in range(REQUESTS):
        if i % per_connection == 0:
            client = tflow.tclient_conn()
            n = i // per_connection
            client.peername = (_address(n), 50000 + n % 10000)
        f = tflow.tflow(client_conn=client)
        f.request.url = URLS[i % len(URLS)].format(i=i)
        out.append((f, f.request.url))
    return out


@contextmanager
def identity_cache(on: bool) -> Iterator[None]:
    """With `on` False, the Identify addon finds nothing cached and works every identity out."""
    if on:
        yield
        return
    real = identify_addon.cached_identity
    identify_addon.cached_identity = lambda *args: None  # type: ignore[assignment]
    try:
        yield
    finally:
        identify_addon.cached_identity = real


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as t:
        gateway = bootstrap.build(load_config(write_config(Path(t))))
    gateway.writer = _Discard()  # type: ignore[assignment]
    addons = bootstrap.ordered(gateway)
    keep_alive, fresh = flows(PER_CONNECTION), flows(1)

    with warnings.catch_warnings(), taddons.context(*addons) as tctx:
        warnings.simplefilter("ignore", DeprecationWarning)
        # The gateway's own dispatch over exactly Schoolgate's addons (the test master's chain
        # also holds taddons' stand-ins, which `schoolgate run` does not load).
        manager = DispatchAddonManager(tctx.master)
        manager.chain = list(addons)
        loop = asyncio.new_event_loop()

        async def dispatch(batch: Batch) -> None:
            for f, _ in batch:
                for hook in (HttpRequestHeadersHook, HttpRequestHook):
                    await manager.handle_lifecycle(hook(f))

        def browse(batch: Batch, cache: bool = True) -> float:
            for f, url in batch:
                f.metadata.clear()
                f.response = None
                f.request.url = url
            gateway.clients.clear()  # every round starts with new connections
            with identity_cache(cache):
                t0 = time.thread_time()
                loop.run_until_complete(dispatch(batch))
                elapsed = time.thread_time() - t0
            refused = [f.response.status_code for f, _ in batch if f.response is not None]
            if refused:
                raise SystemExit(f"hook_time: {len(refused)} requests were answered "
                                 f"({refused[:3]}...): the benchmark measures allowed requests")
            return elapsed

        runs: dict[str, list[float]] = {"keep-alive": [], "keep-alive, cache off": [],
                                        "one per connection": []}
        plan: list[tuple[str, Callable[[], float]]] = [
            ("keep-alive", lambda: browse(keep_alive)),
            ("keep-alive, cache off", lambda: browse(keep_alive, cache=False)),
            ("one per connection", lambda: browse(fresh)),
        ]
        for _, run in plan:
            run()  # warm up
        for r in range(ROUNDS):
            for name, run in plan[r % len(plan):] + plan[: r % len(plan)]:
                runs[name].append(run())

    def us(seconds: float) -> float:
        return seconds / REQUESTS * 1e6

    median = {name: statistics.median(map(us, times)) for name, times in runs.items()}
    print(f"allowed-request hook time, {REQUESTS:,} requests x {ROUNDS} rounds, one core "
          "(thread CPU time, median)")
    print(f"  {PER_CONNECTION} requests per connection        {median['keep-alive']:8.2f} us")
    print(f"  ... identity cache off             {median['keep-alive, cache off']:8.2f} us")
    print(f"  1 request per connection           {median['one per connection']:8.2f} us")
    saved = median["keep-alive, cache off"] - median["keep-alive"]
    print(f"  identity cache saves {saved:.2f} us per request "
          f"({saved / median['keep-alive, cache off']:.0%} of the hook time) at "
          f"{PER_CONNECTION} requests per connection")


if __name__ == "__main__":
    main()
