"""A worker's channel and event relay: batches reach the other end whole and in order, a full
queue drops and counts, closing sends everything queued, and EOF is seen as the end."""

from __future__ import annotations

import asyncio
import socket

import pytest

from schoolgate.config.model import EventSettings
from schoolgate.events import Event
from schoolgate.gateway.workers.channel import open_channel
from schoolgate.gateway.workers.link import EventRelay


def event(i: int) -> Event:
    return Event(ts=1.0 + i, client_ip="10.0.0.1", group="pupils", action="block",
                 reference=f"REF{i:06d}", url=f"http://example.com/{i}")


async def pair():
    a, b = socket.socketpair()
    return await open_channel(a), await open_channel(b)


@pytest.mark.asyncio
async def test_messages_arrive_in_order_then_the_end():
    ours, theirs = await pair()
    ours.send("events", [event(1)])
    ours.send("ack", 7)
    await ours.close()
    assert await theirs.receive() == ("events", [event(1)])
    assert await theirs.receive() == ("ack", 7)
    assert await theirs.receive() is None
    await theirs.close()


@pytest.mark.asyncio
async def test_the_relay_sends_everything_in_batches_and_flushes_at_close():
    ours, theirs = await pair()
    relay = EventRelay(EventSettings(queue_size=10_000, batch_size=100))
    relay.channel = ours
    await relay.start()
    for i in range(1_050):
        assert relay.put(event(i))
    assert await relay.close() == 1_050  # all were still queued: nothing yielded to the relay
    await ours.close()
    received, sizes = [], []
    while (message := await theirs.receive()) is not None:
        assert message[0] == "events"
        sizes.append(len(message[1]))
        received.extend(message[1])
    assert received == [event(i) for i in range(1_050)]
    assert max(sizes) == 100 and relay.written == 1_050 and relay.dropped == 0
    await theirs.close()


@pytest.mark.asyncio
async def test_a_full_relay_drops_and_counts():
    ours, theirs = await pair()
    dropped = []
    relay = EventRelay(EventSettings(queue_size=3, batch_size=100),
                       on_dropped=lambda: dropped.append(1))
    relay.channel = ours
    await relay.start()
    assert [relay.put(event(i)) for i in range(5)] == [True, True, True, False, False]
    assert relay.depth == 3 and relay.dropped == 2 and len(dropped) == 2
    await relay.close()
    await ours.close()
    assert await theirs.receive() == ("events", [event(0), event(1), event(2)])
    await theirs.close()


@pytest.mark.asyncio
async def test_a_relay_whose_supervisor_is_gone_counts_what_it_could_not_send():
    ours, theirs = await pair()
    await theirs.close()
    relay = EventRelay(EventSettings(queue_size=100_000, batch_size=10))
    relay.channel = ours
    await relay.start()
    for i in range(50_000):  # more than the socket buffers hold
        relay.put(event(i))
    await asyncio.wait_for(relay.close(), 10)
    assert relay.written + relay.dropped == 50_000 and relay.dropped > 0
    await ours.close()
