"""Circumvention by request shape: DNS-over-HTTPS to any server (known or not), CONNECT tunnels to
ports other than the web's, and the UT1 categories that together make a group's "circumvention"
policy. Pure code: the addons decide what to do with the answers.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

__all__ = [
    "CIRCUMVENTION_CATEGORIES",
    "DOH_JSON",
    "DOH_WIRE",
    "WEB_PORTS",
    "connect_port_allowed",
    "doh_request",
    "header_value",
    "is_circumvention_category",
]

CIRCUMVENTION_CATEGORIES = (
    "vpn",
    "redirector",
    "strict_redirector",
    "doh",
    "remote-control",
    "residential-proxies",
)
"""The UT1 categories that form the "circumvention" policy: VPN services, web proxies and other
redirectors (strict_redirector adds search-engine caches and image proxies), DNS-over-HTTPS
resolvers, remote-desktop services and residential proxy networks."""
_CIRCUMVENTION = frozenset(CIRCUMVENTION_CATEGORIES)

DOH_WIRE = "DNS-over-HTTPS (RFC 8484 wire format)"
"""`doh_request` reason: a DNS message sent as `application/dns-message`."""
DOH_JSON = "DNS-over-HTTPS (JSON API)"
"""`doh_request` reason: the JSON form Google (`/resolve`) and Cloudflare (`dns-json`) serve."""

WEB_PORTS = (80, 443)
"""The ports a browser needs a CONNECT tunnel to."""

# Media types that carry DNS. dns-udpwireformat is the draft name early DoH clients sent.
_WIRE_TYPES = frozenset({"application/dns-message", "application/dns-udpwireformat"})
_JSON_TYPES = frozenset({"application/dns-json"})
# The JSON API's conventional endpoints (dns.google/resolve, cloudflare-dns.com/dns-query).
_JSON_ROUTES = frozenset({"resolve", "dns-query"})
# A name as the JSON API takes it: dotted labels (underscores for _dmarc and SRV names), an
# optional final dot, or the root ".". Bounded repeats, fullmatch only: linear time.
_DNS_NAME = re.compile(r"(?:[A-Za-z0-9_-]{1,63}\.){1,127}(?:[A-Za-z0-9_-]{1,63})?|\.")
_RR_TYPES = frozenset(
    "A NS CNAME SOA PTR HINFO MX TXT RP AFSDB SIG KEY AAAA LOC SRV NAPTR KX CERT DNAME OPT APL "
    "DS SSHFP IPSECKEY RRSIG NSEC DNSKEY DHCID NSEC3 NSEC3PARAM TLSA SMIMEA HIP CDS CDNSKEY "
    "OPENPGPKEY CSYNC ZONEMD SVCB HTTPS SPF EUI48 EUI64 TKEY TSIG IXFR AXFR ANY URI CAA".split()
)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_DNS_MESSAGE = 65535


# ---------------------------------------------------------------------------------------------
# Headers

# Mapping types whose lookups ignore case (mitmproxy's Headers), learnt on first use; a plain
# dict never does. Bounded by the number of mapping classes in the program.
_FOLDS_CASE: dict[type, bool] = {dict: False}


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name` (given in lowercase), whatever the case of the mapping's
    keys, or None. mitmproxy's Headers ignore case and answer the first lookup; a plain dict
    (as in tests, or HTTP/1 names as sent) is searched name by name when that misses."""
    value = headers.get(name)
    if value is not None or _folds_case(headers):
        return value
    for key in headers:
        if len(key) == len(name) and key.lower() == name:
            return headers[key]
    return None


def _folds_case(headers: Mapping[str, str]) -> bool:
    cls = type(headers)
    known = _FOLDS_CASE.get(cls)
    if known is not None:
        return known
    for key in headers:
        other = key.swapcase()
        if other != key:
            known = headers.get(other) is not None
            _FOLDS_CASE[cls] = known
            return known
    return False  # nothing to tell by yet; a scan of a mapping without letters is short


# ---------------------------------------------------------------------------------------------
# DNS-over-HTTPS


def doh_request(method: str, path: str, headers: Mapping[str, str]) -> str | None:
    """Why this request is DNS-over-HTTPS (`DOH_WIRE` or `DOH_JSON`), or None. Any host: a
    resolver nobody has listed yet answers the same requests as one in the `doh` category.

    Recognised: a body typed `application/dns-message` (RFC 8484 POST; curl `--doh-url`, Chrome);
    `Accept: application/dns-message` (Firefox's GET form) or `application/dns-json` (Cloudflare's
    JSON); a `dns=` parameter that decodes to a DNS query message (RFC 8484 GET, on any path, as
    NextDNS's `/<id>?dns=` shows); and the JSON API's `name=<domain>` with an optional valid
    `type=` on a path ending `/resolve` or `/dns-query`, or with `ct=application/dns-json`.
    Pages that merely mention DNS (`/articles/dns-query-explained`, `?q=dns-query`) do not
    match: a `dns=` value must be a well-formed query, a `name=` value a domain name.
    """
    if method == "CONNECT":  # its "path" is host:port; the requests inside come later
        return None
    ctype = header_value(headers, "content-type")
    if ctype is not None and "dns" in ctype.lower():
        found = _media_reason(ctype)
        if found is not None:
            return found
    accept = header_value(headers, "accept")
    if accept is not None and "dns" in accept.lower():
        for item in accept.split(","):
            found = _media_reason(item)
            if found is not None:
                return found
    # Cheap guard before parsing the query: every URL form needs one of these names.
    qmark = path.find("?")
    if qmark < 0 or ("dns=" not in path and "name=" not in path):
        return None
    return _query_reason(path[:qmark], path[qmark + 1 :])


def _media_reason(value: str) -> str | None:
    media = value.partition(";")[0].strip().lower()
    if media in _WIRE_TYPES:
        return DOH_WIRE
    if media in _JSON_TYPES:
        return DOH_JSON
    return None


def _query_reason(route: str, query: str) -> str | None:
    qname: str | None = None
    qtype: str | None = None
    ctype: str | None = None
    for segment in query.split("&"):
        key, _, value = segment.partition("=")
        if key == "dns":
            if _is_dns_query(value):
                return DOH_WIRE
        elif key == "name":
            qname = value
        elif key == "type":
            qtype = value
        elif key == "ct":
            ctype = value
    if qname is None:
        return None
    reason = DOH_JSON
    known_route = route.rstrip("/").rpartition("/")[2].lower() in _JSON_ROUTES
    if ctype is not None:
        # Google's /resolve answers in either form: ct=application/dns-message asks for wire.
        media = _media_reason(unquote(ctype))
        if media is not None:
            reason, known_route = media, True
    if not known_route or not _DNS_NAME.fullmatch(unquote(qname)):
        return None
    if qtype is not None and not _is_rr_type(unquote(qtype)):
        return None
    return reason


def _is_rr_type(value: str) -> bool:
    """A record type as the JSON API takes it: a mnemonic (`AAAA`, any case), `TYPE65`, or a
    number from 1 to 65535."""
    upper = value.upper()
    if upper in _RR_TYPES:
        return True
    digits = upper[4:] if upper.startswith("TYPE") else upper
    return digits.isascii() and digits.isdigit() and len(digits) <= 5 and 0 < int(digits) <= 65535


def _is_dns_query(value: str) -> bool:
    """Whether a `dns=` value is base64url for a DNS query: a 12-byte header with QR=0, opcode
    QUERY, one question and no answers, then a well-formed name and its type and class."""
    if "%" in value:
        value = unquote(value)  # a client may escape the padding
    value = value.rstrip("=")  # RFC 8484 leaves padding out; tolerate it
    if not 16 <= len(value) <= _MAX_DNS_MESSAGE * 4 // 3 + 4 or not _BASE64URL.fullmatch(value):
        return False
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return False
    if len(data) < 17:  # header + root name + type + class
        return False
    flags, qdcount, ancount, nscount, arcount = (
        data[2],
        int.from_bytes(data[4:6]),
        int.from_bytes(data[6:8]),
        int.from_bytes(data[8:10]),
        int.from_bytes(data[10:12]),
    )
    # QR (0: a query) and opcode (0: QUERY) are the top five bits of the third byte.
    if flags & 0xF8 or qdcount != 1 or ancount or nscount or arcount > 2:
        return False
    i, end = 12, len(data)
    total = 0
    while True:
        if i >= end:
            return False
        length = data[i]
        if length == 0:
            i += 1
            break
        if length > 63:  # no compression in the first name of a message; bigger is invalid
            return False
        total += length + 1
        if total > 255:
            return False
        i += length + 1
    return i + 4 <= end  # QTYPE and QCLASS


# ---------------------------------------------------------------------------------------------
# Categories and ports


def is_circumvention_category(name: str) -> bool:
    """Whether `name` (a UT1 folder name such as `vpn`) is one of `CIRCUMVENTION_CATEGORIES`."""
    return name in _CIRCUMVENTION


def connect_port_allowed(
    port: int, allowed: Iterable[int | tuple[int, int]] = WEB_PORTS
) -> bool:
    """Whether a CONNECT tunnel to `port` is allowed. Browsers need 443 (and 80 only for the
    odd `ws://` through an explicit proxy: plain HTTP never uses CONNECT). A tunnel elsewhere is
    how SSH (22), OpenVPN (1194), SOCKS and other proxies (1080, 3128, 8080) get through a proxy
    untouched, with nothing inside to classify. `allowed` holds ports and `(first, last)` ranges,
    for a school that needs more (say 8443, or "8000-8999" from the config)."""
    if not isinstance(port, int) or not 0 < port <= 65535:
        return False
    for item in allowed:
        if isinstance(item, tuple):
            if item[0] <= port <= item[1]:
                return True
        elif item == port:
            return True
    return False
