"""The IP map's push endpoint, through a real socket: well-formed requests from Python's own HTTP
client (so our HTTP is checked by someone else's parser), malformed ones as raw bytes.

Expiry uses a `FakeClock`; the only timeout test gives the server a short request timeout and
checks what it answers, never how long it took.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from schoolgate.gateway.pushapi import MAX_BODY, MAX_HEAD, PushServer
from schoolgate.identify.maps import IpUserMap

TOKEN = "0123456789abcdef-push-token"


class FakeClock:
    def __init__(self, now: float = 5_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Push:
    server: PushServer
    ips: IpUserMap
    clock: FakeClock

    @property
    def port(self) -> int:
        return self.server.port


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


@pytest_asyncio.fixture
async def push() -> AsyncIterator[Push]:
    clock = FakeClock()
    ips = IpUserMap(clock=clock)
    server = PushServer(ips, TOKEN)
    await server.start()
    try:
        yield Push(server, ips, clock)
    finally:
        await server.stop()


async def call(port: int, method: str, path: str, body: Any = None, *,
               token: str | None = TOKEN, raw_body: bytes | None = None,
               headers: dict[str, str] | None = None) -> Reply:
    """One request with http.client (in a thread: it blocks), on its own connection."""

    def run() -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            h = dict(headers or {})
            if token is not None:
                h["Authorization"] = f"Bearer {token}"
            data = raw_body if raw_body is not None else (
                None if body is None else json.dumps(body).encode())
            if data is not None:
                h.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=h)
            response = conn.getresponse()
            payload = response.read()
            assert response.getheader("Content-Type") == "application/json"
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                         json.loads(payload))
        finally:
            conn.close()

    return await asyncio.to_thread(run)


async def raw(port: int, data: bytes) -> bytes:
    """Send bytes as they are; return everything the server says before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=30)  # a bound, not a measurement
    finally:
        writer.close()
        await writer.wait_closed()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> Any:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


def head(method: str, path: str, *lines: str) -> bytes:
    return ("\r\n".join([f"{method} {path} HTTP/1.1", "Host: gateway", *lines]) + "\r\n\r\n"
            ).encode()


AUTH = f"Authorization: Bearer {TOKEN}"


class _Received(io.BytesIO):
    """What one connection received, for http.client to read answer after answer from."""

    def makefile(self, mode: str) -> _Received:
        return self

    def close(self) -> None:
        pass  # http.client closes its file after an answer that says `Connection: close`


def replies_in(response: bytes) -> list[Reply]:
    """Every answer in `response` (bytes read up to the close), parsed by http.client."""
    received = _Received(response)
    replies = []
    while received.tell() < len(response):
        answer = http.client.HTTPResponse(received)  # type: ignore[arg-type]
        answer.begin()
        replies.append(Reply(answer.status, {k.lower(): v for k, v in answer.getheaders()},
                             json.loads(answer.read())))
    return replies


# ---------------------------------------------------------------------------------------------
# What senders normally do


@pytest.mark.asyncio
async def test_health(push):
    reply = await call(push.port, "GET", "/v1/health", token=None)
    assert (reply.status, reply.body) == (200, {"status": "ok"})


@pytest.mark.asyncio
async def test_listens_on_loopback_on_an_ephemeral_port(push):
    assert push.server.host == "127.0.0.1"
    assert push.port > 0


@pytest.mark.asyncio
async def test_post_stores_and_entries_expire(push):
    reply = await call(push.port, "POST", "/v1/ip-map",
                       {"ip": "::ffff:10.20.1.7", "user": "SCHOOL\\Alice", "ttl": 3600})
    assert (reply.status, reply.body) == (200, {"stored": 1})
    assert reply.headers["cache-control"] == "no-store"
    assert push.ips.get("10.20.1.7") == "alice"
    push.clock.now += 3600
    assert push.ips.get("10.20.1.7") is None


@pytest.mark.asyncio
async def test_post_without_ttl_uses_the_default(push):
    reply = await call(push.port, "POST", "/v1/ip-map", {"ip": "10.0.0.1", "user": "bob"})
    assert reply.status == 200
    push.clock.now += push.server.default_ttl - 1
    assert push.ips.get("10.0.0.1") == "bob"
    push.clock.now += 1
    assert push.ips.get("10.0.0.1") is None


@pytest.mark.asyncio
async def test_post_batch(push):
    batch = [{"ip": f"10.0.0.{i}", "user": f"user{i}", "ttl": 60} for i in range(1, 201)]
    reply = await call(push.port, "POST", "/v1/ip-map", batch)
    assert (reply.status, reply.body) == (200, {"stored": 200})
    assert push.ips.get("10.0.0.200") == "user200"


@pytest.mark.asyncio
async def test_a_batch_is_all_or_nothing(push):
    batch = [{"ip": "10.0.0.1", "user": "a"}, {"ip": "10.0.0.999", "user": "b"}]
    reply = await call(push.port, "POST", "/v1/ip-map", batch)
    assert (reply.status, reply.body) == (
        400, {"error": "[1].ip: '10.0.0.999' is not an IP address"})
    assert push.ips.get("10.0.0.1") is None


@pytest.mark.asyncio
async def test_delete_is_a_logoff(push):
    push.ips.set("10.0.0.5", "bob", 600)
    # A late logoff for the previous user does not end bob's session.
    reply = await call(push.port, "DELETE", "/v1/ip-map", {"ip": "10.0.0.5", "user": "alice"})
    assert (reply.status, reply.body) == (200, {"deleted": 0})
    assert push.ips.get("10.0.0.5") == "bob"
    reply = await call(push.port, "DELETE", "/v1/ip-map", [{"ip": "10.0.0.5", "user": "Bob"},
                                                           {"ip": "10.0.0.6"}])
    assert (reply.status, reply.body) == (200, {"deleted": 1})
    assert push.ips.get("10.0.0.5") is None


@pytest.mark.asyncio
async def test_keep_alive(push):
    def run() -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", push.port, timeout=10)
        statuses = []
        try:
            for i in range(3):
                conn.request("POST", "/v1/ip-map", json.dumps({"ip": f"10.1.0.{i}", "user": "x"}),
                             {"Authorization": f"Bearer {TOKEN}"})
                response = conn.getresponse()
                response.read()
                assert response.getheader("Connection") == "keep-alive"
                statuses.append(response.status)
                # Still the same socket: http.client would have opened a new one otherwise.
                if i == 0:
                    first = conn.sock
                assert conn.sock is first
        finally:
            conn.close()
        return statuses

    assert await asyncio.to_thread(run) == [200, 200, 200]
    assert len(push.ips) == 3


@pytest.mark.asyncio
async def test_expect_100_continue(push):
    # curl sends this header for bodies over 1 KiB and waits for the interim answer.
    body = json.dumps({"ip": "10.0.0.9", "user": "carol", "ttl": 60}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", push.port)
    try:
        writer.write(head("POST", "/v1/ip-map", AUTH, f"Content-Length: {len(body)}",
                          "Expect: 100-continue", "Connection: close"))
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        await writer.drain()
        final = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
        await writer.wait_closed()
    assert status_of(final) == 200
    assert push.ips.get("10.0.0.9") == "carol"


@pytest.mark.asyncio
async def test_pipelined_requests_on_one_connection_are_answered_in_order(push):
    # Sent in one write, before any answer: the second waits in the parser's buffer.
    entry = json.dumps({"ip": "10.2.0.1", "user": "dave"}).encode()
    response = await raw(push.port, b"".join([
        head("POST", "/v1/ip-map", AUTH, f"Content-Length: {len(entry)}") + entry,
        head("GET", "/v1/health"),
        head("DELETE", "/v1/ip-map", AUTH, f"Content-Length: {len(entry)}",
             "Connection: close") + entry,
    ]))
    replies = replies_in(response)
    assert [(r.status, r.body) for r in replies] == [
        (200, {"stored": 1}), (200, {"status": "ok"}), (200, {"deleted": 1})]
    assert [r.headers["connection"] for r in replies] == ["keep-alive", "keep-alive", "close"]
    assert len(push.ips) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "request_head",
    [
        head("GET", "/v1/health", "Connection: close"),
        head("GET", "/v1/health", "Connection: Close"),
        b"GET /v1/health HTTP/1.0\r\n\r\n",  # HTTP/1.0 closes unless asked not to
    ],
)
async def test_the_connection_ends_after_an_answer_that_says_close(push, request_head, caplog):
    # A request after the one that asked to close is never answered.
    response = await raw(push.port, request_head + head("GET", "/v1/health"))
    [reply] = replies_in(response)
    assert (reply.status, reply.body) == (200, {"status": "ok"})
    assert reply.headers["connection"] == "close"
    # Ended on purpose, not by tripping over the closed state.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.asyncio
async def test_a_chunked_body_is_decoded_and_the_connection_stays_in_step(push):
    # Health ignores its body, but must read all of it to find where the next request starts;
    # the second chunk looks like a request line, to catch a server that loses its place.
    chunked = b"4\r\nJUNK\r\n10\r\nGET / HTTP/1.1\r\n\r\n0\r\n\r\n"
    response = await raw(push.port, head("GET", "/v1/health", "Transfer-Encoding: chunked")
                         + chunked + head("GET", "/v1/health", "Connection: close"))
    assert [(r.status, r.body) for r in replies_in(response)] == [
        (200, {"status": "ok"}), (200, {"status": "ok"})]


# ---------------------------------------------------------------------------------------------
# Every error, with the field or header it is about


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"user": "alice"}, "ip: missing or not text"),
        ({"ip": 167772161, "user": "alice"}, "ip: missing or not text"),
        ({"ip": "10.0.0", "user": "alice"}, "ip: '10.0.0' is not an IP address"),
        ({"ip": "10.0.0.1"}, "user: missing"),
        ({"ip": "10.0.0.1", "user": 7}, "user: must be text"),
        ({"ip": "10.0.0.1", "user": "  "}, "user: '  ' is not a username"),
        ({"ip": "10.0.0.1", "user": "eve\nFAKE LOG LINE"},
         "user: username 'eve\\nFAKE LOG LINE' contains control characters"),
        ({"ip": "10.0.0.1", "user": "a", "ttl": 0}, "ttl: must be a number of seconds from 1 "
                                                    "to 604800, not 0"),
        ({"ip": "10.0.0.1", "user": "a", "ttl": 604801}, "ttl: must be a number of seconds "
                                                         "from 1 to 604800, not 604801"),
        ({"ip": "10.0.0.1", "user": "a", "ttl": "3600"}, "ttl: must be a number of seconds "
                                                         'from 1 to 604800, not "3600"'),
        ({"ip": "10.0.0.1", "user": "a", "ttl": True}, "ttl: must be a number of seconds "
                                                       "from 1 to 604800, not true"),
        ({"ip": "10.0.0.1", "user": "a", "tll": 60}, "tll: unknown field (allowed: ip, user, "
                                                     "ttl)"),
        ([], "empty list: send at least one entry"),
        ("10.0.0.1 alice", 'body: expected a JSON object like {"ip": "10.0.0.5", "user": '
                           '"alice", "ttl": 3600}'),
        ([{"ip": "10.0.0.1", "user": "a"}, 5], '[1].: expected a JSON object like {"ip": '
                                                '"10.0.0.5", "user": "alice", "ttl": 3600}'),
    ],
)
async def test_400_names_the_field(push, body, error):
    reply = await call(push.port, "POST", "/v1/ip-map", body)
    assert (reply.status, reply.body) == (400, {"error": error})
    assert len(push.ips) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("raw_body", "error"),
    [
        (b'{"ip": "10.0.0.1", "user": ', "body is not valid JSON: Expecting value: line 1 "
                                          "column 28 (char 27)"),
        (b"", "body is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        (b'{"ip": "10.0.0.1", "user": "\xff"}', "body is not valid JSON: 'utf-8' codec can't "
                                                "decode byte 0xff in position 28: invalid "
                                                "start byte"),
    ],
)
async def test_400_bad_json(push, raw_body, error):
    reply = await call(push.port, "POST", "/v1/ip-map", raw_body=raw_body)
    assert (reply.status, reply.body) == (400, {"error": error})


@pytest.mark.asyncio
async def test_delete_checks_its_fields_too(push):
    reply = await call(push.port, "DELETE", "/v1/ip-map", {"ip": "10.0.0.1", "ttl": 5})
    assert (reply.status, reply.body) == (400, {"error": "ttl: unknown field (allowed: ip, "
                                                         "user)"})


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "token", "challenge", "error"),
    [
        ({}, None, 'Bearer realm="schoolgate"', "send the token as: Authorization: Bearer "
                                                "<token>"),
        ({}, "wrong-token-of-some-length", 'Bearer realm="schoolgate", error="invalid_token"',
         "wrong token"),
        # The right token's first half is still wrong.
        ({}, TOKEN[:10], 'Bearer realm="schoolgate", error="invalid_token"', "wrong token"),
        ({"Authorization": f"Basic {TOKEN}"}, None,
         'Bearer realm="schoolgate", error="invalid_token"', "wrong token"),
        ({"Authorization": "Bearer"}, None,
         'Bearer realm="schoolgate", error="invalid_token"', "wrong token"),
    ],
)
async def test_401(push, headers, token, challenge, error):
    reply = await call(push.port, "POST", "/v1/ip-map", {"ip": "10.0.0.1", "user": "a"},
                       token=token, headers=headers)
    assert (reply.status, reply.body) == (401, {"error": error})
    assert reply.headers["www-authenticate"] == challenge
    assert len(push.ips) == 0


@pytest.mark.asyncio
async def test_token_scheme_is_case_insensitive(push):
    reply = await call(push.port, "POST", "/v1/ip-map", {"ip": "10.0.0.1", "user": "a"},
                       token=None, headers={"Authorization": f"bearer {TOKEN}"})
    assert reply.status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/", "/v1/ip-map/10.0.0.1", "/v2/ip-map", "/v1/healthz"])
async def test_404(push, path):
    reply = await call(push.port, "GET", path)
    assert reply.status == 404
    assert reply.body["error"].startswith(f"no such endpoint {path!r}")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/ip-map", "POST, DELETE"),
        ("PUT", "/v1/ip-map", "POST, DELETE"),
        ("POST", "/v1/health", "GET"),
        ("DELETE", "/v1/health", "GET"),
    ],
)
async def test_405_says_what_is_allowed(push, method, path, allow):
    reply = await call(push.port, method, path)
    assert (reply.status, reply.body) == (405, {"error": f"{method} is not allowed here"})
    assert reply.headers["allow"] == allow


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([], "a Content-Length header is required"),
        (["Transfer-Encoding: chunked"], "send Content-Length; chunked bodies are not accepted"),
    ],
)
async def test_411(push, lines, error):
    response = await raw(push.port, head("POST", "/v1/ip-map", AUTH, *lines) + b"5\r\nhello\r\n")
    assert status_of(response) == 411
    assert body_of(response) == {"error": error}


@pytest.mark.asyncio
async def test_413_before_reading_the_body(push):
    response = await raw(push.port, head("POST", "/v1/ip-map", AUTH,
                                         f"Content-Length: {MAX_BODY + 1}"))
    assert status_of(response) == 413
    assert body_of(response)["error"].startswith(f"body of {MAX_BODY + 1} bytes is over")
    assert b"Connection: close" in response


@pytest.mark.asyncio
async def test_413_a_chunked_body_over_the_limit_while_it_is_read(push):
    # No length up front: counted as it arrives (health reads its body to keep the connection).
    chunk = b"%x\r\n" % 4096 + b" " * 4096 + b"\r\n"
    response = await raw(push.port, head("GET", "/v1/health", "Transfer-Encoding: chunked")
                         + chunk * (MAX_BODY // 4096 + 1) + b"0\r\n\r\n")
    assert status_of(response) == 413
    assert body_of(response) == {"error": f"body over the {MAX_BODY}-byte limit"}


@pytest.mark.asyncio
async def test_a_body_of_exactly_the_limit_is_read(push):
    entry = json.dumps({"ip": "10.0.0.1", "user": "a"}).encode()
    body = entry + b" " * (MAX_BODY - len(entry))
    reply = await call(push.port, "POST", "/v1/ip-map", raw_body=body)
    assert reply.status == 200


@pytest.mark.asyncio
async def test_unauthenticated_requests_are_refused_before_their_length_is_looked_at(push):
    response = await raw(push.port, head("POST", "/v1/ip-map", f"Content-Length: {MAX_BODY * 9}"))
    assert status_of(response) == 401


@pytest_asyncio.fixture
async def impatient() -> AsyncIterator[Push]:
    clock = FakeClock()
    ips = IpUserMap(clock=clock)
    server = PushServer(ips, TOKEN, request_timeout=0.2)
    await server.start()
    try:
        yield Push(server, ips, clock)
    finally:
        await server.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "partial",
    [
        b"POST /v1/ip-map HTTP/1.1\r\nHost: gateway\r\n",  # headers never finish
        head("POST", "/v1/ip-map", AUTH, "Content-Length: 100") + b'{"ip": ',  # body never does
        b"",  # connects and says nothing
    ],
)
async def test_408_slow_client(impatient, partial):
    response = await raw(impatient.port, partial)
    assert status_of(response) == 408
    assert body_of(response) == {"error": "request not received in time"}


@pytest.mark.asyncio
async def test_431_huge_headers(push):
    response = await raw(push.port, head("GET", "/v1/health", "X-Junk: " + "a" * 20_000))
    assert status_of(response) == 431


@pytest.mark.asyncio
async def test_431_headers_that_arrive_slowly_and_never_end(push):
    # Refused once they pass the limit, not when (if ever) they end.
    reader, writer = await asyncio.open_connection("127.0.0.1", push.port)
    try:
        writer.write(b"GET /v1/health HTTP/1.1\r\nHost: gateway\r\n")
        for _ in range(MAX_HEAD // 1000 + 1):
            writer.write(b"X-Junk: " + b"a" * 990 + b"\r\n")
            await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
        await writer.wait_closed()
    assert status_of(response) == 431
    assert body_of(response) == {"error": f"request line and headers exceed {MAX_HEAD} bytes"}


@pytest.mark.asyncio
async def test_431_many_small_headers(push):
    lines = [f"X-Junk-{i}: {'a' * 80}" for i in range(MAX_HEAD // 90 + 1)]
    response = await raw(push.port, head("GET", "/v1/health", *lines))
    assert status_of(response) == 431
    assert body_of(response) == {"error": f"request line and headers exceed {MAX_HEAD} bytes"}


@pytest.mark.asyncio
async def test_headers_just_under_the_limit_are_read(push):
    request = head("GET", "/v1/health", "Connection: close", "X-Junk: ")
    response = await raw(push.port, head("GET", "/v1/health", "Connection: close",
                                         "X-Junk: " + "a" * (MAX_HEAD - len(request) - 100)))
    assert status_of(response) == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /v1/health",  # no version
        b"GET /v1/health HTTP/1.1 extra",
        b"GET  /v1/health HTTP/1.1",  # two spaces
        b"get /v1/health HTTP/1.1",  # methods are case-sensitive
        b"GET v1/health HTTP/1.1",  # not an origin-form target
        b"GET http://gateway/v1/health HTTP/1.1",  # a proxy's absolute form: not here
        b"GET /v1/health HTTP/one",
        "GET /v1/h\u00e9alth HTTP/1.1".encode(),
    ],
)
async def test_400_malformed_request_line(push, request_line):
    response = await raw(push.port, request_line + b"\r\nHost: gateway\r\n\r\n")
    [reply] = replies_in(response)
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["connection"] == "close"
    assert isinstance(reply.body["error"], str) and reply.body["error"]


@pytest.mark.asyncio
async def test_411_a_whole_chunked_upload_is_refused_not_misread(push):
    # As `curl -H "Transfer-Encoding: chunked"` sends it: the body ends properly, still refused.
    body = json.dumps({"ip": "10.0.0.1", "user": "a"}).encode()
    response = await raw(push.port, head("POST", "/v1/ip-map", AUTH, "Transfer-Encoding: chunked")
                         + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    [reply] = replies_in(response)
    assert (reply.status, reply.body) == (
        411, {"error": "send Content-Length; chunked bodies are not accepted"})
    assert len(push.ips) == 0


@pytest.mark.asyncio
async def test_400_a_second_authorization_header(push):
    body = json.dumps({"ip": "10.0.0.1", "user": "a"}).encode()
    response = await raw(push.port, head("POST", "/v1/ip-map", AUTH, "Authorization: Bearer x",
                                         f"Content-Length: {len(body)}") + body)
    assert status_of(response) == 400
    assert body_of(response) == {"error": "header authorization given twice"}
    assert len(push.ips) == 0


@pytest.mark.asyncio
async def test_505_other_http_versions(push):
    response = await raw(push.port, b"GET /v1/health HTTP/2.0\r\n\r\n")
    assert status_of(response) == 505


@pytest.mark.asyncio
async def test_503_too_many_connections(push):
    push.server.max_connections = 1
    reader, writer = await asyncio.open_connection("127.0.0.1", push.port)
    try:
        writer.write(head("GET", "/v1/health"))  # keep-alive: the connection stays open
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"}\n"), timeout=30)
        response = await raw(push.port, head("GET", "/v1/health"))
        assert status_of(response) == 503
    finally:
        writer.close()
        await writer.wait_closed()


# ---------------------------------------------------------------------------------------------
# Garbage never hurts it


GARBAGE = [
    b"\x00" * 100 + b"\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n",  # TLS
    "GËT /v1/health HTTP/1.1\r\n\r\n".encode(),
    b"GET\r\n\r\n",
    b"\r\n\r\n",
    b"get /v1/health HTTP/1.1\r\n\r\n",
    b"GET v1/health HTTP/1.1\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\n folded: header\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nBad Name: x\r\n\r\n",
    head("POST", "/v1/ip-map", AUTH, "Content-Length: -1"),
    head("POST", "/v1/ip-map", AUTH, "Content-Length: 1e3"),
    head("POST", "/v1/ip-map", AUTH, "Content-Length: 99999999999999999999"),
    head("POST", "/v1/ip-map", AUTH, "Content-Length: 5", "Content-Length: 6"),
    head("POST", "/v1/ip-map", AUTH, "Content-Length: 10") + b"short",  # then hangs up
    b"GET /v1/health HTTP/1.1\r\nHost: x",  # hangs up mid-header
]


@pytest.mark.asyncio
@pytest.mark.parametrize("garbage", GARBAGE)
async def test_garbage_gets_an_answer_or_a_close_and_the_server_lives_on(push, garbage):
    reader, writer = await asyncio.open_connection("127.0.0.1", push.port)
    try:
        writer.write(garbage)
        await writer.drain()
        writer.write_eof()
        response = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
        await writer.wait_closed()
    if response:
        assert status_of(response) == 400
        assert "error" in body_of(response)
    reply = await call(push.port, "GET", "/v1/health", token=None)
    assert reply.status == 200


# ---------------------------------------------------------------------------------------------
# Life cycle


def test_a_short_token_is_refused():
    with pytest.raises(ValueError, match="at least 16 printable characters"):
        PushServer(IpUserMap(), "secret")
    with pytest.raises(ValueError, match="at least 16"):
        PushServer(IpUserMap(), "with spaces inside it")


@pytest.mark.asyncio
async def test_stop_ends_idle_connections_and_the_port():
    server = PushServer(IpUserMap(), TOKEN)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head("GET", "/v1/health"))
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b"}\n"), timeout=30)
    await asyncio.wait_for(server.stop(), timeout=30)
    assert await asyncio.wait_for(reader.read(), timeout=30) == b""
    writer.close()
    await writer.wait_closed()
    with pytest.raises(OSError):
        _, w = await asyncio.open_connection("127.0.0.1", server.port)
        w.close()
        await w.wait_closed()
