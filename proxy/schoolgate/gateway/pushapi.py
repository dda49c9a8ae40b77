"""The IP map's push endpoint: network systems (RADIUS accounting, DHCP, logon and logoff scripts)
tell the gateway who is at which IP, over a small authenticated HTTP/1.1 API on 127.0.0.1.

    POST   /v1/ip-map  {"ip": "10.20.1.7", "user": "SCHOOL\\alice", "ttl": 3600}  200 {"stored": 1}
    DELETE /v1/ip-map  {"ip": "10.20.1.7", "user": "alice"}  (user optional)   200 {"deleted": 1}
    GET    /v1/health                                                         200 {"status": "ok"}

POST and DELETE also take a JSON list of such objects (a batch, applied all or nothing) and need
``Authorization: Bearer <token>``. Every answer is JSON; errors say which field is wrong.
Runs on the gateway's event loop: asyncio streams carry the bytes, h11 (a mitmproxy dependency)
speaks HTTP/1.1 over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import h11

from ..identify import normalise_ip
from ..identify.maps import MAX_TTL, IpUserMap
from ..identify.names import normalise_user

__all__ = ["PushServer"]

log = logging.getLogger("schoolgate.pushapi")

#: Largest request body accepted (a batch of about a thousand entries).
MAX_BODY = 64 * 1024
#: Largest request line plus headers.
MAX_HEAD = 16 * 1024
#: Entries in one batch at most.
MAX_BATCH = 5_000
#: How long, and how much, a closing connection's unread input is drained (see `_linger`).
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * MAX_BODY
#: Token length at least: a short token can be guessed by anyone who can reach the port.
MIN_TOKEN = 16

ROUTES = {"/v1/ip-map": ("POST", "DELETE"), "/v1/health": ("GET",)}

_HEAD_TOO_LARGE = f"request line and headers exceed {MAX_HEAD} bytes"


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class PushServer:
    """Serve the push API for `ip_map` on ``host:port`` (port 0: the OS picks; read `.port`).

    `token` is the shared secret senders present as ``Authorization: Bearer <token>``. A request
    must arrive whole within `request_timeout` seconds, or it is answered 408 and closed.
    """

    def __init__(self, ip_map: IpUserMap, token: str, host: str = "127.0.0.1", port: int = 0,
                 *, default_ttl: int = 8 * 3600, request_timeout: float = 10.0,
                 max_connections: int = 64,
                 on_change: Callable[[], Awaitable[None]] | None = None) -> None:
        token = token.strip()
        if len(token) < MIN_TOKEN or not token.isprintable() or " " in token:
            raise ValueError(f"push API token must be at least {MIN_TOKEN} printable characters "
                             "without spaces; make one with: openssl rand -hex 32")
        if not 1 <= default_ttl <= MAX_TTL:
            raise ValueError(f"default_ttl must be from 1 to {MAX_TTL} seconds")
        self.ip_map = ip_map
        self._token = token.encode("utf-8")
        self.host = host
        self.port = port
        self.default_ttl = default_ttl
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.on_change = on_change
        """Awaited after a change, before it is answered: `schoolgate run --workers` passes the
        change to every worker there, so a 200 means every worker has the entry."""
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen (on `sock` when given: a listening socket bound before anything started, so
        a busy port stops start-up with one clear line); `.port` is the real port afterwards."""
        if sock is not None:
            self._server = await asyncio.start_server(self._accept, sock=sock)
        else:
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("IP map push API listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop accepting, end open connections (a half-sent request is dropped), wait for them."""
        if self._server is None:
            return
        # 1. No new connections.
        self._server.close()
        # 2. Connections are short-lived requests or idle keep-alives: cancel rather than drain.
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        # 3. Python 3.12's wait_closed waits for every connection, which are all gone now.
        await self._server.wait_closed()
        self._server = None

    # -- one connection ---------------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Our own task, tracked from its creation, so that `stop` cancels even one not yet run.
        task = asyncio.create_task(self._connection(reader, writer))
        self._connections.add(task)

        def done(_: asyncio.Task[None]) -> None:
            self._connections.discard(task)
            writer.close()  # `_connection` closes it too, unless cancelled before it ran

        task.add_done_callback(done)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            if len(self._connections) > self.max_connections:
                await self._send(conn, writer, 503, {"error": "too many connections; try again"},
                                 close=True)
            else:
                while await self._exchange(conn, reader, writer):
                    conn.start_next_cycle()
            await self._linger(reader, writer)
        except ConnectionError:
            pass  # the sender went away; nothing to answer
        except Exception:  # noqa: BLE001 - one bad connection must never stop the server
            log.exception("push API: unexpected error; connection closed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exchange(self, conn: h11.Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; True to keep the connection for another."""
        try:
            async with asyncio.timeout(self.request_timeout):
                request = await self._next_event(conn, reader)
                if not isinstance(request, h11.Request):
                    return False  # closed cleanly between requests
                status, body = await self._handle(request, conn, reader, writer)
        except TimeoutError:
            await self._send(conn, writer, 408, {"error": "request not received in time"},
                             close=True)
            return False
        except _HTTPError as e:
            peer = writer.get_extra_info("peername")
            log.log(logging.WARNING if e.status == 401 else logging.INFO,
                    "push API: %d for %s: %s", e.status, peer[0] if peer else "?", e.message)
            # The rest of the request may be unread: the connection cannot be reused.
            await self._send(conn, writer, e.status, {"error": e.message}, e.headers, close=True)
            return False
        except ConnectionError:
            raise  # the sender went away mid-request: nobody to answer
        except Exception:  # noqa: BLE001 - answer, log, and keep serving others
            log.exception("push API: unexpected error")
            await self._send(conn, writer, 500, {"error": "internal error; see the gateway log"},
                             close=True)
            return False
        await self._send(conn, writer, status, body, close=False)
        # h11 says whether both sides can go on: not after HTTP/1.0 or ``Connection: close``.
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    @staticmethod
    async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader
                          ) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """h11's next event, read for as needed (so never NEED_DATA); bad HTTP is an _HTTPError."""
        try:
            while (event := conn.next_event()) is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))  # b"" at the end: h11 takes it as EOF
        except h11.RemoteProtocolError as e:  # its hint: 400, 431 or 501
            message = _HEAD_TOO_LARGE if e.error_status_hint == 431 else f"bad request: {e}"
            raise _HTTPError(e.error_status_hint, message) from None
        return event

    async def _handle(self, request: h11.Request, conn: h11.Connection,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> tuple[int, dict[str, Any]]:
        # h11 has checked the grammar; what it lets through that this API does not speak:
        if request.http_version not in (b"1.1", b"1.0"):
            raise _HTTPError(505, "only HTTP/1.1 and HTTP/1.0 are spoken here")
        if not request.method.isupper() or not request.target.startswith(b"/"):
            raise _HTTPError(400, "malformed request line (expected: METHOD /path HTTP/1.1)")
        # h11 bounds a head still arriving; one that came in a single read is measured here.
        if len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers) > MAX_HEAD:
            raise _HTTPError(431, _HEAD_TOO_LARGE)
        method = request.method.decode("ascii")
        path = request.target.split(b"?", 1)[0].decode("ascii")  # h11: targets are ASCII
        allowed = ROUTES.get(path)
        if allowed is None:
            raise _HTTPError(404, f"no such endpoint {path[:100]!r} "
                                  f"(there are: {', '.join(ROUTES)})")
        if method not in allowed:
            raise _HTTPError(405, f"{method} is not allowed here", {"Allow": ", ".join(allowed)})
        if path == "/v1/health":
            await self._read_body(request, conn, reader, writer)  # to reuse the connection
            return 200, {"status": "ok"}
        self._check_token(request)
        if _header(request, b"transfer-encoding"):
            raise _HTTPError(411, "send Content-Length; chunked bodies are not accepted")
        if not _header(request, b"content-length"):
            raise _HTTPError(411, "a Content-Length header is required")
        body = await self._read_body(request, conn, reader, writer)
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _HTTPError(400, f"body is not valid JSON: {e}") from None
        if method == "POST":
            entries = self._entries(data, ("ip", "user", "ttl"), need_user=True)
            now = self.ip_map.clock()
            for ip, user, ttl in entries:
                if user is None:  # need_user=True: `_entries` refused it already
                    raise RuntimeError(f"push API: entry for {ip} passed checks without a user")
                self.ip_map.set(ip, user, ttl, now=now)
            log.debug("push API: stored %d entries", len(entries))
            if self.on_change is not None:
                await self.on_change()
            return 200, {"stored": len(entries)}
        entries = self._entries(data, ("ip", "user"), need_user=False)
        deleted = sum(self.ip_map.forget(ip, user) for ip, user, _ in entries)
        if self.on_change is not None:
            await self.on_change()
        return 200, {"deleted": deleted}

    def _check_token(self, request: h11.Request) -> None:
        values = _header(request, b"authorization")
        if not values:
            raise _HTTPError(401, "send the token as: Authorization: Bearer <token>",
                             {"WWW-Authenticate": 'Bearer realm="schoolgate"'})
        if len(values) > 1:
            raise _HTTPError(400, "header authorization given twice")
        scheme, _, given = values[0].partition(b" ")
        # compare_digest: the time taken says nothing about how much of the token was right.
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self._token):
            raise _HTTPError(401, "wrong token",
                             {"WWW-Authenticate": 'Bearer realm="schoolgate", '
                                                  'error="invalid_token"'})

    async def _read_body(self, request: h11.Request, conn: h11.Connection,
                         reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """The body, refused with 413 as soon as it is known to be over `MAX_BODY`."""
        for length in _header(request, b"content-length"):  # h11: digits, one value
            # Over 12 digits cannot be a real length (nor, at 20, fit in 64 bits): refuse it.
            if len(length) > 12:
                raise _HTTPError(400, f"Content-Length {length[:20].decode()} is out of range")
            if int(length) > MAX_BODY:
                raise _HTTPError(413, f"body of {int(length)} bytes is over the {MAX_BODY}-byte "
                                      "limit; send smaller batches")
        if conn.they_are_waiting_for_100_continue:
            # curl waits a second for this before sending a body over 1 KiB.
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[],
                                                             reason=b"Continue")))
            await writer.drain()
        body = bytearray()
        while isinstance(event := await self._next_event(conn, reader), h11.Data):
            body += event.data
            if len(body) > MAX_BODY:  # a chunked body (to /v1/health) says its size only at the end
                raise _HTTPError(413, f"body over the {MAX_BODY}-byte limit")
        return bytes(body)

    def _entries(self, data: object, fields: tuple[str, ...], *, need_user: bool
                 ) -> list[tuple[str, str | None, int]]:
        """Check every entry before any is applied, so a batch is all or nothing."""
        if isinstance(data, list):
            if not data:
                raise _HTTPError(400, "empty list: send at least one entry")
            if len(data) > MAX_BATCH:
                raise _HTTPError(400, f"more than {MAX_BATCH} entries in one batch")
            items = [(f"[{i}].", item) for i, item in enumerate(data)]
        else:
            items = [("", data)]
        out: list[tuple[str, str | None, int]] = []
        for where, item in items:
            if not isinstance(item, dict):
                raise _HTTPError(400, f"{where or 'body'}: expected a JSON object like "
                                      '{"ip": "10.0.0.5", "user": "alice", "ttl": 3600}')
            unknown = sorted(set(item) - set(fields))
            if unknown:
                raise _HTTPError(400, f"{where}{unknown[0]}: unknown field "
                                      f"(allowed: {', '.join(fields)})")
            ip = item.get("ip")
            if not isinstance(ip, str):
                raise _HTTPError(400, f"{where}ip: missing or not text")
            try:
                ip = str(normalise_ip(ip.strip()))
            except ValueError:
                raise _HTTPError(400, f"{where}ip: {ip[:60]!r} is not an IP address") from None
            user = item.get("user")
            if user is None and need_user:
                raise _HTTPError(400, f"{where}user: missing")
            if user is not None:
                if not isinstance(user, str):
                    raise _HTTPError(400, f"{where}user: must be text")
                try:
                    user = normalise_user(user)
                except ValueError as e:
                    raise _HTTPError(400, f"{where}user: {e}") from None
            ttl = item.get("ttl", self.default_ttl)
            if (isinstance(ttl, bool) or not isinstance(ttl, int | float)
                    or not math.isfinite(ttl) or not 1 <= ttl <= MAX_TTL):
                raise _HTTPError(400, f"{where}ttl: must be a number of seconds from 1 to "
                                      f"{MAX_TTL}, not {json.dumps(ttl)[:40]}")
            out.append((ip, user, int(ttl)))
        return out

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, then read and drop what the sender still sends, for a moment: closing a
        socket with unread data in it makes the kernel send a reset, which can destroy our answer
        (a 413, say) before the sender has read it."""
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(LINGER_SECONDS):
                received = 0
                while received < LINGER_BYTES:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    received += len(chunk)

    @staticmethod
    async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                    body: dict[str, Any], headers: dict[str, str] | None = None, *,
                    close: bool) -> None:
        payload = json.dumps(body).encode("utf-8") + b"\n"
        head = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                ("Cache-Control", "no-store"), ("Connection", "close" if close else "keep-alive"),
                *(headers or {}).items()]
        writer.write(conn.send(h11.Response(status_code=status, headers=head,
                                            reason=HTTPStatus(status).phrase.encode("ascii"))))
        writer.write(conn.send(h11.Data(data=payload)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()


def _header(request: h11.Request, name: bytes) -> list[bytes]:
    """Every value of header `name`, given in lower case (as h11 gives header names)."""
    return [value for key, value in request.headers if key == name]
