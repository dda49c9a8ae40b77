"""Who is browsing, from every source a school has: proxy logins (htpasswd, LDAP), an IP -> user
map fed by the network, a device map, user -> group tables and directory groups, and subnets.

The documented order, first answer wins:

User
  1. the proxy login (Basic proxy authentication, checked against htpasswd or by an LDAP bind);
  2. the IP map: a live entry pushed by RADIUS accounting, DHCP or a logon script
     (`schoolgate.pushapi`, entries expire after their TTL), else a row of the IP map CSV;
  3. none: the request is identified by its IP address alone.
Device
  the device map, by MAC address when a feed supplies one, else by client IP.
Group (`Identity.source` says which rule decided)
  1. ``user-csv``: the user's row in the user -> group CSV;
  2. ``ldap-group``: the first entry of the LDAP group mapping the user is a member of;
  3. ``subnet``: the most specific subnet containing the client IP (guest Wi-Fi, suites);
  4. ``default``: the configured default group.

Usernames are normalised everywhere (`normalise_user`): case-insensitive, domain dropped.
"""

from __future__ import annotations

from .identifier import SOURCES, Identifier
from .ldap import DEFAULT_GROUP_FILTER, DirectoryUnavailable, LdapDirectory, LdapSettings
from .maps import MAX_TTL, DeviceMap, IpUserMap, UserGroups
from .names import normalise_mac, normalise_user
from .passwords import CredentialCache, HtpasswdUsers, parse_basic_auth
from .tables import FileSummary, IdentityFileError, LoadProblem

__all__ = [
    "DEFAULT_GROUP_FILTER",
    "MAX_TTL",
    "SOURCES",
    "CredentialCache",
    "DeviceMap",
    "DirectoryUnavailable",
    "FileSummary",
    "HtpasswdUsers",
    "IdentityFileError",
    "Identifier",
    "IpUserMap",
    "LdapDirectory",
    "LdapSettings",
    "LoadProblem",
    "UserGroups",
    "normalise_mac",
    "normalise_user",
    "parse_basic_auth",
]
