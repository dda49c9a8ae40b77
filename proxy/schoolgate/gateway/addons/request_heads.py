"""RequestHeads: a request whose host mitmproxy's parser refuses, but whose URL has a Safe
Browsing canonical form, is read anyway, so that it is decided like any other request: a listed
form (`http://host%23.com/`, `http://%31%36%38.%31%38%38.%39%39.%32%36/`, `ftp://...`) is
blocked by its list with the block page and recorded, anything else is refused with 400 as a bad
request (`Classification.unreachable`), and `schoolgate why` gives the same verdict, because it
classifies the same request. Without this, mitmproxy answers 400 before any flow exists, and a
list entry whose canonical host is not a DNS name could never be seen to block.

mitmproxy 12 has no hook before it parses a request head, so `http1.read_request_head` (which
its HTTP/1 server layer calls by module attribute) is wrapped from `running` to `done`. The
wrapper only acts where mitmproxy raised, and only for an absolute-form request line (`METHOD
scheme://authority/path HTTP/1.x`) whose headers parse and whose URL the classifier itself
reports unreachable (`unreachable_reason`): such a request is always refused or blocked, so it
never reaches a connection. Everything else keeps mitmproxy's error (answered by ErrorPages).
"""

from __future__ import annotations

import re
import weakref

from mitmproxy import http
from mitmproxy.net.http import http1

from ...classify import unreachable_reason
from ...classify.canonical import DEFAULT_PORTS

__all__ = ["RequestHeads", "read_refused_head", "refused_target"]

_TARGET = re.compile(rb"([A-Za-z][A-Za-z0-9+.-]*)://([^/]*)(/.*)?", re.DOTALL)
_METHOD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
_VERSIONS = (b"HTTP/1.0", b"HTTP/1.1")
_PLACEHOLDER = b"http://schoolgate.invalid/"

_original_read_request_head = http1.read_request_head
_targets: weakref.WeakKeyDictionary[http.Request, str] = weakref.WeakKeyDictionary()


def refused_target(request: http.Request) -> str | None:
    """The request target as sent, for a request `read_refused_head` read (None for any other):
    what is classified, as its scheme may not be one the proxy carries (`ftp://`)."""
    return _targets.get(request)


def read_refused_head(lines: list[bytes]) -> http.Request | None:
    """The request a head mitmproxy refused stands for, when only its host or scheme stood in
    the way and the classifier can decide it (see the module's docstring); else None."""
    parts = lines[0].split(b" ") if lines else []
    if len(parts) != 3:
        return None
    method, target, version = parts
    if version not in _VERSIONS or not _METHOD.fullmatch(method) or method == b"CONNECT":
        return None
    m = _TARGET.fullmatch(target)
    if m is None or not target.isascii():  # a client escapes what is not ASCII
        return None
    scheme, authority, path = m[1].lower(), m[2], m[3] or b"/"
    host = authority.rpartition(b"@")[2]
    if not host or host.startswith(b"["):
        return None  # an IPv6 literal mitmproxy refused is not one
    port = DEFAULT_PORTS.get(scheme.decode("ascii"))
    if b":" in host:
        host, _, port_text = host.rpartition(b":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    if port is None or not host:
        return None
    host_text, url = host.decode("latin-1"), target.decode("latin-1")
    if unreachable_reason(url, host_text) is None:
        return None
    try:
        # The headers as mitmproxy reads them, under a request line it accepts.
        request = _original_read_request_head([b" ".join((method, _PLACEHOLDER, version)),
                                               *lines[1:]])
    except ValueError:
        return None
    data = request.data
    # The proxy refuses schemes it does not carry before any hook runs, so it holds the request
    # as http; what is classified is the target as sent (`refused_target`), and such a request
    # is never let through (`Classification.unreachable`), so it never reaches a connection.
    data.scheme = scheme if scheme in (b"http", b"https") else b"http"
    data.host, data.port, data.authority, data.path = host_text, port, authority, path
    _targets[request] = url
    return request


def _read_request_head(lines: list[bytes]) -> http.Request:
    try:
        return _original_read_request_head(lines)
    except ValueError:
        request = read_refused_head(lines)
        if request is None:
            raise
        return request


class RequestHeads:
    """The addon that reads, from `running` to `done`, request heads mitmproxy would refuse
    only for their host (see the module's docstring)."""

    def running(self) -> None:
        http1.read_request_head = _read_request_head

    def done(self) -> None:
        http1.read_request_head = _original_read_request_head
