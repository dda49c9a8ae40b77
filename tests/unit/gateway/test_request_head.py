"""`request_head`: the request a client puts on an explicit proxy's request line for a URL, as
the gateway holds it. `schoolgate why` decides this request, so what it builds must be what a
client sends: the host as written (lowercased, Unicode as punycode, what a request line cannot
carry percent-escaped), the path as a browser escapes it. The canonical form is the
classifier's business (tests/unit/classify/test_canonical.py); this is the step before it."""

from __future__ import annotations

import pytest

from schoolgate.classify import URLError
from schoolgate.gateway.decision import request_head


@pytest.mark.parametrize(
    ("url", "sent", "host", "port"),
    [
        # No scheme means http; an empty path becomes "/".
        ("example.com", "http://example.com/", "example.com", 80),
        ("example.com/path?q=1", "http://example.com/path?q=1", "example.com", 80),
        # Scheme and host lowercased; path and query keep their case.
        ("HTTPS://WWW.Example.COM/Path/File.HTML?Q=Yes",
         "https://www.example.com/Path/File.HTML?Q=Yes", "www.example.com", 443),
        # Default ports dropped, other ports kept (the request goes to its own port).
        ("http://example.com:80/", "http://example.com/", "example.com", 80),
        ("https://example.com:443/a", "https://example.com/a", "example.com", 443),
        ("http://example.com:8080/a", "http://example.com:8080/a", "example.com", 8080),
        ("https://example.com:80/", "https://example.com:80/", "example.com", 80),
        ("example.com:8443", "http://example.com:8443/", "example.com", 8443),
        # The fragment never reaches the server; nor does an empty query.
        ("http://example.com/page#section-2", "http://example.com/page", "example.com", 80),
        ("http://example.com/?", "http://example.com/", "example.com", 80),
        # User information is not part of the site.
        ("http://user:secret@example.com/", "http://example.com/", "example.com", 80),
        # A Unicode host goes as punycode, as browsers send it.
        ("http://WWW.Bücher.DE/", "http://www.xn--bcher-kva.de/", "www.xn--bcher-kva.de", 80),
        # IPv6 hosts keep their brackets in the URL, not in the host.
        ("http://[2001:db8::1]:8080/x", "http://[2001:db8::1]:8080/x", "2001:db8::1", 8080),
        # Surrounding whitespace from a copied URL; tab, CR and LF inside are dropped.
        ("  https://example.com/  ", "https://example.com/", "example.com", 443),
        ("http://example.com/foo\tbar\rbaz\n2", "http://example.com/foobarbaz2", "example.com",
         80),
        # A path as a browser escapes it.
        ("http://example.com/a b/café", "http://example.com/a%20b/caf%C3%A9", "example.com", 80),
        # Hosts no server can have are sent as written, with what a request line cannot carry
        # escaped: the classifier decides what they are (and the gateway refuses them).
        ("http://host%23.com/", "http://host%23.com/", "host%23.com", 80),
        ("http:// leadingspace.com/", "http://%20leadingspace.com/", "%20leadingspace.com", 80),
        ("http://W!eird<>Ho$^.com/", "http://w!eird<>ho$^.com/", "w!eird<>ho$^.com", 80),
        ("http://\x01\udc80.com/", "http://%01%80.com/", "%01%80.com", 80),  # argv: not UTF-8
        # A URL escaped whole, as inside another URL's query, is read unescaped.
        ("http%3A%2F%2Fwackyurl.com:80/", "http://wackyurl.com/", "wackyurl.com", 80),
        # Other schemes with a host: classified (a listed form is blocked), then refused.
        ("ftp://ftp.myfiles.com/", "ftp://ftp.myfiles.com/", "ftp.myfiles.com", 21),
    ],
)
def test_the_request_a_client_sends(url, sent, host, port):
    request, to = request_head(url)
    assert (request.url, request.host, to) == (sent, host, port)
    assert request.method == "GET"
    assert request.url.endswith(request.path)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # A scheme without '//' is still a scheme, not a host: never guess http://b.com/.
        ("mailto:pupil@example.com", "only http and https URLs can be classified, not 'mailto'"),
        ("javascript:alert(1)", "not 'javascript'"),
        ("file:///etc/passwd", "only http and https URLs can be classified, not 'file'"),
        # No host.
        ("http://", "has no host name"),
        ("https:///path", "has no host name"),
        ("/blah", "has no host name"),
        ("#ref", "has no host name"),
        # Ports that are not ports.
        ("http://example.com:99999/", "is not a URL"),
        ("http://example.com:http/", "is not a URL"),
    ],
)
def test_what_no_client_can_send(url, message):
    with pytest.raises(URLError) as e:
        request_head(url)
    assert message in str(e.value)
