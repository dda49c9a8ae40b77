"""Normalise URLs and host names once, the same way for list entries and for requests: IDN to
punycode, IPv4 in any spelling, one answer to "is this an IP address", one walk up a domain.
(Whole request URLs are read once, by `canonical.canonicalize`.)
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterator

import idna  # UTS #46 mapping; a tldextract dependency, so always present

__all__ = [
    "URLError",
    "idn_to_ascii",
    "is_ip_address",
    "normalise_host",
    "parent_domains",
    "parse_ipv4",
    "parse_target",
]

DNS_HOST = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
"""A canonical host that a DNS name could be: what is left after Safe Browsing canonicalisation
escapes a space or '!' is not one."""
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}$")
_DIGITS = "0123456789"
_ASCII_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
# Go client (and old Windows resolvers): "10.192.95.89 xy" is the address 10.192.95.89 when the
# whole host is at most 15 characters. Bounded repeats, anchored: no backtracking blow-up.
_WINDOWS_IPV4 = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}[ \t\n\r\f]")


class URLError(ValueError):
    """A URL or host name that cannot be classified; the message says what is wrong with it."""


def normalise_host(host: str) -> str:
    """Lowercase, drop leading, trailing and repeated dots, IDN to punycode; IPs as canonical text.

    Raises `URLError` for names that no DNS could hold (empty, bad characters, long labels).
    """
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        try:
            ip = ipaddress.IPv6Address(h.split("%", 1)[0])
        except ValueError:
            raise URLError(f"{host!r} is not a valid IPv6 address") from None
        # [::ffff:a.b.c.d] reaches the IPv4 host a.b.c.d, so it must match that host's entries.
        return str(ip.ipv4_mapped or ip)
    h = ".".join(part for part in h.split(".") if part)
    if not h:
        raise URLError(f"{host!r} has no host name")
    if not h.isascii():
        # The same IDN rules as request hosts (UTS #46 non-transitional, then IDNA 2003), or an
        # entry could never match the name browsers send.
        try:
            h = idn_to_ascii(h)
        except URLError as e:
            raise URLError(f"{host!r} is not a valid international domain name ({e})") from None
    if len(h) > 253:
        raise URLError(f"host name is {len(h)} characters long; at most 253 are allowed")
    labels = h.split(".")
    if all(label.isdigit() for label in labels) and len(labels) == 4:
        try:
            return str(ipaddress.IPv4Address(h))
        except ValueError:
            raise URLError(f"{host!r} is not a valid IPv4 address") from None
    for label in labels:
        if not _LABEL.match(label):
            raise URLError(f"{host!r}: label {label!r} is not a valid domain label")
    return h


def parse_target(target: str) -> tuple[str, str | None]:
    """The normalised host and path prefix (None for a whole domain) of an allow or block
    target: `example.com`, `example.com/teaching/` or a whole URL (scheme, user and port are
    dropped). Raises ValueError (a `URLError`) saying what is wrong."""
    text = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", target.strip())
    host_part, slash, path = text.partition("/")
    host_part = host_part.rsplit("@", 1)[-1].split(":", 1)[0]
    host = normalise_host(host_part)
    return host, ("/" + path if slash and path else None)


@functools.lru_cache(maxsize=4096)
def idn_to_ascii(name: str) -> str:
    """A Unicode host name in the punycode form requests are matched in (see `canonical_host`),
    so that a list entry `faß.de` is the `xn--fa-hia.de` a browser sends, not IDNA 2003's
    `fass.de`. Raises `URLError` for a label no IDNA version accepts."""
    return _to_ascii(name.encode("utf-8").decode("latin-1"))


def _to_ascii(h: str) -> str:
    raw = h.encode("latin-1")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Not UTF-8, so not a name any browser sends: keep the bytes (they are escaped later) and
        # lowercase only ASCII, as the Go client does for "http://\x01\x80.com/".
        return raw.translate(_ASCII_LOWER).decode("latin-1")
    try:
        # May map characters to '.', such as the ideographic full stop, so split afterwards.
        text = idna.uts46_remap(text, std3_rules=False, transitional=False)
    except idna.IDNAError:
        pass
    labels = []
    for label in text.split("."):
        if not label:
            continue
        if label.isascii():
            labels.append(label.lower())
            continue
        try:
            labels.append(idna.alabel(label).decode("ascii"))
        except (idna.IDNAError, UnicodeError):
            try:
                # IDNA 2003 still accepts symbols such as '❤' that browsers send as punycode.
                labels.append(label.encode("idna").decode("ascii"))
            except UnicodeError as e:
                raise URLError(
                    f"label {label!r} is not a valid international domain name ({e})"
                ) from None
    return ".".join(labels)


def parse_ipv4(host: str) -> str | None:
    """The dotted quad `host` stands for as an IPv4 address, or None when it is not one.

    Each of 1 to 4 dot-separated numbers may be decimal, octal (leading 0) or hex (0x); the last
    fills the remaining bytes (`1.2.3` is 1.2.0.3, `3279880203` is 195.127.0.11). As in the Go
    reference client, earlier numbers keep their low byte (`276.2.3` is 20.2.0.3), every number
    must fit in 32 bits, and a quad followed by whitespace within 15 characters
    (`10.192.95.89 xy`) is that quad, as Windows resolvers read it.
    """
    if not host or host[0] not in _DIGITS:
        return None  # every number form starts with a digit: the fast exit for names
    if len(host) <= 15:
        m = _WINDOWS_IPV4.match(host)
        if m:
            host = m[0][:-1]
    parts = host.split(".")
    count = len(parts)
    if count > 4:
        return None
    octets: list[int] = []
    for i, part in enumerate(parts):
        value = _ipv4_number(part)
        if value is None:
            return None
        if i < count - 1:
            octets.append(value & 0xFF)
        else:
            for shift in range(8 * (4 - count), -1, -8):
                octets.append((value >> shift) & 0xFF)
    return f"{octets[0]}.{octets[1]}.{octets[2]}.{octets[3]}"


def _ipv4_number(part: str) -> int | None:
    if not part.isascii():
        return None
    try:
        if part[:2] in ("0x", "0X"):
            digits = part[2:]
            value = int(digits, 16) if digits.isalnum() else None
        elif not part.isdigit():
            value = None
        elif part[0] == "0" and len(part) > 1:
            value = int(part[1:], 8)
        else:
            value = int(part)
    except ValueError:  # a non-hex letter, 8 or 9 in octal, or thousands of digits
        return None
    if value is None or value > 0xFFFFFFFF:
        return None
    return value


# ---------------------------------------------------------------------------------------------
# Addresses and domains: one answer to "is this an IP address", one walk up a domain's parents


def is_ip_address(host: str) -> bool:
    """Whether `host` names an IP address rather than a DNS name, in any spelling a resolver
    reads as one: IPv6 (bracketed or not, with a zone or not), or IPv4 as inet_aton reads it
    (`2130706433`, `0x7f.1` and `127.1` are all 127.0.0.1). A rule about addresses (the
    `no_sni` policy for a CONNECT to an IP) cannot then be stepped round by another spelling."""
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        try:
            ipaddress.IPv6Address(h.split("%", 1)[0])
        except ValueError:
            return False
        return True
    return parse_ipv4(h) is not None


def parent_domains(host: str) -> Iterator[str]:
    """`host` and each domain above it, most specific first: `a.b.example.com`,
    `b.example.com`, `example.com`, `com`. Every label-suffix match (list entries, local allow
    and block entries, search engines without safe mode) walks this one way.

    A normalised IP address is matched whole, and so is a name whose last label is all digits:
    no DNS name has a numeric top-level label, so `10.192.0.2.10` never reaches `192.0.2.10`."""
    yield host
    if ":" in host or host.rpartition(".")[2].isdigit():
        return
    dot = host.find(".")
    while dot != -1:
        host = host[dot + 1 :]
        yield host
        dot = host.find(".")
