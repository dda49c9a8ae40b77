"""Who is browsing, from every source a school has: proxy logins (htpasswd, LDAP), an IP -> user
map fed by the network, a device map, user -> group tables and directory groups, and subnets.

The documented order, first answer wins:

User
  1. the proxy login (Basic proxy authentication, checked against htpasswd or by an LDAP bind);
  2. the IP map: a live entry pushed by RADIUS accounting, DHCP or a logon script
     (`schoolgate.gateway.pushapi`, entries expire after their TTL), else a row of the IP map CSV;
  3. none: the request is identified by its IP address alone.
Device
  the device map, by MAC address when a feed supplies one, else by client IP.
Group (`Identity.source` says which rule decided)
  1. ``user-csv``: the user's row in the user -> group CSV;
  2. ``ldap-group``: the first entry of the LDAP group mapping the user is a member of;
  3. ``subnet``: the most specific subnet containing the client IP (guest Wi-Fi, suites);
  4. ``default``: the configured default group.

Usernames are normalised everywhere (`normalise_user`): case-insensitive, domain dropped.
This package is pure: every lookup reads tables already in memory (no mitmproxy, no I/O). The
files are read by `schoolgate.sources.identity`, the directory is asked by
`schoolgate.sources.ldap`; `identifier.IdentitySources` composes them through a protocol.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from ..config.model import Config

__all__ = ["Identity", "SubnetGroups", "normalise_ip"]


@dataclass(frozen=True, slots=True)
class Identity:
    """The person or device behind one request, as far as the gateway can tell."""

    ip: str
    """Client IP address as text, IPv4-mapped IPv6 addresses shown as IPv4."""
    group: str
    """Name of the group whose policy applies."""
    source: str
    """How the group was chosen: `subnet`, `default`, or `override` (the `why --group` flag)."""
    user: str | None = None
    """The individual, where known (proxy login, IP map); None when unknown."""
    device: str | None = None
    """Device name or ID, where known; None when unknown."""


@functools.lru_cache(maxsize=16384)
def normalise_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse a client address; dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d.

    Memoised: a school's few thousand devices ask again and again, and `ipaddress` parsing cost
    about 5 % of the hook time for a connection's first request (benchmarks/hook_time.py). The
    results are immutable; the bound keeps a scan of the address space from growing it."""
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class SubnetGroups:
    """Longest-prefix match of a client IP against every group's subnets."""

    def __init__(self, config: Config) -> None:
        self.default_group = config.default_group
        # Most specific first, so the first containing network is the longest prefix. A school has
        # tens of subnets, so a scan is cheaper than a radix tree in Python.
        rules = [(net, g.name) for g in config.groups.values() for net in g.subnets]
        rules.sort(key=lambda r: r[0].prefixlen, reverse=True)
        self._v4 = [(n, g) for n, g in rules if n.version == 4]
        self._v6 = [(n, g) for n, g in rules if n.version == 6]

    def identify(self, client_ip: str) -> Identity:
        """The group of `client_ip` by subnet, or the default group. Raises ValueError when
        `client_ip` is not an IP address."""
        ip = normalise_ip(client_ip)
        for net, group in self._v4 if ip.version == 4 else self._v6:
            if ip in net:
                return Identity(ip=str(ip), group=group, source="subnet")
        return Identity(ip=str(ip), group=self.default_group, source="default")
