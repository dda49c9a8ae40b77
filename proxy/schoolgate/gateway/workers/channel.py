"""The supervisor <-> worker channel: length-prefixed pickled messages over an inherited
`socket.socketpair()` end, one pair per worker.

Pickle is safe here because nothing else can reach the socket: it is an anonymous pair made by
the supervisor and inherited by its own child, never a path or a port. Messages are tuples whose
first item names them (see `supervisor` and `link`).
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

__all__ = ["Channel", "open_channel", "wait_for_go"]

_HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024
"""A frame larger than this is a bug (a batch is at most `events.batch_size` events)."""


class Channel:
    """One end of a worker's socket pair, on the running loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    def send(self, *message: object) -> None:
        """Queue `message` for sending (never waits; `drain` waits for the socket)."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(_HEADER.pack(len(data)) + data)

    async def drain(self) -> None:
        await self._writer.drain()

    async def receive(self) -> tuple[Any, ...] | None:
        """The next message, or None once the other end has closed."""
        try:
            head = await self._reader.readexactly(_HEADER.size)
            (size,) = _HEADER.unpack(head)
            if size > MAX_FRAME:
                raise ConnectionError(f"worker channel: a frame of {size} bytes")
            data = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        message = pickle.loads(data)  # noqa: S301 - our own child on an anonymous socket pair
        if not isinstance(message, tuple) or not message:
            raise ConnectionError(f"worker channel: unexpected message {message!r:.80}")
        return message

    @property
    def closing(self) -> bool:
        return self._writer.is_closing()

    async def close(self) -> None:
        """Send what is queued, then close (the other end reads everything sent, then EOF)."""
        if self._writer.is_closing():
            return
        try:
            await self._writer.drain()
        except ConnectionError:
            pass
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except ConnectionError:
            pass


def wait_for_go(sock: socket.socket) -> bool:
    """Block until the supervisor sends ("go",) on `sock`, the first thing it sends a held
    worker; False when the channel closes first (the gateway is stopping)."""
    def read(n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    head = read(_HEADER.size)
    if head is None:
        return False
    body = read(_HEADER.unpack(head)[0])
    if body is None:
        return False
    message = pickle.loads(body)  # noqa: S301 - our own parent on an anonymous socket pair
    if message != ("go",):
        raise ConnectionError(f"worker channel: expected go, got {message!r:.80}")
    return True


async def open_channel(sock: socket.socket) -> Channel:
    """A `Channel` over a connected stream socket (the socket is now the channel's)."""
    reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_FRAME)
    return Channel(reader, writer)
