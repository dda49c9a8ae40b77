"""The workers' host-name cache: a name is looked up once per TTL, failures and numeric
addresses are never kept, the cache is bounded, and the answer is the resolver's own."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from schoolgate.gateway import resolver


class _Counting(resolver.CachingLoop):
    """The cache over a stand-in for the thread-pool lookup (the real one needs DNS)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[object] = []
        self.now = 1000.0
        self.clock = lambda: self.now

    async def run_in_executor(self, executor, func, *args):  # the base getaddrinfo's hand-off
        host = args[0]
        self.asked.append(host)
        if host == "nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", args[1]))]


def _run(check):
    loop = _Counting()
    try:
        return loop.run_until_complete(check(loop)), loop
    finally:
        loop.close()


def test_a_name_is_looked_up_once_per_ttl():
    async def check(loop):
        first = await loop.getaddrinfo("example.test", 443, type=socket.SOCK_STREAM)
        second = await loop.getaddrinfo("example.test", 443, type=socket.SOCK_STREAM)
        assert first == second == [(socket.AF_INET, socket.SOCK_STREAM, 6, "",
                                    ("127.0.0.1", 443))]
        assert loop.asked == ["example.test"]
        await loop.getaddrinfo("example.test", 80, type=socket.SOCK_STREAM)  # another port
        assert loop.asked == ["example.test"] * 2
        loop.now += resolver.TTL + 0.1
        await loop.getaddrinfo("example.test", 443, type=socket.SOCK_STREAM)
        return loop.asked
    asked, _ = _run(check)
    assert asked == ["example.test"] * 3


def test_failures_are_never_kept():
    async def check(loop):
        for _ in range(2):
            with pytest.raises(socket.gaierror):
                await loop.getaddrinfo("nowhere.test", 443)
        return loop.asked
    asked, _ = _run(check)
    assert asked == ["nowhere.test", "nowhere.test"]


def test_numeric_addresses_are_not_kept():
    async def check(loop):
        await loop.getaddrinfo("10.1.2.3", 443, flags=socket.AI_NUMERICHOST)
        await loop.getaddrinfo("10.1.2.3", 443, flags=socket.AI_NUMERICHOST)
        await loop.getaddrinfo("::1", 443, flags=socket.AI_NUMERICHOST)
        return loop._answers
    answers, _ = _run(check)
    assert answers == {}


def test_the_cache_is_bounded_oldest_out(monkeypatch):
    monkeypatch.setattr(resolver, "SIZE", 3)

    async def check(loop):
        for name in ("a.test", "b.test", "c.test", "d.test"):
            await loop.getaddrinfo(name, 443)
        await loop.getaddrinfo("a.test", 443)  # pushed out: asked again
        return loop.asked
    asked, _ = _run(check)
    assert asked == ["a.test", "b.test", "c.test", "d.test", "a.test"]


def test_a_real_lookup_goes_through():
    loop = resolver.CachingLoop()
    try:
        result = loop.run_until_complete(loop.getaddrinfo("localhost", 80,
                                                          type=socket.SOCK_STREAM))
    finally:
        loop.close()
    assert any(info[4][0] in ("127.0.0.1", "::1") for info in result)


# -- the connect timeout ----------------------------------------------------------------------


def silent_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A port whose accept queue is full: the kernel drops further connection attempts
    unanswered, as a dead address or a dropping firewall does."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(2):  # backlog 0 still queues one; the next fills it or is dropped
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(server.getsockname())
        fillers.append(s)
    return server, fillers


def test_a_connection_that_is_not_answered_fails_with_etimedout_at_the_limit():
    server, fillers = silent_listener()
    loop = resolver.CachingLoop(connect_timeout=0.3)
    try:
        with pytest.raises(TimeoutError) as e:
            loop.run_until_complete(
                asyncio.open_connection(*server.getsockname()))
        assert e.value.errno == errno.ETIMEDOUT
        # As mitmproxy shows it (str of the error), which the error page reads.
        assert str(e.value).startswith(f"[Errno {errno.ETIMEDOUT}] no connection to 127.0.0.1:")
    finally:
        loop.close()
        for s in (*fillers, server):
            s.close()


def test_a_connection_within_the_limit_is_made():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    loop = resolver.CachingLoop(connect_timeout=5)

    async def connect() -> None:
        _, writer = await asyncio.open_connection(*server.getsockname())
        writer.close()
        await writer.wait_closed()

    try:
        loop.run_until_complete(connect())
    finally:
        loop.close()
        server.close()
