"""What Prometheus metrics cost on the hot path: every addon's request hooks, called by mitmproxy's
addon manager in the gateway's order, over a realistic mix of requests, with metrics on (the real
registry and the Metrics addon) and off (no Metrics addon, every counter a no-op), interleaved in
one process. Also the Metrics addon's hook alone, through mitmproxy's addon manager and called
directly, per request. Times are the thread's CPU time, so other work on the machine adds little
noise.

In process, not through `gateway_load`: metrics cost microseconds per request, and a request
through the real proxy costs a millisecond or more of mitmproxy and socket work whose run-to-run
noise (several per cent) is larger than the whole effect. Here both sides run the same flows on
the same rules, so the ratio isolates what metrics add to Schoolgate's own work; compare the
microseconds with `gateway_load`'s per-request time for the end-to-end share.

The event store is replaced by a queue that discards (the writer is measured elsewhere) so both
sides do identical work apart from metrics.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = int(os.environ.get("BENCH_METRICS_REQUESTS", "10000"))
ROUNDS = int(os.environ.get("BENCH_METRICS_ROUNDS", "5"))
CHUNK = 100

# One in ten pupils' requests is a search (one in ten of those flagged), one in ten is blocked by
# category, one in a hundred by an illegal list; staff browse a tenth of the time.
MIX = (
    [("http://www.bbc.co.uk/news/articles/{i}", "127.0.0.1")] * 60
    + [("http://cdn.example-school.org/static/app.js?v={i}", "127.0.0.1")] * 9
    + [("http://www.google.com/search?q=volcano+eruption+{i}", "127.0.0.1")] * 9
    + [("http://www.google.com/search?q=how+to+make+a+bomb+{i}", "127.0.0.1")] * 1
    + [("http://www.bet365.com/sports/{i}", "127.0.0.1")] * 10
    + [("http://iwf-dom.test/x/{i}", "127.0.0.1")] * 1
    + [("http://www.bet365.com/sports/{i}", "10.30.1.2")] * 5
    + [("http://www.bbc.co.uk/sport/{i}", "10.30.1.2")] * 5
)


def _config(tmp: Path) -> Path:
    lists = tmp / "lists"
    lists.mkdir()
    (lists / "gambling").write_text("bet365.com\nwilliamhill.com\n")
    (lists / "games").write_text("miniclip.com\nroblox.com\n")
    (lists / "social").write_text("tiktok.com\nfacebook.com\n")
    (tmp / "iwf.txt").write_text("iwf-dom.test\n")
    config = tmp / "bench.yaml"
    config.write_text(f"""
school: {{name: Bench School, timezone: Europe/London}}
data_dir: {tmp / 'data'}
metrics: {{host: 127.0.0.1, port: 0}}
keywords: {{library: {ROOT / 'keywords'}}}
illegal_lists:
  iwf: {{kind: iwf, source: {tmp / 'iwf.txt'}, form: plain}}
categories:
  gambling: {{title: Gambling, lists: [{lists / 'gambling'}]}}
  games: {{title: Games, lists: [{lists / 'games'}]}}
  social: {{title: Social media, lists: [{lists / 'social'}]}}
groups:
  pupils: {{subnets: [127.0.0.0/8], blocked_categories: [gambling, games, social]}}
  staff: {{subnets: [10.30.0.0/16], blocked_categories: [gambling]}}
default_group: pupils
""")
    return config


class _Off:
    """Every metric a no-op: what the addons would cost with metrics compiled out."""

    def labels(self, *args, **kwargs):
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def __getattr__(self, name: str):
        return self


class _Discard:
    """Stands in for the event writer: accepts every event and keeps none."""

    depth = 0

    def put(self, event) -> bool:
        return True


def main() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from mitmproxy.addonmanager import safecall
        from mitmproxy.proxy.layers.http import HttpRequestHeadersHook, HttpRequestHook
        from mitmproxy.test import taddons, tflow
    from prometheus_client import CollectorRegistry

    from schoolgate.config.loader import load_config
    from schoolgate.gateway.addons import decision_of
    from schoolgate.gateway.addons.metrics import Metrics
    from schoolgate.gateway.bootstrap import ordered
    from schoolgate.gateway.service import Gateway

    with tempfile.TemporaryDirectory() as t:
        gateway = Gateway(load_config(_config(Path(t))), registry=CollectorRegistry())
        gateway.load_illegal_lists()
    gateway.writer = _Discard()
    on_metrics, off_metrics = gateway.metrics, _Off()
    with_metrics = ordered(gateway)
    without = [a for a in with_metrics if not isinstance(a, Metrics)]
    assert len(without) == len(with_metrics) - 1
    metrics_addon = next(a for a in with_metrics if isinstance(a, Metrics))

    flows, urls = [], []
    for i in range(REQUESTS):
        url, client = MIX[i % len(MIX)]
        f = tflow.tflow()
        f.request.url = url.format(i=i)
        f.client_conn.peername = (client, 50000 + i % 10000)
        flows.append(f)
        urls.append(f.request.url)

    def reset(chunk: list) -> None:
        for f, url in chunk:
            f.metadata.clear()
            f.response = None
            f.request.url = url  # safe search rewrites the path

    chunks = [list(zip(flows[i:i + CHUNK], urls[i:i + CHUNK], strict=True))
              for i in range(0, REQUESTS, CHUNK)]

    with taddons.context(*with_metrics) as tctx:
        invoke = tctx.master.addons.invoke_addon_sync

        def browse(chunk: list, addons: list, metrics) -> float:
            """Seconds for the chunk's flows through `addons`: requestheaders, then request."""
            reset(chunk)
            gateway.metrics = metrics
            t0 = time.thread_time()
            for f, _ in chunk:
                for hook in (HttpRequestHeadersHook, HttpRequestHook):
                    if hook is HttpRequestHook and f.response is not None:
                        break
                    event = hook(f)
                    for addon in addons:
                        with safecall():
                            invoke(addon, event)
            return time.thread_time() - t0

        def metrics_hook_alone(chunk: list) -> tuple[float, float]:
            """Seconds for the Metrics hook over flows already decided (it runs last): through
            the addon manager, and called directly (the counting itself)."""
            browse(chunk, without, on_metrics)
            t0 = time.thread_time()
            for f, _ in chunk:
                invoke(metrics_addon, HttpRequestHeadersHook(f))
            managed = time.thread_time() - t0
            for f, _ in chunk:
                decision_of(f).counted = False
            t0 = time.thread_time()
            for f, _ in chunk:
                metrics_addon.requestheaders(f)
            return managed, time.thread_time() - t0

        for chunk in chunks:  # warm every cache on both paths before timing
            browse(chunk, with_metrics, on_metrics)
            browse(chunk, without, off_metrics)
        _check_the_mix(on_metrics.registry)
        # Small interleaved pairs, the order alternating: noise from other work on the machine
        # (or a slow drift) falls on both sides alike, and the median pair ratio ignores bursts.
        pairs, alone = [], []
        for r in range(ROUNDS):
            for n, chunk in enumerate(chunks):
                if (r + n) % 2:
                    on = browse(chunk, with_metrics, on_metrics)
                    off = browse(chunk, without, off_metrics)
                else:
                    off = browse(chunk, without, off_metrics)
                    on = browse(chunk, with_metrics, on_metrics)
                pairs.append((off, on))
                alone.append(metrics_hook_alone(chunk))

    counted = sum(s.value for s in _samples(on_metrics.registry, "schoolgate_requests_total"))
    assert counted >= REQUESTS * (ROUNDS + 1), counted  # the "on" runs really counted
    per_us = lambda t: t / CHUNK * 1e6  # noqa: E731
    off_us = statistics.median(per_us(off) for off, _ in pairs)
    on_us = statistics.median(per_us(on) for _, on in pairs)
    ratio = statistics.median(on / off for off, on in pairs)
    added = statistics.median(per_us(on - off) for off, on in pairs)
    q1, _, q3 = statistics.quantiles([on / off for off, on in pairs], n=4)
    print(f"\nMetrics on the hot path: {REQUESTS:,} requests x {ROUNDS} rounds in interleaved "
          f"pairs of {CHUNK}, one core (requestheaders + request through every addon, by "
          f"mitmproxy's addon manager)")
    print(f"{'':34} {'us/request':>11} {'vs off':>8}")
    print(f"{'metrics off (no-op, no addon)':34} {off_us:11.2f} {1:8.3f}x")
    print(f"{'metrics on':34} {on_us:11.2f} {ratio:8.3f}x   (pair ratios, middle half: "
          f"{q1:.3f}-{q3:.3f})")
    print(f"{'Metrics hook via addon manager':34} "
          f"{statistics.median(per_us(t) for t, _ in alone):11.2f}")
    print(f"{'Metrics hook body, called directly':34} "
          f"{statistics.median(per_us(t) for _, t in alone):11.2f}")
    print(f"metrics add {added:.2f} us per request, {(ratio - 1) * 100:.1f} % of Schoolgate's "
          f"in-process work")


def _check_the_mix(registry) -> None:
    """The warm-up pass decided what MIX says (a hook that failed would be swallowed by
    `safecall` and make the figures meaningless)."""
    def total(name: str, **labels: str) -> float:
        return sum(s.value for s in _samples(registry, name)
                   if all(s.labels.get(k) == v for k, v in labels.items()))

    share = 1 / len(MIX)
    requests = total("schoolgate_requests_total")
    assert requests == REQUESTS, requests
    assert total("schoolgate_fail_closed_errors_total") == 0
    expected = {
        # pupils' and staff's bet365 requests
        "gambling blocks": (REQUESTS * 15 * share,
                            total("schoolgate_requests_total", category="gambling")),
        "illegal blocks": (REQUESTS * share,
                           total("schoolgate_requests_total", category="illegal")),
        # the bomb search: one high-severity phrase blocks it, so it is not rewritten
        "flagged searches": (REQUESTS * share, total("schoolgate_flagged_searches_total")),
        "safe-search rewrites": (REQUESTS * 9 * share,
                                 total("schoolgate_safe_search_rewrites_total")),
    }
    assert all(want == got for want, got in expected.values()), expected


def _samples(registry, name: str):
    for family in registry.collect():
        for s in family.samples:
            if s.name == name:
                yield s


if __name__ == "__main__":
    main()
