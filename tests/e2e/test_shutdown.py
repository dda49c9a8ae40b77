"""SIGTERM while events are still queued loses none: the gateway writes them all before it exits."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from .harness import (
    GatewayClient,
    count_events,
    read_events,
    running_gateway,
    sample,
    scrape,
    write_config,
)

pytestmark = pytest.mark.e2e

N = 300


def test_sigterm_writes_every_queued_event(tmp_path, pki, origin):
    # Nothing reaches the store on its own: batches never fill and never time out during the test.
    setup = write_config(tmp_path, upstream_ca=pki.ca_cert,
                         events={"flush_interval": 600, "batch_size": N + 100})
    m = uuid.uuid4().hex

    def url(i: int) -> tuple[str, int]:
        # A mix of allowed and blocked, over HTTP and HTTPS.
        return [
            (origin.url("http", f"/hello?m={m}&i={i}"), 200),
            (f"http://blocked.test/?m={m}&i={i}", 403),
            (f"https://www.bet365.com/?m={m}&i={i}", 403),
            (origin.url("https", f"/hello?m={m}&i={i}"), 200),
        ][i % 4]

    with running_gateway("shutdown", setup.config) as gw:
        client = GatewayClient(gw.proxy_port, setup.schoolgate_ca)

        def send(i: int) -> tuple[str, int, int]:
            target, expected = url(i)
            return target, expected, client.get(target).status

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(send, range(N)))
        assert [(t, s) for t, expected, s in results if s != expected] == []

        # Every decision is queued (Record runs before the response is sent) and none written.
        assert sample(scrape(gw.metrics_url), "schoolgate_event_queue_depth") == N
        assert count_events(setup.database) == 0

        assert gw.stop() == 0

    rows = read_events(setup.database, "url LIKE ?", [f"%m={m}&%"])
    assert len(rows) == N == count_events(setup.database)
    assert sorted(r["url"] for r in rows) == sorted(url(i)[0] for i in range(N))
    actions = [r["action"] for r in rows]
    assert actions.count("allow") == N // 2 and actions.count("block") == N // 2
    assert len({r["reference"] for r in rows}) == N
    assert re.search(
        rf"event store closed: {N} events written, {N} flushed at shutdown, 0 dropped", gw.output()
    ), gw.tail()
