"""The lookup tables identification reads on every request: client IP -> user (fed by the network,
entries expire), IP or MAC -> device name, and user -> group. Lookups are dictionary reads with
no I/O; loads build a new table aside and swap it in whole, so a lookup never sees half a file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from . import normalise_ip
from .names import normalise_mac, normalise_user
from .tables import FileSummary, read_table

__all__ = ["DeviceMap", "IpUserMap", "UserGroups", "MAX_TTL"]

Clock = Callable[[], float]

#: Longest time an IP map entry may live: a week covers a boarding school's longest session.
MAX_TTL = 7 * 24 * 3600


def _ip_key(text: str) -> str:
    """The map key for a client address: IPv4-mapped IPv6 and zone indexes removed."""
    return str(normalise_ip(text.strip()))


@dataclass(frozen=True, slots=True)
class _Login:
    user: str
    expires: float
    """Clock time after which the entry no longer counts (`math.inf` for CSV rows without TTL)."""


class IpUserMap:
    """Who is at which client IP, as network systems report it: RADIUS accounting, DHCP, logon
    scripts (through `schoolgate.pushapi`) and a CSV file of fixed assignments.

    Pushed entries win over CSV rows for the same IP (they are news about a live session); when a
    pushed entry expires or is forgotten, the CSV row for that IP counts again. Pushed entries are
    bounded by `max_entries`: beyond it, expired entries go first, then the least recently updated.
    `clock` is monotonic seconds; tests pass their own so that nothing ever sleeps.
    """

    def __init__(self, *, max_entries: int = 100_000, clock: Clock = time.monotonic):
        self.max_entries = max_entries
        self.clock = clock
        self._pushed: dict[str, _Login] = {}
        self._file: dict[str, _Login] = {}
        self.version = 0
        """Grows on every change to what `get` may answer: a cached answer made at an older
        version may be out of date."""

    def load_csv(self, path: str | Path) -> FileSummary:
        """Replace the CSV rows with those of `path`: columns ``ip,user[,ttl_seconds]`` under a
        header line; an empty TTL never expires. Raises IdentityFileError (old rows stay)."""
        summary = FileSummary(str(path))
        now = self.clock()
        rows: dict[str, _Login] = {}
        first_line: dict[str, int] = {}
        for number, row in read_table(Path(path), ("ip", "user"), ("ttl_seconds",), summary):
            try:
                ip = _ip_key(row["ip"])
            except ValueError:
                summary.problem(number, f"ip: {row['ip']!r} is not an IP address")
                continue
            try:
                user = normalise_user(row["user"])
            except ValueError as e:
                summary.problem(number, f"user: {e}")
                continue
            expires = math.inf
            if "ttl_seconds" in row:
                ttl = _parse_ttl(row["ttl_seconds"])
                if ttl is None:
                    summary.problem(number, f"ttl_seconds: must be a whole number from 1 to "
                                            f"{MAX_TTL}, or empty for no expiry, "
                                            f"not {row['ttl_seconds']!r}")
                    continue
                expires = now + ttl
            if ip in rows:
                summary.problem(number, f"ip {ip} is already on line {first_line[ip]}")
                continue
            rows[ip] = _Login(user, expires)
            first_line[ip] = number
        summary.entries = len(rows)
        self._file = rows
        self.version += 1
        return summary

    def set(self, ip: str, user: str, ttl: float, *, now: float | None = None) -> None:
        """Record that `user` is at `ip` for the next `ttl` seconds (replacing whoever was).
        Raises ValueError for a bad IP, username or TTL (from 1 to `MAX_TTL` seconds)."""
        key = _ip_key(ip)
        name = normalise_user(user)
        if isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL:
            raise ValueError(f"ttl must be from 1 to {MAX_TTL} seconds, not {ttl!r}")
        now = self.clock() if now is None else now
        self._pushed.pop(key, None)  # re-insert at the end: eviction drops the oldest first
        self._pushed[key] = _Login(name, now + ttl)
        self.version += 1
        if len(self._pushed) > self.max_entries:
            self.purge(now)
            while len(self._pushed) > self.max_entries:
                del self._pushed[next(iter(self._pushed))]

    def forget(self, ip: str, user: str | None = None) -> bool:
        """Drop the pushed entry for `ip` (a logoff); with `user`, only if it is still that user's,
        so a late logoff cannot end the next person's session. True if one was dropped."""
        key = _ip_key(ip)
        entry = self._pushed.get(key)
        if entry is None or (user is not None and entry.user != normalise_user(user)):
            return False
        del self._pushed[key]
        self.version += 1
        return True

    def get(self, ip: str, now: float | None = None) -> str | None:
        """The user at `ip`, or None (unknown, expired, or not an IP address). No I/O."""
        try:
            key = _ip_key(ip)
        except ValueError:
            return None
        now = self.clock() if now is None else now
        for table in (self._pushed, self._file):
            entry = table.get(key)
            if entry is not None and now < entry.expires:
                return entry.user
        return None

    def purge(self, now: float | None = None) -> int:
        """Drop expired pushed entries (call it every minute or so); return how many went."""
        now = self.clock() if now is None else now
        # CSV rows stay until the next load: the file bounds them, and `get` checks expiry.
        expired = [k for k, e in self._pushed.items() if e.expires <= now]
        for k in expired:
            del self._pushed[k]
        if expired:
            self.version += 1
        return len(expired)

    def expires(self, ip: str, now: float | None = None) -> float:
        """The clock time at which the entry `get(ip)` answers from stops counting (`math.inf`
        when there is none, or it never expires): a cached answer holds until then."""
        try:
            key = _ip_key(ip)
        except ValueError:
            return math.inf
        now = self.clock() if now is None else now
        for table in (self._pushed, self._file):
            entry = table.get(key)
            if entry is not None and now < entry.expires:
                return entry.expires
        return math.inf

    def __len__(self) -> int:
        return len(self._pushed) + len(self._file)


def _parse_ttl(text: str) -> int | None:
    try:
        ttl = int(text)
    except ValueError:
        return None
    return ttl if 1 <= ttl <= MAX_TTL else None


class DeviceMap:
    """Device names by client IP or by MAC address, from a CSV file with columns ``key,device``
    (a key is an IP address or a MAC in any common spelling). A MAC is only known when a network
    feed supplies it; where both match, the MAC wins, as it survives a new DHCP lease."""

    def __init__(self) -> None:
        self._by_ip: dict[str, str] = {}
        self._by_mac: dict[str, str] = {}

    def load_csv(self, path: str | Path) -> FileSummary:
        """Replace the table with `path`. Raises IdentityFileError (the old table stays)."""
        summary = FileSummary(str(path))
        by_ip: dict[str, str] = {}
        by_mac: dict[str, str] = {}
        first_line: dict[str, int] = {}
        for number, row in read_table(Path(path), ("key", "device"), (), summary):
            key, device = row["key"], row["device"]
            table = by_ip
            try:
                key = _ip_key(key)
            except ValueError:
                try:
                    key, table = normalise_mac(key), by_mac
                except ValueError:
                    summary.problem(number, f"key: {key!r} is neither an IP address nor a MAC "
                                            "address (such as aa:bb:cc:dd:ee:ff)")
                    continue
            if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in device) or len(device) > 256:
                summary.problem(number, "device: names are at most 256 printable characters")
                continue
            if key in first_line:
                summary.problem(number, f"{key} is already on line {first_line[key]}")
                continue
            table[key] = device
            first_line[key] = number
        summary.entries = len(by_ip) + len(by_mac)
        self._by_ip, self._by_mac = by_ip, by_mac
        return summary

    def device_for(self, ip: str, mac: str | None = None) -> str | None:
        """The device at `ip` (or with `mac`), or None. No I/O."""
        if mac:
            try:
                device = self._by_mac.get(normalise_mac(mac))
            except ValueError:
                device = None
            if device is not None:
                return device
        try:
            return self._by_ip.get(_ip_key(ip))
        except ValueError:
            return None

    def __len__(self) -> int:
        return len(self._by_ip) + len(self._by_mac)


class UserGroups:
    """Each user's Schoolgate group, from a CSV file with columns ``user,group`` (an export from
    the school's MIS or directory). Usernames are normalised as everywhere (see
    `normalise_user`): ``SCHOOL\\Alice`` in the file matches ``alice`` at the proxy."""

    def __init__(self) -> None:
        self._groups: dict[str, str] = {}

    def load_csv(self, path: str | Path, known_groups: Collection[str] | None = None
                 ) -> FileSummary:
        """Replace the table with `path`; rows naming a group outside `known_groups` (when
        given) are skipped. Raises IdentityFileError (the old table stays)."""
        summary = FileSummary(str(path))
        groups: dict[str, str] = {}
        first_line: dict[str, int] = {}
        for number, row in read_table(Path(path), ("user", "group"), (), summary):
            try:
                user = normalise_user(row["user"])
            except ValueError as e:
                summary.problem(number, f"user: {e}")
                continue
            group = row["group"]
            if known_groups is not None and group not in known_groups:
                allowed = ", ".join(sorted(known_groups))
                summary.problem(number, f"group: {group!r} is not a group in the configuration "
                                        f"({allowed})")
                continue
            if user in groups:
                summary.problem(number, f"user {user!r} is already on line {first_line[user]}")
                continue
            groups[user] = group
            first_line[user] = number
        summary.entries = len(groups)
        self._groups = groups
        return summary

    def group_of(self, user: str) -> str | None:
        """The user's group, or None when the file does not list them. No I/O."""
        try:
            return self._groups.get(normalise_user(user))
        except ValueError:
            return None

    def __len__(self) -> int:
        return len(self._groups)
