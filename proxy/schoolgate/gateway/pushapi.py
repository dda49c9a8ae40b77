"""The IP map's push endpoint: network systems (RADIUS accounting, DHCP, logon and logoff scripts)
tell the gateway who is at which IP, over a small authenticated HTTP/1.1 API on 127.0.0.1.

    POST   /v1/ip-map  {"ip": "10.20.1.7", "user": "SCHOOL\\alice", "ttl": 3600}  200 {"stored": 1}
    DELETE /v1/ip-map  {"ip": "10.20.1.7", "user": "alice"}  (user optional)   200 {"deleted": 1}
    GET    /v1/health                                                         200 {"status": "ok"}

POST and DELETE also take a JSON list of such objects (a batch, applied all or nothing) and need
``Authorization: Bearer <token>``. Every answer is JSON; errors say which field is wrong.
Runs on the gateway's event loop: only `asyncio` streams, no new dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..identify.maps import MAX_TTL, IpUserMap
from ..identify.names import normalise_user
from ..identify import normalise_ip

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

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
    413: "Content Too Large", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}

ROUTES = {"/v1/ip-map": ("POST", "DELETE"), "/v1/health": ("GET",)}

_TOKEN_CHARS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_METHOD = re.compile(r"[A-Z]{1,16}")


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)


class PushServer:
    """Serve the push API for `ip_map` on ``host:port`` (port 0: the OS picks; read `.port`).

    `token` is the shared secret senders present as ``Authorization: Bearer <token>``. A request
    must arrive whole within `request_timeout` seconds, or it is answered 408 and closed.
    """

    def __init__(self, ip_map: IpUserMap, token: str, host: str = "127.0.0.1", port: int = 0,
                 *, default_ttl: int = 8 * 3600, request_timeout: float = 10.0,
                 max_connections: int = 64):
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
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen; `.port` is the real port afterwards."""
        self._server = await asyncio.start_server(self._connection, self.host, self.port,
                                                  limit=MAX_HEAD)
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

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if len(self._connections) > self.max_connections:
                await self._send(writer, 503, {"error": "too many connections; try again"},
                                 close=True)
            else:
                while await self._exchange(reader, writer):
                    pass
            await self._linger(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the sender went away; nothing to answer
        except Exception:  # noqa: BLE001 - one bad connection must never stop the server
            log.exception("push API: unexpected error; connection closed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; True to keep the connection for another."""
        try:
            async with asyncio.timeout(self.request_timeout):
                request = await self._read_head(reader)
                if request is None:
                    return False  # closed cleanly between requests
                status, body, keep = await self._handle(request, reader, writer)
        except TimeoutError:
            await self._send(writer, 408, {"error": "request not received in time"}, close=True)
            return False
        except _HTTPError as e:
            peer = writer.get_extra_info("peername")
            log.log(logging.WARNING if e.status == 401 else logging.INFO,
                    "push API: %d for %s: %s", e.status, peer[0] if peer else "?", e.message)
            # The rest of the request was not read: the connection cannot be reused.
            await self._send(writer, e.status, {"error": e.message}, e.headers, close=True)
            return False
        except (ConnectionError, asyncio.IncompleteReadError):
            raise  # the sender went away mid-request: nobody to answer
        except Exception:  # noqa: BLE001 - answer, log, and keep serving others
            log.exception("push API: unexpected error")
            await self._send(writer, 500, {"error": "internal error; see the gateway log"},
                             close=True)
            return False
        await self._send(writer, status, body, close=not keep)
        return keep

    async def _read_head(self, reader: asyncio.StreamReader) -> _Request | None:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _HTTPError(431, f"request line and headers exceed {MAX_HEAD} bytes") from None
        except asyncio.IncompleteReadError as e:
            if not e.partial.strip():
                return None
            raise _HTTPError(400, "request ended before its headers did") from None
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise _HTTPError(400, "request line and headers must be ASCII") from None
        lines = text[:-4].split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not _METHOD.fullmatch(parts[0]) or not parts[1].startswith("/"):
            raise _HTTPError(400, "malformed request line (expected: METHOD /path HTTP/1.1)")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            if version.startswith("HTTP/"):
                raise _HTTPError(505, "only HTTP/1.1 and HTTP/1.0 are spoken here")
            raise _HTTPError(400, "malformed request line (expected: METHOD /path HTTP/1.1)")
        request = _Request(method, target.split("?", 1)[0], version)
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not _TOKEN_CHARS.fullmatch(name):
                raise _HTTPError(400, f"malformed header line {line[:60]!r}")
            name = name.lower()
            value = value.strip(" \t")
            if name in request.headers and name in ("content-length", "authorization",
                                                    "transfer-encoding", "expect"):
                raise _HTTPError(400, f"header {name} given twice")
            request.headers[name] = value
        return request

    async def _handle(self, request: _Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> tuple[int, dict[str, Any], bool]:
        allowed = ROUTES.get(request.path)
        if allowed is None:
            raise _HTTPError(404, f"no such endpoint {request.path[:100]!r} "
                                  f"(there are: {', '.join(ROUTES)})")
        if request.method not in allowed:
            raise _HTTPError(405, f"{request.method} is not allowed here",
                             {"Allow": ", ".join(allowed)})
        if request.path == "/v1/health":
            return 200, {"status": "ok"}, self._keep_alive(request)
        self._check_token(request)
        data = await self._read_json(request, reader, writer)
        if request.method == "POST":
            entries = self._entries(data, ("ip", "user", "ttl"), need_user=True)
            now = self.ip_map.clock()
            for ip, user, ttl in entries:
                assert user is not None
                self.ip_map.set(ip, user, ttl, now=now)
            log.debug("push API: stored %d entries", len(entries))
            return 200, {"stored": len(entries)}, self._keep_alive(request)
        entries = self._entries(data, ("ip", "user"), need_user=False)
        deleted = sum(self.ip_map.forget(ip, user) for ip, user, _ in entries)
        return 200, {"deleted": deleted}, self._keep_alive(request)

    def _check_token(self, request: _Request) -> None:
        value = request.headers.get("authorization")
        if value is None:
            raise _HTTPError(401, "send the token as: Authorization: Bearer <token>",
                             {"WWW-Authenticate": 'Bearer realm="schoolgate"'})
        scheme, _, given = value.partition(" ")
        # compare_digest: the time taken says nothing about how much of the token was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode("utf-8", "surrogateescape"), self._token):
            raise _HTTPError(401, "wrong token",
                             {"WWW-Authenticate": 'Bearer realm="schoolgate", '
                                                  'error="invalid_token"'})

    async def _read_json(self, request: _Request, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> Any:
        if "transfer-encoding" in request.headers:
            raise _HTTPError(411, "send Content-Length; chunked bodies are not accepted")
        length_text = request.headers.get("content-length")
        if length_text is None:
            raise _HTTPError(411, "a Content-Length header is required")
        if not length_text.isdigit() or len(length_text) > 12:
            raise _HTTPError(400, f"Content-Length {length_text[:20]!r} is not a number")
        length = int(length_text)
        if length > MAX_BODY:
            raise _HTTPError(413, f"body of {length} bytes is over the {MAX_BODY}-byte limit; "
                                  "send smaller batches")
        if request.headers.get("expect", "").lower() == "100-continue":
            # curl waits a second for this before sending a body over 1 KiB.
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = await reader.readexactly(length)
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _HTTPError(400, f"body is not valid JSON: {e}") from None

    def _entries(self, data: Any, fields: tuple[str, ...], *, need_user: bool
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
    def _keep_alive(request: _Request) -> bool:
        connection = request.headers.get("connection", "").lower()
        return request.version == "HTTP/1.1" and "close" not in connection

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, body: dict[str, Any],
                    headers: dict[str, str] | None = None, *, close: bool) -> None:
        payload = json.dumps(body).encode("utf-8") + b"\n"
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
                "Content-Type: application/json", f"Content-Length: {len(payload)}",
                "Cache-Control: no-store", f"Connection: {'close' if close else 'keep-alive'}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("ascii") + payload)
        await writer.drain()
