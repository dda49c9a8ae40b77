"""The one proxy socket, bound by the supervisor (`schoolgate.gateway.ports`), accepted on by
every worker.

SO_REUSEADDR (a restart need not wait for old connections in TIME_WAIT) but never SO_REUSEPORT:
with it a second `schoolgate run` on the same port would bind too, silently, and the kernel would
split the school's traffic between the two. One socket inherited by every worker spreads the
connections just as well, and a second gateway fails at once with a clear message.
"""

from __future__ import annotations

import asyncio
import functools
import socket

from mitmproxy.addons import proxyserver
from mitmproxy.proxy import mode_servers

from ..ports import BACKLOG

__all__ = ["InheritedSocketProxyserver"]


class InheritedSocketProxyserver(proxyserver.Proxyserver):
    """mitmproxy's proxy server addon, accepting on a socket this process inherited instead of
    binding its own.

    The hook is the smallest mitmproxy 12 offers: `Servers` announces each new, not yet started
    server instance on its `changed` signal; for the regular and transparent modes (the two
    Schoolgate runs) the instance's `listen` is replaced by one that serves `sock` with
    `asyncio.start_server(sock=...)`. Everything else (connection handling, `listen_addrs` from
    the server's sockets, shutdown) is mitmproxy's own, and so is the banner's address."""

    name = "proxyserver"

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock: socket.socket | None = sock
        self.servers.changed.connect(self._adopt)  # held weakly: the addon lives as long

    def _adopt(self) -> None:
        for instance in self.servers:
            if (self._sock is not None and not instance.is_running
                    and isinstance(instance, mode_servers.RegularInstance
                                   | mode_servers.TransparentInstance)):
                sock, self._sock = self._sock, None  # one server serves it
                instance.listen = functools.partial(_serve_socket, instance, sock)  # type: ignore[method-assign, assignment]


async def _serve_socket(instance: mode_servers.AsyncioServerInstance, sock: socket.socket,
                        host: str, port: int) -> list[asyncio.Server]:
    # One connection accepted per wake-up (nginx's `multi_accept off`), not asyncio's default
    # of up to `backlog` in a loop: every worker is woken when connections wait, and with the
    # default the first to run took a whole burst (wrk's 32 connections at once landed on one
    # worker, and --workers 2 served 1.0x of one worker's rate in some runs). Taking one at a
    # time, a busy worker takes fewer, so the load spreads by itself. asyncio passes `backlog`
    # to both listen() and its accept loop; the kernel's queue is set back right after.
    server = await asyncio.start_server(instance.handle_stream, sock=sock, backlog=1)
    sock.listen(BACKLOG)
    return [server]
