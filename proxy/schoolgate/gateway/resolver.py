"""A worker's event loop with a small cache of host-name lookups, and a bound on how long reaching
a site's server may take.

mitmproxy opens every upstream connection with `asyncio.open_connection(host, port)`, and asyncio
resolves the name with `getaddrinfo` in its thread pool every time: a hand-off to a thread, a
UDP round trip to the resolver, and the result handed back. A py-spy profile of `make
bench-proxy`'s plain-HTTP mix (100 sites, 32 clients) put 21 % of a worker's samples in that
(`getaddrinfo` and the pool's `_worker`), more than all of Schoolgate's own filtering. A
school's pupils visit the same few hundred sites all day, so the answers are kept for a short
time, as browsers do (Chrome keeps them a minute): `TTL` seconds, at most `SIZE` names, failures
never kept. glibc gives no DNS TTLs, so a changed record is seen at most `TTL` seconds late.

mitmproxy connects with no time limit of its own: a server that drops the connection attempt
(a dead address, a firewall) held the person's page for as long as the kernel retries, two
minutes on Linux. `connect_timeout` bounds the lookup and the connection together; past it the
attempt fails with ETIMEDOUT, which the error page shows as "the site did not answer in time"
(504).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["CachingLoop", "SIZE", "TTL"]

TTL = 30.0
SIZE = 4096

_Host = bytes | str | None
_Port = bytes | str | int | None
_Key = tuple[_Host, _Port, int, int, int, int]
_Result = list[tuple[Any, ...]]


class CachingLoop(asyncio.SelectorEventLoop):
    """asyncio's default loop on Linux, with `getaddrinfo` answered from a bounded TTL cache."""

    def __init__(self, connect_timeout: float | None = None) -> None:
        super().__init__()
        self._answers: OrderedDict[_Key, tuple[float, _Result]] = OrderedDict()
        self.clock = time.monotonic
        self.connect_timeout = connect_timeout
        """Seconds a connection to a host may take (lookup included); None: no limit."""

    async def create_connection(  # type: ignore[override]
            self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str | None = None,
            port: int | None = None,
            **kwargs: Any,  # noqa: ANN401 - asyncio's own keywords, passed on as they are
    ) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
        connect = super().create_connection
        limit = self.connect_timeout
        if host is None or limit is None:  # a socket already connected (the worker's channel)
            return await connect(protocol_factory, host, port, **kwargs)  # type: ignore[arg-type]
        try:
            async with asyncio.timeout(limit) as deadline:
                return await connect(protocol_factory, host, port, **kwargs)  # type: ignore[arg-type]
        except TimeoutError:
            if not deadline.expired():
                raise  # the kernel's own ETIMEDOUT
            raise TimeoutError(errno.ETIMEDOUT, f"no connection to {host}:{port} within "
                                                f"{limit:g} s") from None

    async def getaddrinfo(self, host: _Host, port: _Port, *, family: int = 0, type: int = 0,  # noqa: A002 - asyncio's own signature
                          proto: int = 0, flags: int = 0) -> _Result:
        key = (host, port, family, type, proto, flags)
        now = self.clock()
        hit = self._answers.get(key)
        if hit is not None and hit[0] > now:
            self._answers.move_to_end(key)
            return list(hit[1])
        result = await super().getaddrinfo(host, port, family=family, type=type, proto=proto,
                                           flags=flags)
        if host is not None and not _numeric(host):
            self._answers[key] = (now + TTL, list(result))
            self._answers.move_to_end(key)
            while len(self._answers) > SIZE:
                self._answers.popitem(last=False)
        return result


def _numeric(host: bytes | str) -> bool:
    """An address already (asyncio resolves those without the thread pool): nothing to keep."""
    text = host.decode() if isinstance(host, bytes) else str(host)
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text.split("%", 1)[0])
        except OSError:
            continue
        return True
    return False
