"""The one proxy socket: bound by the supervisor, accepted on by every worker.

SO_REUSEADDR (a restart need not wait for old connections in TIME_WAIT) but never SO_REUSEPORT:
with it a second `schoolgate run` on the same port would bind too, silently, and the kernel would
split the school's traffic between the two. One socket inherited by every worker spreads the
connections just as well, and a second gateway fails at once with a clear message.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket

from mitmproxy.addons import proxyserver
from mitmproxy.proxy import mode_servers

from ...config.model import Address

__all__ = ["InheritedSocketProxyserver", "ListenError", "bind_listen_socket"]

BACKLOG = 1024


class ListenError(Exception):
    """The proxy port cannot be listened on; the message says why, for the technician."""


def bind_listen_socket(address: Address) -> socket.socket:
    """A listening TCP socket on `address` (port 0: the OS picks), inheritable by workers."""
    host = address.host or "0.0.0.0"  # noqa: S104 - host '' asks for every interface
    try:
        infos = socket.getaddrinfo(host, address.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ListenError(f"cannot listen on {_shown(address)}: {e.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ListenError(f"cannot listen on {_shown(address)}: address already in use (is "
                              "another schoolgate running?)") from None
        raise ListenError(f"cannot listen on {_shown(address)}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _shown(address: Address) -> str:
    host = address.host or "*"
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


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
