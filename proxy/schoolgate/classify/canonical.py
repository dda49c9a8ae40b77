"""Canonical URLs and lookup expressions by the Safe Browsing "URLs and Hashing" rules, so that a
request, a list entry and a hashed illegal-list entry for the same page always meet in one form.
Also the registrable domain (eTLD+1) of a host, from a local Public Suffix List, never the network.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from .urls import URLError, _to_ascii, parse_ipv4

if TYPE_CHECKING:  # tldextract (and requests under it) load only when a PSL lookup needs them.
    import tldextract

__all__ = [
    "DEFAULT_PORTS",
    "CanonicalURL",
    "URLError",
    "canonical_host",
    "canonical_path",
    "canonicalize",
    "lookup_expressions",
    "lookup_hosts",
    "lookup_paths",
    "registrable_domain",
    "snapshot_suffixes",
]

DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}
"""The port each scheme with an authority uses when a URL names none."""
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")  # fullmatch only: linear, no backtracking
# Anything to percent-escape: <= 0x20, >= 0x7F, '#' and '%' (the safe set is 0x21-0x7E minus those).
_UNSAFE = re.compile(r'[^!"$&-~]')
# Text is handled as "byte strings": one str character per byte (latin-1), so that percent-escapes
# that decode to non-UTF-8 bytes survive exactly, and str methods stay on their fast ASCII paths.
_ESCAPE_TABLE = [
    chr(b) if 0x20 < b < 0x7F and b not in (0x23, 0x25) else f"%{b:02X}" for b in range(256)
]
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_TAB_CR_LF = {ord("\t"): None, ord("\r"): None, ord("\n"): None}
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = "0123456789"
_NOT_PLAIN_START = frozenset("[.0123456789")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# A few passes of urllib's unquote cover real URLs; past that the input is crafted
# ("%252525..."), and the one-pass rewrite below keeps the cost linear.
_UNQUOTE_PASSES = 3
_MAX_HOST_COMPONENTS = 5
_MAX_PATH_COMPONENTS = 4


@dataclass(frozen=True, slots=True)
class CanonicalURL:
    """A URL in Safe Browsing canonical form. The text fields are ASCII, already percent-escaped
    (characters <= 0x20, >= 0x7F, '#' and '%' as uppercase %XX), ready to compare or hash."""

    scheme: str
    """Lowercase scheme, such as `http`; `http` when the input had none."""
    host: str
    """Canonical host: lowercase punycode name without stray dots, dotted-quad IPv4, or
    compressed IPv6 in brackets (`[2001:db8::1]`); IPv4-mapped and NAT64 IPv6 become IPv4."""
    port: int | None
    """The port when it is not the scheme's default, else None. The canonical form (`url`) and
    the lookup expressions leave it out, as the spec does."""
    path: str
    """Absolute path with `.`/`..` resolved and runs of `/` collapsed; `/` at least."""
    query: str | None
    """Query without its `?`; None when the URL had no `?`, "" for a bare trailing `?`. Not
    path-normalised (the spec leaves `//` and `/../` in a query alone)."""

    @property
    def url(self) -> str:
        """The whole canonical URL, such as `http://host/path?query`, without the port, as the
        spec's table gives it (`http://www.gotaport.com:1234/` is `http://www.gotaport.com/`):
        a list entry names a page wherever it is served. The request itself still goes to its
        own port (`port`)."""
        if self.query is None:
            return f"{self.scheme}://{self.host}{self.path}"
        return f"{self.scheme}://{self.host}{self.path}?{self.query}"

    @property
    def host_path(self) -> str:
        """`host/path?query` without scheme or port: the most specific lookup expression, which
        is what a list entry for this URL should be hashed or matched as. A bare `?` is left
        out, as the lookup expressions leave it out."""
        if self.query:
            return f"{self.host}{self.path}?{self.query}"
        return self.host + self.path


# Build instances without the frozen dataclass __init__ (five object.__setattr__ calls, about
# 1 us, a quarter of a canonicalization): set the slots directly, which frozen does not forbid.
_new_url = object.__new__
_slots = CanonicalURL.__dict__  # the slot descriptors (typed Any: mypy sees the fields)
_set_scheme = _slots["scheme"].__set__
_set_host = _slots["host"].__set__
_set_port = _slots["port"].__set__
_set_path = _slots["path"].__set__
_set_query = _slots["query"].__set__


def _make(scheme: str, host: str, port: int | None, path: str, query: str | None) -> CanonicalURL:
    c = _new_url(CanonicalURL)
    _set_scheme(c, scheme)
    _set_host(c, host)
    _set_port(c, port)
    _set_path(c, path)
    _set_query(c, query)
    return c


# ---------------------------------------------------------------------------------------------
# Whole URLs


def canonicalize(url: str | bytes) -> CanonicalURL:
    """Canonicalize `url` by the Safe Browsing v4 rules ("URLs and Hashing").

    Tab, CR and LF are removed, the fragment is cut, the URL is percent-unescaped until nothing
    changes, then split into scheme, host, port, path and query; the host and path are
    normalised (see `canonical_host`, `canonical_path`) and everything is re-escaped. A URL
    without a scheme is taken as http (`www.google.com/` means `http://www.google.com/`).
    `bytes` are taken as raw URL bytes; `str` is encoded as UTF-8 first. Because unescaping
    comes first, an escaped `?` starts the query (`/a%3Fb` is path `/a`, query `b`), as in the
    Go reference client; list entries get the same treatment, so they still meet.

    Raises `URLError` for input that has no host (`/path`, `http:///x`, `""`), a scheme with no
    `//` authority (`mailto:`), a port that is not a number, or a host that cannot be encoded.
    """
    s = _as_bytestring(url)
    cut = s.find("#")
    if cut >= 0:
        s = s[:cut]
    s = s.strip(_C0_AND_SPACE)
    if "\t" in s or "\r" in s or "\n" in s:
        s = s.translate(_TAB_CR_LF)
    if "%" in s:
        s = _unescape(s)
        clean = _UNSAFE.search(s) is None
    else:  # no '%' and no '#' (cut above): only controls, spaces and non-ASCII need escaping
        clean = s.isascii() and s.isprintable() and " " not in s

    # Scheme: letters, digits, + - . before the first ':', and '//' after it. "example.com:8080/"
    # has a port, not a scheme; "mailto:x@y" has a scheme but no host to classify.
    if s.startswith("https://"):
        scheme, rest = "https", s[8:]
    elif s.startswith("http://"):
        scheme, rest = "http", s[7:]
    else:
        scheme, rest = _split_scheme(s, url)

    # The query starts at the first '?' (after unescaping, as the spec and the Go client do).
    query: str | None = None
    q = rest.find("?")
    if q >= 0:
        query = rest[q + 1 :]
        rest = rest[:q]
    slash = rest.find("/")
    if slash >= 0:
        host, path = rest[:slash], rest[slash:]
    else:
        host, path = rest, "/"
    port = None
    if ":" in host or "@" in host:
        host, port = _split_authority(host, url)
        if port is not None and port == DEFAULT_PORTS.get(scheme):
            port = None
    if not (
        host.islower()  # has a letter, and no capitals
        and host.isascii()
        and host[0] not in _NOT_PLAIN_START  # not IPv6, a leading dot or a number
        and host[-1] != "."
        and ".." not in host
    ):
        host = _host(host, url)
    if path != "/" and ("//" in path or "/." in path):
        path = _resolve_path(path)
    if not clean:
        host = _escape(host)
        path = _escape(path)
        if query:
            query = _escape(query)
    return _make(scheme, host, port, path, query)


def _as_bytestring(value: str | bytes) -> str:
    """The input as one str character per byte (see `_ESCAPE_TABLE`)."""
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            return value.encode("utf-8").decode("latin-1")
        except UnicodeEncodeError:
            raise URLError(f"{_show(value)} holds characters that are not valid Unicode") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    raise TypeError(f"expected str or bytes, not {type(value).__name__}")


def _show(value: str | bytes) -> str:
    """The input, shortened, for an error message a technician can act on."""
    text = value if isinstance(value, str) else bytes(value).decode("utf-8", "backslashreplace")
    return repr(text if len(text) <= 200 else text[:200] + "...")


def _split_scheme(s: str, original: str | bytes) -> tuple[str, str]:
    colon = s.find(":")
    if colon > 0 and _SCHEME.fullmatch(s, 0, colon):
        if s.startswith("//", colon + 1):
            return s[:colon].lower(), s[colon + 3 :]
        if not _is_port_prefix(s, colon + 1):
            scheme = s[:colon].lower()
            raise URLError(f"{_show(original)}: a {scheme!r} URL has no host to classify")
    return "http", s


def _is_port_prefix(s: str, start: int) -> bool:
    """Digits from `start` up to the end, a '/' or a '?': the ':' was a port separator."""
    end = start
    n = len(s)
    while end < n and s[end] in _DIGITS:
        end += 1
    return end > start and (end == n or s[end] in "/?")


def _split_authority(authority: str, original: str | bytes) -> tuple[str, int | None]:
    """Host and port from `user:password@host:port`; raises `URLError` for a bad port."""
    at = authority.rfind("@")
    if at >= 0:
        authority = authority[at + 1 :]
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise URLError(f"{_show(original)}: IPv6 host has no closing ']'")
        host, tail = authority[: close + 1], authority[close + 1 :]
        if not tail:
            return host, None
        if tail[0] != ":":
            raise URLError(f"{_show(original)}: unexpected {tail!r} after the IPv6 host")
        port_text = tail[1:]
    else:
        colon = authority.rfind(":")
        if colon < 0:
            return authority, None
        host, port_text = authority[:colon], authority[colon + 1 :]
    if not port_text:
        return host, None  # "http://host:/" means the default port
    digits = port_text.lstrip("0") or "0"
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 5 or int(digits) > 65535:
        shown = port_text if len(port_text) <= 12 else port_text[:12] + "..."
        raise URLError(f"{_show(original)}: port {shown!r} is not a number from 0 to 65535")
    return host, int(digits)


# ---------------------------------------------------------------------------------------------
# Percent-escapes


def _unescape(s: str) -> str:
    """Percent-unescape until nothing changes (the spec's "repeatedly percent-unescape")."""
    for _ in range(_UNQUOTE_PASSES):
        t = unquote(s, encoding="latin-1")
        if t == s:
            return s
        s = t
    return _unescape_fully(s) if "%" in s else s


def _unescape_fully(s: str) -> str:
    """The same fixed point in one linear pass, for crafted input like `%252525...`.

    Decoding an escape can only create a new one that ends at the decoded character, so checking
    the tail after every character reaches the fixed point; since '%' is not a hex digit no two
    escapes overlap, and every order of decoding gives the same result.
    """
    out: list[str] = []
    hexdigits = _HEX
    for ch in s:
        out.append(ch)
        while len(out) >= 3 and out[-3] == "%" and out[-2] in hexdigits and out[-1] in hexdigits:
            decoded = chr(int(out[-2] + out[-1], 16))
            del out[-3:]
            out.append(decoded)
    return "".join(out)


def _escape(s: str) -> str:
    """Escape characters <= 0x20, >= 0x7F, '#' and '%' as uppercase %XX."""
    if _UNSAFE.search(s) is None:
        return s
    return s.translate(_ESCAPE_TABLE)


def _prepare(value: str | bytes) -> str:
    s = _as_bytestring(value)
    if "\t" in s or "\r" in s or "\n" in s:
        s = s.translate(_TAB_CR_LF)
    return _unescape(s) if "%" in s else s


# ---------------------------------------------------------------------------------------------
# Hosts


def canonical_host(host: str | bytes) -> str:
    """Canonicalize a host name (no port, no userinfo) as `canonicalize` does.

    Percent-unescaped repeatedly; lowercase; leading and trailing dots removed and runs of dots
    collapsed; IDN labels to punycode (UTS #46 non-transitional, as browsers send them, falling
    back to IDNA 2003 for labels only it accepts); IPv4 in any form inet_aton reads (`3279880203`,
    `0x12.0x43.0x44.0x01`, `012.034.01.055`, `1.2.3`) to a dotted quad; bracketed IPv6 compressed
    (RFC 5952), with IPv4-mapped (`::ffff:0:0/96`) and NAT64 (`64:ff9b::/96`) addresses turned
    into their IPv4 address. Raises `URLError` if nothing is left or a name cannot be encoded.
    """
    return _escape(_host(_prepare(host), host))


def _host(h: str, original: str | bytes) -> str:
    """Canonical host from unescaped byte-string text; not yet escaped."""
    if h.startswith("["):
        return _ipv6_host(h, original)
    if h.startswith(".") or h.endswith(".") or ".." in h:
        h = ".".join([label for label in h.split(".") if label])
    if not h.isascii():
        h = _idna_host(h, original)
    elif not h.islower():
        h = h.lower()
    if not h:
        raise URLError(f"{_show(original)} has no host name")
    if h[0] in _DIGITS:
        ip = parse_ipv4(h)
        if ip is not None:
            return ip
    if ":" in h:
        raise URLError(
            f"{_show(original)}: an IPv6 host must be in brackets, such as [2001:db8::1]"
        )
    return h


def _ipv6_host(h: str, original: str | bytes) -> str:
    try:
        return _ipv6_text(h)
    except URLError as e:
        raise URLError(f"{_show(original)}: {e}") from None


def _idna_host(h: str, original: str | bytes) -> str:
    """Lowercase punycode for a host holding bytes >= 0x80 (one character per byte)."""
    try:
        return _to_ascii(h)
    except URLError as e:
        raise URLError(f"{_show(original)}: {e}") from None


# Parsing IPv6 and IDNA costs tens of microseconds; the same few hosts come back request after
# request, so remember them (failures raise and are not remembered).
@functools.lru_cache(maxsize=1024)
def _ipv6_text(h: str) -> str:
    if not h.endswith("]"):
        raise URLError("IPv6 host has no closing ']'")
    try:
        ip = ipaddress.IPv6Address(h[1:-1])
    except ValueError:
        raise URLError(f"{h!r} is not a valid IPv6 address") from None
    # v5 rule: these addresses reach an IPv4 host, so they must match that host's entries.
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip in _NAT64:
        return str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return f"[{ip.compressed}]"


# ---------------------------------------------------------------------------------------------
# Paths


def canonical_path(path: str | bytes) -> str:
    """Canonicalize a path (without its query) as `canonicalize` does: percent-unescaped
    repeatedly, `/./` and `/../` resolved, runs of `/` collapsed, then re-escaped. A path that
    does not start with `/` gets one; an empty path is `/`."""
    p = _prepare(path)
    if not p.startswith("/"):
        p = "/" + p
    if "//" in p or "/." in p:
        p = _resolve_path(p)
    return _escape(p)


def _resolve_path(path: str) -> str:
    # RFC 3986 remove_dot_segments, with empty segments dropped (the spec's "//" collapse). A
    # final "." or ".." leaves a trailing slash ("/a/b/.." is "/a/"), as browsers and servers
    # read it; the Go client's path.Clean gives "/a" there (no vector covers it).
    out: list[str] = []
    segments = path.split("/")
    for segment in segments:
        if not segment or segment == ".":
            continue
        if segment == "..":
            if out:
                out.pop()
        else:
            out.append(segment)
    if not out:
        return "/"
    last = segments[-1]
    trailing = "/" if last in ("", ".", "..") else ""
    return "/" + "/".join(out) + trailing


# ---------------------------------------------------------------------------------------------
# Lookup expressions


def lookup_hosts(host: str, *, max_components: int = _MAX_HOST_COMPONENTS) -> list[str]:
    """Host suffixes to look up for a canonical `host`, most specific first.

    The exact host, then up to four more formed from its last five components by removing the
    leading one each time, never the bare top-level label: `a.b.c.d.e.f.g` gives itself,
    `c.d.e.f.g`, `d.e.f.g`, `e.f.g` and `f.g`. An IP host is looked up as itself only.
    `max_components=7` gives the Go reference client's longer walk (see the tests).
    """
    dots = host.count(".")
    if dots < 2 or _is_ip_host(host):
        return [host]
    # Label i starts after the i-th dot; keep labels from the last max_components, never the
    # top-level label alone.
    hosts = [host]
    first = dots + 1 - max_components
    start = 0
    for i in range(1, dots):
        start = host.find(".", start) + 1
        if i >= first:
            hosts.append(host[start:])
    return hosts


def _is_ip_host(host: str) -> bool:
    # Canonical hosts: bracketed IPv6, a dotted quad, or a name (a name that looks like a dotted
    # quad would have been parsed as one).
    last = host[-1:]
    return last == "]" or (
        last in _DIGITS and host.count(".") == 3 and host.replace(".", "").isdigit()
    )


def lookup_paths(path: str, query: str | None) -> list[str]:
    """Path prefixes to look up for a canonical `path` and `query`, shortest first.

    `/`, then up to three more from the root adding one component at a time (each with a
    trailing `/`), then the exact path, then the exact path with its query when the query is not
    empty: `/1/2.html?param=1` gives `/`, `/1/`, `/1/2.html`, `/1/2.html?param=1`.
    """
    paths = ["/"]
    if path != "/":
        # A canonical path has no empty components, so each '/' ends the next prefix.
        end = len(path) - 1
        slash = 0
        for _ in range(_MAX_PATH_COMPONENTS - 1):
            slash = path.find("/", slash + 1)
            if slash < 0 or slash == end:
                break
            paths.append(path[: slash + 1])
        paths.append(path)
    if query:
        paths.append(f"{path}?{query}")
    return paths


def lookup_expressions(
    c: CanonicalURL, *, max_host_components: int = _MAX_HOST_COMPONENTS
) -> list[str]:
    """Every host-suffix x path-prefix expression for `c`, such as `a.b.c/1/2.html?param=1`,
    without scheme or port: at most 5 hosts x 6 paths, the exact URL's expression first."""
    paths = lookup_paths(c.path, c.query)
    paths.reverse()  # most specific first: callers that stop at the first hit find the best one
    return [
        host + p for host in lookup_hosts(c.host, max_components=max_host_components) for p in paths
    ]


# ---------------------------------------------------------------------------------------------
# Registrable domains (Public Suffix List)


def snapshot_suffixes() -> tldextract.TLDExtract:
    """A new Public Suffix List matcher on the snapshot bundled with tldextract (ICANN and private
    sections). It never fetches from the network or writes a cache; the list is parsed on the
    first lookup (tens of milliseconds). A school's own list file is read by
    `schoolgate.sources.suffixes.suffix_list`."""
    # Imported here, not at the top: tldextract (and requests under it) cost ~150 ms to import,
    # and only a registrable-domain lookup needs them.
    import tldextract

    return tldextract.TLDExtract(
        suffix_list_urls=(),
        cache_dir=None,
        fallback_to_snapshot=True,
        include_psl_private_domains=True,
    )


_snapshot = functools.cache(snapshot_suffixes)


def registrable_domain(
    host: str | None, *, suffixes: tldextract.TLDExtract | None = None
) -> str | None:
    """The registrable domain (eTLD+1) of `host`, such as `bbc.co.uk` for `www.news.bbc.co.uk`,
    in lowercase punycode; private-section suffixes count (`x.blogspot.com` is its own).

    None when there is none: no host, an IP address, a public suffix itself (`co.uk`), a single
    label, a leading dot or an empty label, or a name that cannot be encoded. A name under no
    listed suffix follows the PSL's default rule `*` (`a.example.example` gives
    `example.example`). `suffixes` is a `sources.suffixes.suffix_list(...)`; the default is the
    bundled snapshot.
    """
    if not host or host.startswith("."):
        return None
    if host.endswith("."):
        host = host[:-1]  # "example.com." is the same name, fully qualified
    try:
        h = _as_bytestring(host)
        if not h.isascii():
            h = _idna_host(h, host)
        else:
            h = h.lower()
    except URLError:
        return None
    if not h or not h.isascii() or ".." in h or h.startswith(".") or "." not in h:
        return None
    if h.startswith("[") or ":" in h or parse_ipv4(h) is not None:
        return None
    found = (suffixes or _snapshot())(h)
    if found.suffix:
        return f"{found.domain}.{found.suffix}" if found.domain else None
    # No rule matched: the default rule "*" makes the last label the public suffix.
    return h[h.rfind(".", 0, h.rfind(".")) + 1 :]
