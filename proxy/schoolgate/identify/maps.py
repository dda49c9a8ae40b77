"""The lookup tables identification reads on every request: client IP -> user (fed by the network,
entries expire), IP or MAC -> device name, and user -> group; and the checks of the rows that fill
them. Pure: `schoolgate.sources.identity` reads the files, these check and hold what they say.

Lookups are dictionary reads; a fill builds a new table aside and swaps it in whole, so a lookup
never sees half a file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from ..classify.lists import ListProblem, ListSummary
from . import normalise_ip
from .names import normalise_mac, normalise_user

__all__ = [
    "DEVICE_COLUMNS", "IP_MAP_COLUMNS", "MAX_TTL", "USER_GROUP_COLUMNS", "DeviceMap",
    "FileSummary", "IpUserMap", "LoadProblem", "Row", "UserGroups", "device_entries",
    "ip_map_entries", "user_group_entries",
]

Clock = Callable[[], float]

# A skipped row and a file's load summary are the same as a category list's: one message format
# (`file:line: what is wrong; line skipped`) for every file a technician edits.
LoadProblem = ListProblem
FileSummary = ListSummary

Row = tuple[int, Mapping[str, str]]
"""One data row of an identity file: its line number and ``{column: stripped text}``, empty
optional cells left out (as `schoolgate.sources.tables.read_table` yields them)."""

#: Each file's columns, (required, optional): what the reader asks of its header.
IP_MAP_COLUMNS: tuple[tuple[str, ...], tuple[str, ...]] = (("ip", "user"), ("ttl_seconds",))
DEVICE_COLUMNS: tuple[tuple[str, ...], tuple[str, ...]] = (("key", "device"), ())
USER_GROUP_COLUMNS: tuple[tuple[str, ...], tuple[str, ...]] = (("user", "group"), ())

#: Longest time an IP map entry may live: a week covers a boarding school's longest session.
MAX_TTL = 7 * 24 * 3600

#: Longest device name: names end up in logs and reports.
MAX_DEVICE_NAME = 256


def _ip_key(text: str) -> str:
    """The map key for a client address: IPv4-mapped IPv6 and zone indexes removed."""
    return str(normalise_ip(text.strip()))


def _ttl_problem(ttl: float) -> str | None:
    # bool is an int to Python, and True seconds is certainly a mistake.
    if isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL:
        return f"ttl must be from 1 to {MAX_TTL} seconds, not {ttl!r}"
    return None


def _device_problem(name: str) -> str | None:
    # Control characters would let a file forge lines in logs and reports.
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name) or len(name) > MAX_DEVICE_NAME:
        return f"names are at most {MAX_DEVICE_NAME} printable characters"
    return None


# -- checking the rows of a file ------------------------------------------------------------------


def ip_map_entries(rows: Iterable[Row], summary: FileSummary) -> dict[str, tuple[str, int | None]]:
    """The IP map file's entries, ``{ip: (user, ttl seconds or None for never)}``, normalised,
    for `IpUserMap.replace_file_rows`. Columns `IP_MAP_COLUMNS`; bad rows are noted in `summary`
    and skipped, and `summary.entries` is set."""
    entries: dict[str, tuple[str, int | None]] = {}
    first_line: dict[str, int] = {}
    # `rows` may be a reader noting its own problems in `summary` as it goes; consuming it lazily
    # keeps every problem in line order.
    for number, row in rows:
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
        ttl = None
        if "ttl_seconds" in row:
            ttl = _parse_ttl(row["ttl_seconds"])
            if ttl is None:
                summary.problem(number, f"ttl_seconds: must be a whole number from 1 to "
                                        f"{MAX_TTL}, or empty for no expiry, "
                                        f"not {row['ttl_seconds']!r}")
                continue
        if ip in entries:
            summary.problem(number, f"ip {ip} is already on line {first_line[ip]}")
            continue
        entries[ip] = (user, ttl)
        first_line[ip] = number
    summary.entries = len(entries)
    return entries


def _parse_ttl(text: str) -> int | None:
    try:
        ttl = int(text)
    except ValueError:
        return None
    return ttl if 1 <= ttl <= MAX_TTL else None


def device_entries(rows: Iterable[Row], summary: FileSummary
                   ) -> tuple[dict[str, str], dict[str, str]]:
    """The device file's entries, ``({ip: device}, {mac: device})``, normalised, for `DeviceMap`.
    Columns `DEVICE_COLUMNS` (a key is an IP address or a MAC in any common spelling); bad rows
    are noted in `summary` and skipped, and `summary.entries` is set."""
    by_ip: dict[str, str] = {}
    by_mac: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, row in rows:
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
        problem = _device_problem(device)
        if problem:
            summary.problem(number, f"device: {problem}")
            continue
        if key in first_line:
            summary.problem(number, f"{key} is already on line {first_line[key]}")
            continue
        table[key] = device
        first_line[key] = number
    summary.entries = len(by_ip) + len(by_mac)
    return by_ip, by_mac


def user_group_entries(rows: Iterable[Row], summary: FileSummary,
                       known_groups: Collection[str] | None = None) -> dict[str, str]:
    """The user group file's entries, ``{user: group}``, normalised, for `UserGroups`. Columns
    `USER_GROUP_COLUMNS`; rows naming a group outside `known_groups` (when given) and other bad
    rows are noted in `summary` and skipped, and `summary.entries` is set."""
    groups: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, row in rows:
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
    return groups


# -- the tables -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Login:
    user: str
    expires: float
    """Clock time after which the entry no longer counts (`math.inf` for file rows without TTL)."""


class IpUserMap:
    """Who is at which client IP, as network systems report it: RADIUS accounting, DHCP, logon
    scripts (through `schoolgate.gateway.pushapi`) and a file of fixed assignments.

    Pushed entries win over file rows for the same IP (they are news about a live session); when a
    pushed entry expires or is forgotten, the file row for that IP counts again. Pushed entries are
    bounded by `max_entries`: beyond it, expired entries go first, then the least recently updated.
    `clock` is monotonic seconds; tests pass their own so that nothing ever sleeps.

    `version` increases with every change to what `get` could answer, and `expires` says until
    when an answer holds, so a cache of answers knows when to ask again.
    """

    def __init__(self, *, max_entries: int = 100_000, clock: Clock = time.monotonic):
        self.max_entries = max_entries
        self.clock = clock
        self.version = 0
        """Increases on every `set`, `forget` or `purge` that changed something, and every
        `replace_file_rows`. An answer cached at one version is stale at any other."""
        self._pushed: dict[str, _Login] = {}
        self._file: dict[str, _Login] = {}

    def replace_file_rows(self, rows: Mapping[str, tuple[str, float | None]], *,
                          now: float | None = None) -> None:
        """Replace the fixed assignments with `rows`, ``{ip: (user, ttl seconds or None for
        never)}`` (as `ip_map_entries` returns them); a TTL counts from `now`. Pushed entries
        stay. Raises ValueError for a bad IP, username or TTL, and then nothing changes."""
        now = self.clock() if now is None else now
        table: dict[str, _Login] = {}
        for ip, (user, ttl) in rows.items():
            expires = math.inf
            if ttl is not None:
                if problem := _ttl_problem(ttl):
                    raise ValueError(f"{ip}: {problem}")
                expires = now + ttl
            table[_ip_key(ip)] = _Login(normalise_user(user), expires)
        self._file = table
        self.version += 1

    def set(self, ip: str, user: str, ttl: float, *, now: float | None = None) -> None:
        """Record that `user` is at `ip` for the next `ttl` seconds (replacing whoever was).
        Raises ValueError for a bad IP, username or TTL (from 1 to `MAX_TTL` seconds)."""
        key = _ip_key(ip)
        name = normalise_user(user)
        if problem := _ttl_problem(ttl):
            raise ValueError(problem)
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

    def pushed_entries(self, now: float | None = None) -> list[tuple[str, str, float]]:
        """The pushed entries still in force, as ``(ip, user, seconds left)``: what another
        process's map needs to answer the same (`set` each one there)."""
        now = self.clock() if now is None else now
        return [(ip, login.user, login.expires - now) for ip, login in self._pushed.items()
                if login.expires - now >= 1]

    def get(self, ip: str, now: float | None = None) -> str | None:
        """The user at `ip`, or None (unknown, expired, or not an IP address). No I/O."""
        entry = self._current(ip, now)
        return entry.user if entry is not None else None

    def expires(self, ip: str, now: float | None = None) -> float:
        """The clock time at which the entry `get(ip, now)` answers from stops counting; then a
        file row beneath a pushed entry may count again, or nobody. `math.inf` when `get` answers
        None, or from a file row without TTL. No I/O."""
        entry = self._current(ip, now)
        return entry.expires if entry is not None else math.inf

    def _current(self, ip: str, now: float | None) -> _Login | None:
        try:
            key = _ip_key(ip)
        except ValueError:
            return None
        now = self.clock() if now is None else now
        for table in (self._pushed, self._file):
            entry = table.get(key)
            if entry is not None and now < entry.expires:
                return entry
        return None

    def purge(self, now: float | None = None) -> int:
        """Drop expired pushed entries (call it every minute or so); return how many went."""
        now = self.clock() if now is None else now
        # File rows stay until the next load: the file bounds them, and `get` checks expiry.
        expired = [k for k, e in self._pushed.items() if e.expires <= now]
        for k in expired:
            del self._pushed[k]
        if expired:
            self.version += 1
        return len(expired)

    def __len__(self) -> int:
        return len(self._pushed) + len(self._file)


class DeviceMap:
    """Device names by client IP or by MAC address (a file's ``key,device`` rows, through
    `device_entries`). A MAC is only known when a network feed supplies it; where both match,
    the MAC wins, as it survives a new DHCP lease."""

    def __init__(self, by_ip: Mapping[str, str] | None = None,
                 by_mac: Mapping[str, str] | None = None) -> None:
        self._by_ip: dict[str, str] = {}
        self._by_mac: dict[str, str] = {}
        self.replace(by_ip or {}, by_mac or {})

    def replace(self, by_ip: Mapping[str, str], by_mac: Mapping[str, str]) -> None:
        """Replace the table with `by_ip` (``{ip: device}``) and `by_mac` (``{mac: device}``,
        any common MAC spelling). Raises ValueError for a bad key or device name, and then
        nothing changes."""
        ips = {_ip_key(ip): _checked_device(device) for ip, device in by_ip.items()}
        macs = {normalise_mac(mac): _checked_device(device) for mac, device in by_mac.items()}
        self._by_ip, self._by_mac = ips, macs

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


def _checked_device(name: str) -> str:
    if problem := _device_problem(name):
        raise ValueError(f"device {name!r}: {problem}")
    return name


class UserGroups:
    """Each user's Schoolgate group (a file's ``user,group`` rows, an export from the school's MIS
    or directory, through `user_group_entries`). Usernames are normalised as everywhere (see
    `normalise_user`): ``SCHOOL\\Alice`` in the file matches ``alice`` at the proxy."""

    def __init__(self, groups: Mapping[str, str] | None = None) -> None:
        self._groups: dict[str, str] = {}
        self.replace(groups or {})

    def replace(self, groups: Mapping[str, str]) -> None:
        """Replace the table with `groups` (``{user: group}``). Raises ValueError for a bad
        username, and then nothing changes."""
        self._groups = {normalise_user(user): group for user, group in groups.items()}

    def group_of(self, user: str) -> str | None:
        """The user's group, or None when the table does not list them. No I/O."""
        try:
            return self._groups.get(normalise_user(user))
        except ValueError:
            return None

    def __len__(self) -> int:
        return len(self._groups)
