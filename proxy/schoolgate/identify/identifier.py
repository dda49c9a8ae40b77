"""Put the identity sources together in the documented order (see `schoolgate.identify`) and
answer, for one request, who it is: user, device, IP and the group whose policy applies; and, per
rule generation (`IdentitySources`), whether a device must log in and whether a login is good.

Pure and fast: every source it reads is already in memory. What needs the network (an LDAP bind
or group search) goes through the `Directory` it was handed, in a worker thread, and fills the
caches read here; this module imports no client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..config.model import LdapSettings
from . import Identity, SubnetGroups
from .maps import DeviceMap, IpUserMap, UserGroups
from .names import normalise_user
from .passwords import HtpasswdUsers

__all__ = ["CachedGroups", "Directory", "IdentitySources", "Identifier", "SOURCES"]

#: What `Identity.source` can say decided the group, most specific first.
SOURCES = ("user-csv", "ldap-group", "subnet", "default")


class CachedGroups(Protocol):
    """What the identifier needs from a directory: `schoolgate.sources.ldap.LdapDirectory` fits."""

    def cached_group(self, user: str) -> str | None: ...


class Directory(CachedGroups, Protocol):
    """What a rule generation's identity needs from the school's directory (logins and groups):
    `schoolgate.sources.ldap.LdapDirectory` fits. `authenticate` and `groups_of` block on the
    network; the others read memory only."""

    @property
    def settings(self) -> LdapSettings: ...

    def recently_verified(self, user: str, password: str) -> bool: ...

    def authenticate(self, user: str, password: str) -> bool: ...

    def groups_of(self, user: str) -> frozenset[str]: ...


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
    ) -> None:
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


@dataclass(frozen=True, slots=True)
class IdentitySources:
    """The identity of one rule generation: who is browsing, and the proxy logins that say so.
    Built from the config's files by `schoolgate.sources.identity.build_identity`."""

    identifier: Identifier
    """Answers who sent a request, in the documented order."""
    subnets: SubnetGroups
    """The network fallback, also deciding which devices must log in."""
    htpasswd: HtpasswdUsers | None
    """Logins checked against an htpasswd file, or None when not configured."""
    ldap: Directory | None
    """Logins checked by a directory bind, and directory groups; None when not configured."""
    login_required: frozenset[str]
    """Groups (by subnet) whose devices must log in to the proxy."""

    @property
    def proxy_auth(self) -> bool:
        """Whether any login source is configured."""
        return self.htpasswd is not None or self.ldap is not None

    def recently_verified(self, user: str, password: str) -> bool:
        """A login checked within the cache time (memory only: safe on the event loop)."""
        return any(s is not None and s.recently_verified(user, password)
                   for s in (self.htpasswd, self.ldap))

    def authenticate(self, user: str, password: str) -> bool:
        """Check a login: htpasswd first, then an LDAP bind. Blocking: call in a thread."""
        if self.htpasswd is not None and self.htpasswd.authenticate(user, password):
            return True
        return self.ldap is not None and self.ldap.authenticate(user, password)

    def must_log_in(self, client_ip: str) -> bool:
        """Whether the device's subnet group requires a proxy login."""
        return bool(self.login_required) and (
            self.subnets.identify(client_ip).group in self.login_required)

    def identify(self, client_ip: str, proxy_user: str | None = None) -> Identity:
        """Who sent a request from `client_ip`, `proxy_user` being a verified login or None."""
        return self.identifier.identify(client_ip, proxy_user=proxy_user)
