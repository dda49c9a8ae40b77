"""Load the identity files of one rule generation from the config (htpasswd, device map, user ->
group table, IP map rows) into the pure tables of `schoolgate.identify`, and build its
`IdentitySources`. The IP -> user map outlives generations (pushed entries must survive a reload),
so the gateway owns it and hands it in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path

from ..config.model import Config, ConfigError
from ..identify import SubnetGroups
from ..identify.identifier import Identifier, IdentitySources
from ..identify.maps import (
    DEVICE_COLUMNS,
    IP_MAP_COLUMNS,
    USER_GROUP_COLUMNS,
    DeviceMap,
    FileSummary,
    IpUserMap,
    UserGroups,
    device_entries,
    ip_map_entries,
    user_group_entries,
)
from ..identify.passwords import HtpasswdUsers, hash_problem
from .ldap import LdapDirectory
from .tables import IdentityFileError, read_table, read_text

__all__ = ["HtpasswdFileUsers", "build_identity", "load_devices", "load_ip_map", "load_user_groups"]

log = logging.getLogger("schoolgate.identity")

Clock = Callable[[], float]


def load_ip_map(ip_users: IpUserMap, path: str | Path) -> FileSummary:
    """Replace the file rows of `ip_users` with the CSV file `path`: columns
    ``ip,user[,ttl_seconds]`` under a header line; an empty TTL never expires. Pushed entries
    stay. Raises IdentityFileError (the old rows stay)."""
    summary = FileSummary(str(path))
    ip_users.replace_file_rows(ip_map_entries(read_table(Path(path), *IP_MAP_COLUMNS, summary),
                                              summary))
    return summary


def load_devices(devices: DeviceMap, path: str | Path) -> FileSummary:
    """Replace `devices` with the CSV file `path` (columns ``key,device``). Raises
    IdentityFileError (the old table stays)."""
    summary = FileSummary(str(path))
    devices.replace(*device_entries(read_table(Path(path), *DEVICE_COLUMNS, summary), summary))
    return summary


def load_user_groups(user_groups: UserGroups, path: str | Path,
                     known_groups: Collection[str] | None = None) -> FileSummary:
    """Replace `user_groups` with the CSV file `path` (columns ``user,group``); rows naming a
    group outside `known_groups` (when given) are skipped. Raises IdentityFileError (the old
    table stays)."""
    summary = FileSummary(str(path))
    rows = read_table(Path(path), *USER_GROUP_COLUMNS, summary)
    user_groups.replace(user_group_entries(rows, summary, known_groups))
    return summary


class HtpasswdFileUsers(HtpasswdUsers):
    """The users of the htpasswd file at `path`, read at once and again by `reload()`; `summary`
    says what the last read found. Lines are ``user:hash``, as Apache's `htpasswd` writes them."""

    def __init__(self, path: str | Path, *, cache_seconds: float = 300.0,
                 cache_size: int = 10_000, clock: Clock = time.monotonic):
        super().__init__(cache_seconds=cache_seconds, cache_size=cache_size, clock=clock)
        self.path = Path(path)
        self.summary = self.reload()

    def reload(self) -> FileSummary:
        """Read the file again and swap it in whole (forgetting remembered logins). Bad lines are
        skipped and listed in the summary; an unreadable file raises `IdentityFileError` and the
        old users stay."""
        text = read_text(self.path)
        summary = FileSummary(str(self.path))
        users: dict[str, str] = {}
        first_line: dict[str, int] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if "\ufffd" in line:
                summary.problem(number, "not valid UTF-8")
                continue
            user, colon, rest = line.partition(":")
            if not colon:
                summary.problem(number, "not USER:PASSWORD-HASH (no ':')")
                continue
            if not user:
                summary.problem(number, "no username before the ':'")
                continue
            stored = rest.split(":", 1)[0]  # Apache ignores any further fields
            problem = hash_problem(stored)
            if problem:
                summary.problem(number, f"user {user!r}: {problem}")
                continue
            if user in users:
                # Apache stops at the first line for a user; so do we, and say so.
                summary.problem(number, f"user {user!r} is already on line {first_line[user]}")
                continue
            users[user] = stored
            first_line[user] = number
        summary.entries = len(users)
        self.replace(users)
        self.summary = summary
        return summary


def build_identity(config: Config, ip_users: IpUserMap | None) -> IdentitySources:
    """Load every identity file of `config` (blocking I/O). A file that cannot be used at all
    raises ConfigError naming it; bad lines are logged with file and line and skipped."""
    ic = config.identity
    subnets = SubnetGroups(config)
    try:
        htpasswd = None
        if ic.htpasswd is not None:
            htpasswd = HtpasswdFileUsers(ic.htpasswd)
            _log_summary(htpasswd.summary)
        devices = None
        if ic.devices is not None:
            devices = DeviceMap()
            _log_summary(load_devices(devices, ic.devices))
        user_groups = None
        if ic.user_groups is not None:
            user_groups = UserGroups()
            _log_summary(load_user_groups(user_groups, ic.user_groups, known_groups=config.groups))
        if ip_users is not None and ic.ip_map is not None:
            _log_summary(load_ip_map(ip_users, ic.ip_map))
    except IdentityFileError as e:
        raise ConfigError([str(e)]) from None
    ldap = LdapDirectory(ic.ldap) if ic.ldap is not None else None
    identifier = Identifier(subnets.identify, ip_users=ip_users, devices=devices,
                            user_groups=user_groups, ldap=ldap)
    return IdentitySources(identifier, subnets, htpasswd, ldap, ic.login_required)


def _log_summary(summary: FileSummary) -> None:
    log.info("identity file %s", summary)
    for problem in summary.problems:
        log.warning("%s", problem)
