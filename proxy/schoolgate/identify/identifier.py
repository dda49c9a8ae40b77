"""Put the identity sources together in the documented order (see `schoolgate.directory`) and
answer, for one request, who it is: user, device, IP and the group whose policy applies.

Pure and fast: every source it reads is already in memory. What needs the network (an LDAP bind
or group search) happens before, in a worker thread, and fills the caches read here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from . import Identity
from .maps import DeviceMap, IpUserMap, UserGroups
from .names import normalise_user

__all__ = ["Identifier", "SOURCES"]

#: What `Identity.source` can say decided the group, most specific first.
SOURCES = ("user-csv", "ldap-group", "subnet", "default")


class CachedGroups(Protocol):
    """What the identifier needs from a directory: `LdapDirectory` fits."""

    def cached_group(self, user: str) -> str | None: ...


class Identifier:
    """Answers `identify(client_ip, proxy_user=..., mac=...)` from the sources it was given;
    any of them may be None (not configured).

    `subnets` is the network fallback, normally ``SubnetGroups(config).identify``: it returns an
    `Identity` whose group comes from the client's subnet (source `subnet`) or is the default
    group (source `default`), and whose `ip` is the normalised client address.

    `ldap` is read from its cache only. For a user it has no fresh answer for (one known from the
    IP map, or whose groups expired), the caller fetches them in a worker thread with
    `LdapDirectory.groups_of`; until that returns, the subnet decides.
    """

    def __init__(
        self,
        subnets: Callable[[str], Identity],
        *,
        ip_users: IpUserMap | None = None,
        devices: DeviceMap | None = None,
        user_groups: UserGroups | None = None,
        ldap: CachedGroups | None = None,
    ):
        self.subnets = subnets
        self.ip_users = ip_users
        self.devices = devices
        self.user_groups = user_groups
        self.ldap = ldap

    def identify(self, client_ip: str, *, proxy_user: str | None = None, mac: str | None = None,
                 now: float | None = None) -> Identity:
        """Who sent a request from `client_ip`. `proxy_user` is the login the proxy has already
        verified (never an unverified header); `mac` the client's MAC where a feed knows it.
        Raises ValueError only when `client_ip` is not an IP address."""
        network = self.subnets(client_ip)
        user = None
        if proxy_user:
            try:
                user = normalise_user(proxy_user)
            except ValueError:
                user = None
        if user is None and self.ip_users is not None:
            user = self.ip_users.get(network.ip, now)
        device = self.devices.device_for(network.ip, mac) if self.devices is not None else None
        if user is not None:
            if self.user_groups is not None and (group := self.user_groups.group_of(user)):
                return Identity(network.ip, group, "user-csv", user, device)
            if self.ldap is not None and (group := self.ldap.cached_group(user)):
                return Identity(network.ip, group, "ldap-group", user, device)
        return Identity(network.ip, network.group, network.source, user, device)
