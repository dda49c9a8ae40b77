"""What went wrong, read from mitmproxy's error (its code, and Python's or OpenSSL's words), and
the page put in place of mitmproxy's own: Schoolgate's, or if even that fails, a short one in
plain text, never mitmproxy's."""

from __future__ import annotations

import pytest
from mitmproxy.proxy.layers.http import ErrorCode, HttpStream, _http1

from schoolgate.gateway.addons import error_pages
from schoolgate.gateway.addons.error_pages import failure_of
from schoolgate.policy.blockpage import FAILURES


@pytest.mark.parametrize(("code", "message", "kind"), [
    # Connecting, as Python words it (mitmproxy passes str(OSError)).
    (ErrorCode.CONNECT_FAILED, "[Errno -2] Name or service not known", "dns"),
    (ErrorCode.CONNECT_FAILED, "[Errno -5] No address associated with hostname", "dns"),
    (ErrorCode.CONNECT_FAILED, "[Errno -3] Temporary failure in name resolution", "dns_timeout"),
    (ErrorCode.CONNECT_FAILED, "[Errno 111] Connect call failed ('127.0.0.1', 1)", "refused"),
    (ErrorCode.CONNECT_FAILED, "[Errno 110] Connect call failed ('192.0.2.1', 80)", "timeout"),
    (ErrorCode.CONNECT_FAILED, "[Errno 101] Network is unreachable", "unreachable"),
    (ErrorCode.CONNECT_FAILED, "[Errno 113] No route to host", "unreachable"),
    # TLS to the server, as mitmproxy words OpenSSL's failure.
    (ErrorCode.CONNECT_FAILED,
     "Certificate verify failed: unable to get local issuer certificate", "tls"),
    (ErrorCode.CONNECT_FAILED, "TLS handshake failed", "tls"),
    # The server's answer.
    (ErrorCode.GENERIC_SERVER_ERROR, "server closed connection", "closed"),
    (ErrorCode.GENERIC_SERVER_ERROR, "unexpected server response: b'hello'", "invalid"),
    (ErrorCode.RESPONSE_VALIDATION_FAILED,
     "Received invalid header from server, refusing to prevent request smuggling", "invalid"),
    # mitmproxy asked to connect to itself: a browser opened the proxy's own address.
    (ErrorCode.CONNECT_FAILED, "Connection killed: Request destination unknown. Unable to "
                               "figure out where this request should be forwarded to.", "loop"),
    (ErrorCode.CONNECT_FAILED, "something new in mitmproxy 13", "other"),
    # The request at fault.
    (ErrorCode.GENERIC_CLIENT_ERROR, "Bad HTTP request line: b'hello'", "bad_request"),
    (ErrorCode.DESTINATION_UNKNOWN, "HTTP request has no host header", "bad_request"),
    (ErrorCode.REQUEST_TOO_LARGE, "Request body exceeds mitmproxy's body_size_limit.",
     "too_large"),
    (None, "Invalid header line: b'Host example'", "bad_request"),  # no flow was made
])
def test_what_went_wrong(code, message, kind):
    status = code.http_status_code() if code is not None else 400
    assert failure_of(code, message, status).kind == kind


def test_each_failure_has_the_status_the_issue_asks_for():
    status = {k: f.status for k, f in FAILURES.items()}
    assert status["dns"] == status["refused"] == status["tls"] == 502
    assert status["timeout"] == status["dns_timeout"] == 504


def test_installed_only_while_running_and_only_by_its_owner():
    original = (HttpStream.handle_event, _http1.make_error_response)

    def answer(*args):
        raise AssertionError("not called here")

    error_pages.install(answer)
    try:
        assert HttpStream.handle_event is error_pages._handle_event
        assert _http1.make_error_response is error_pages._make_error_response
        error_pages.uninstall(lambda *args: None)  # someone else's: nothing changes
        assert HttpStream.handle_event is error_pages._handle_event
    finally:
        error_pages.uninstall(answer)
    assert (HttpStream.handle_event, _http1.make_error_response) == original


def test_a_page_that_cannot_be_made_still_answers_in_schoolgates_words(caplog):
    def broken(*args):
        raise RuntimeError("template gone")

    error_pages.install(broken)
    try:
        raw = _http1.make_error_response(400, "Bad HTTP request line: b'hello'")
    finally:
        error_pages.uninstall(broken)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"mitmproxy" not in raw.lower() and b"hello" not in body
    assert body == (b"The request was not valid. Your browser or app sent a request the "
                    b"school's web filter cannot accept, so nothing was sent to the site.\n")
    assert b"\r\nConnection: close" in head
    assert "could not make the page" in caplog.text
