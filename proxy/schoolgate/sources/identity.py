"""The identity sources of one rule generation, built from the config: proxy logins (htpasswd,
LDAP), the device map, user -> group tables and directory groups, composed in the documented
order by `schoolgate.directory.Identifier`. The IP -> user map outlives generations (pushed
entries must survive a reload), so the gateway owns it and hands it in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config.model import Config
from ..identify.maps import DeviceMap, IpUserMap, UserGroups
from ..identify.passwords import HtpasswdUsers
from ..identify.tables import IdentityFileError
from ..identify.identifier import Identifier
from .ldap import LdapDirectory
from ..identify.names import normalise_user
from ..identify import Identity, SubnetGroups

__all__ = ["IdentitySources", "build_identity"]

log = logging.getLogger("schoolgate.identity")


@dataclass(frozen=True, slots=True)
class IdentitySources:
    identifier: Identifier
    subnets: SubnetGroups
    htpasswd: HtpasswdUsers | None
    ldap: LdapDirectory | None
    login_required: frozenset[str]

    @property
    def proxy_auth(self) -> bool:
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
        return self.identifier.identify(client_ip, proxy_user=proxy_user)


def build_identity(config: Config, ip_users: IpUserMap | None) -> IdentitySources:
    """Load every identity file of `config` (blocking I/O). A file that cannot be used at all
    raises ConfigError naming it; bad lines are logged with file and line and skipped."""
    from ..config.model import ConfigError

    ic = config.identity
    subnets = SubnetGroups(config)
    try:
        htpasswd = None
        if ic.htpasswd is not None:
            htpasswd = HtpasswdUsers(ic.htpasswd)
            _log_summary(htpasswd.summary)
        devices = None
        if ic.devices is not None:
            devices = DeviceMap()
            _log_summary(devices.load_csv(ic.devices))
        user_groups = None
        if ic.user_groups is not None:
            user_groups = UserGroups()
            _log_summary(user_groups.load_csv(ic.user_groups, known_groups=config.groups))
        if ip_users is not None and ic.ip_map is not None:
            _log_summary(ip_users.load_csv(ic.ip_map))
    except IdentityFileError as e:
        raise ConfigError([str(e)]) from None
    ldap = LdapDirectory(ic.ldap) if ic.ldap is not None else None
    identifier = Identifier(subnets.identify, ip_users=ip_users, devices=devices,
                            user_groups=user_groups, ldap=ldap)
    return IdentitySources(identifier, subnets, htpasswd, ldap, ic.login_required)


def _log_summary(summary) -> None:
    log.info("identity file %s", summary)
    for problem in summary.problems:
        log.warning("%s", problem)


def login_name(user: str) -> str | None:
    try:
        return normalise_user(user)
    except ValueError:
        return None
