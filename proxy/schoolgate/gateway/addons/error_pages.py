"""ErrorPages: what mitmproxy would answer with its own error page (a site that cannot be
reached, a request it cannot read) is answered with Schoolgate's instead: the block page's
style, the school's name, what happened in plain words (not blocked), the time and a reference,
502 or 504 for the site, 4xx for the request; never `Server: mitmproxy` or its exception text.

mitmproxy 12 has no hook for this: its `error` hook runs, then the HTTP layer sends its page
whatever the addon did (mitmproxy/mitmproxy#7999, still open, would let the hook set one). So
two of its internals are wrapped while the gateway runs, both only where mitmproxy itself would
have sent its page, so everything else (closing an HTTP/1 connection, resetting an HTTP/2 stream)
stays mitmproxy's:

- `HttpStream.handle_event`: a `ResponseProtocolError` sent to the client before any response
  was is preceded by Schoolgate's response (headers, body, end). The connection layer then sees
  a response already under way and sends no page of its own, for HTTP/1 and HTTP/2 alike.
- `_http1.make_error_response`: the page for a request line or header so broken that no flow
  was made (no host, no decision): Schoolgate's page, with a new reference.

No event is recorded for a failure: the request's decision (an allow) is already in the store
under the reference the page shows, so `schoolgate event REFERENCE` finds who, when and where; a
site being down is not a filtering or safeguarding fact for the DSL's reports. Failures are
counted by kind in `schoolgate_error_pages_total`: a rise in `dns` or `timeout` is the school's
internet connection, not one site.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers.http import (
    ErrorCode,
    HttpStream,
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
    ResponseProtocolError,
    _http1,
)

from ...policy import new_reference
from ...policy.blockpage import FAILURES, Failure
from ..service import Gateway
from . import decision_of

__all__ = ["ErrorPages", "failure_of"]

log = logging.getLogger("schoolgate")

_Answer = Callable[[http.HTTPFlow | None, ResponseProtocolError | None, int, str], http.Response]

_ERRNO = re.compile(r"\[Errno (-?\d+)\]")
_BY_ERRNO = {
    socket.EAI_NONAME: "dns",
    socket.EAI_FAIL: "dns",
    getattr(socket, "EAI_NODATA", socket.EAI_NONAME): "dns",
    socket.EAI_AGAIN: "dns_timeout",
    errno.ECONNREFUSED: "refused",
    errno.ETIMEDOUT: "timeout",
    errno.ENETUNREACH: "unreachable",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETDOWN: "unreachable",
    errno.EHOSTDOWN: "unreachable",
    errno.EADDRNOTAVAIL: "unreachable",
    errno.ECONNRESET: "closed",
    errno.ECONNABORTED: "closed",
    errno.EPIPE: "closed",
}


def failure_of(code: ErrorCode | None, message: str, status: int) -> Failure:
    """What went wrong, from mitmproxy's error code (None: a request it could not even parse),
    its message (for a connection, Python's `[Errno N] ...` or OpenSSL's words) and the status
    it would have sent."""
    if status < 500:
        return FAILURES["too_large" if status == 413 else "bad_request"]
    text = message.lower()
    if "request destination unknown" in text:
        return FAILURES["loop"]  # mitmproxy's own address: a browser opened the proxy itself
    if code in (ErrorCode.RESPONSE_VALIDATION_FAILED, ErrorCode.RESPONSE_TOO_LARGE):
        return FAILURES["invalid"]
    if (m := _ERRNO.search(message)) is not None and int(m[1]) in _BY_ERRNO:
        return FAILURES[_BY_ERRNO[int(m[1])]]
    if "timed out" in text or "timeout" in text:
        return FAILURES["timeout"]
    if "tls" in text or "ssl" in text or "certificate" in text:
        return FAILURES["tls"]
    if "closed" in text or "disconnect" in text:
        return FAILURES["closed"]
    if code is ErrorCode.GENERIC_SERVER_ERROR:
        return FAILURES["invalid"]
    return FAILURES["other"]


class ErrorPages:
    """The addon that puts Schoolgate's page in place of mitmproxy's, from `running` to
    `done`."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def running(self) -> None:
        install(self.answer)

    def done(self) -> None:
        uninstall(self.answer)

    def answer(self, flow: http.HTTPFlow | None, error: ResponseProtocolError | None,
               status: int, message: str) -> http.Response:
        """The response for a request mitmproxy could not complete (`flow`, when it made one)."""
        failure = failure_of(error.code if error is not None else None, message, status)
        d = decision_of(flow) if flow is not None else None
        rules = d.rules if d is not None else self.gateway.rules
        reference = (d.verdict.reference if d is not None and d.verdict is not None
                     else new_reference())
        host = flow.request.host if flow is not None else None
        page = rules.block_page.render_failure(failure, host, datetime.now(UTC), reference)
        self.gateway.metrics.error_pages.labels(failure.kind).inc()
        return http.Response.make(page.status, page.body, page.headers)


# -- the two wrapped internals -------------------------------------------------------------------

_answer: _Answer | None = None
_original_handle_event = HttpStream.handle_event
_original_error_response = _http1.make_error_response
_REPLIED = "_schoolgate_replied"
"""Set on an HttpStream once response headers went to its client: no page after that."""


def install(answer: _Answer) -> None:
    """Answer mitmproxy's errors with `answer` from now on (one gateway per process)."""
    global _answer
    _answer = answer
    HttpStream.handle_event = _handle_event  # type: ignore[method-assign, assignment]
    _http1.make_error_response = _make_error_response


def uninstall(answer: _Answer) -> None:
    """Stop, if `answer` is the one installed: mitmproxy's own pages again."""
    global _answer
    if _answer != answer:
        return
    _answer = None
    HttpStream.handle_event = _original_handle_event  # type: ignore[method-assign]
    _http1.make_error_response = _original_error_response


def _handle_event(self: HttpStream, event: events.Event) -> Iterator[commands.Command]:
    client = self.context.client
    for command in _original_handle_event(self, event):
        if isinstance(command, http_layers.SendHttp) and command.connection is client:
            sent = command.event
            if isinstance(sent, ResponseHeaders):
                setattr(self, _REPLIED, True)
            elif (isinstance(sent, ResponseProtocolError) and not getattr(self, _REPLIED, False)
                  and (status := sent.code.http_status_code()) is not None):
                yield from _reply(self, sent, status)
        yield command  # after a reply, mitmproxy's own error only tidies up: it sends no page


def _reply(stream: HttpStream, error: ResponseProtocolError,
           status: int) -> Iterator[commands.Command]:
    flow: http.HTTPFlow | None = getattr(stream, "flow", None)
    response = _answered(flow, error, status, error.message)
    http2 = flow is not None and (flow.request.is_http2 or flow.request.is_http3)
    if not http2:
        response.headers["Connection"] = "close"  # as mitmproxy's own page: the request may
        # not have been read to its end, so the connection cannot carry another
    if flow is not None:
        flow.response = response
    body = response.raw_content or b""
    if flow is not None and flow.request.method.upper() == "HEAD":
        body = b""
    client = stream.context.client
    setattr(stream, _REPLIED, True)
    yield http_layers.SendHttp(ResponseHeaders(error.stream_id, response, not body), client)
    if body:
        yield http_layers.SendHttp(ResponseData(error.stream_id, body), client)
    yield http_layers.SendHttp(ResponseEndOfMessage(error.stream_id), client)


def _make_error_response(status_code: int, message: str = "") -> bytes:
    response = _answered(None, None, status_code, message)
    response.headers["Connection"] = "close"
    return http1.assemble_response(response)


def _answered(flow: http.HTTPFlow | None, error: ResponseProtocolError | None, status: int,
              message: str) -> http.Response:
    """Schoolgate's page for the error, or (should rendering it fail) a short one in plain
    text: still Schoolgate's words, never mitmproxy's."""
    answer = _answer
    try:
        if answer is not None:
            return answer(flow, error, status, message)
    except Exception:  # noqa: BLE001 - the page itself failed: a short answer, still ours
        log.exception("could not make the page for a request that failed (%s)", message)
    failure = failure_of(error.code if error is not None else None, message, status)
    return http.Response.make(
        failure.status, f"{failure.what[0].upper()}{failure.what[1:]}. {failure.why}\n".encode(),
        {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"})
