"""Normalise URLs and host names once, the same way for list entries and for requests."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = ["URLError", "normalise_host", "normalise_url", "parse_target"]

DNS_HOST = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
"""A canonical host that a DNS name could be: what is left after Safe Browsing canonicalisation
escapes a space or '!' is not one."""
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}$")
_SCHEME_ONLY = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):(?!\d)")
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
        # entry could never match the name browsers send. Imported here: canonical imports us.
        from .canonical import idn_to_ascii

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


def normalise_url(url: str) -> tuple[str, str]:
    """Return ``(normalised URL, normalised host)``; a missing scheme means http.

    The scheme and host are lowercased, the default port and the fragment dropped, and an empty
    path becomes ``/``. Full Safe Browsing canonicalisation comes with the URL lists.
    """
    text = url.strip()
    if "://" not in text:
        # "mailto:x@y" has a scheme; "example.com:8080/x" has a port, not a scheme.
        if m := _SCHEME_ONLY.match(text):
            raise URLError(f"{url!r}: only http and https URLs can be classified, not {m[1]!r}")
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise URLError(f"{url!r} is not a URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise URLError(f"{url!r}: only http and https URLs can be classified, not {scheme!r}")
    if not parts.hostname:
        raise URLError(f"{url!r} has no host name")
    host = normalise_host(parts.hostname)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}", host


def parse_target(target: str) -> tuple[str, str | None]:
    """The normalised host and path prefix (None for a whole domain) of an allow or block
    target: `example.com`, `example.com/teaching/` or a whole URL (scheme, user and port are
    dropped). Raises ValueError (a `URLError`) saying what is wrong."""
    text = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", target.strip())
    host_part, slash, path = text.partition("/")
    host_part = host_part.rsplit("@", 1)[-1].split(":", 1)[0]
    host = normalise_host(host_part)
    return host, ("/" + path if slash and path else None)
