"""Load and refresh the illegal-content lists (IWF, CTIRU) for `schoolgate.classify.illegal`: read
each list's source (a file or an http(s) URL from the licence), keep a last good copy of its
digests on disk (never an entry in clear), and swap the digests whole.

Everything here blocks (file and network I/O) and runs off the event loop, in a thread. A failed
refresh keeps the last good list and records why; the message names the source, never an entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import urllib.request
from array import array
from collections.abc import Callable
from pathlib import Path

from ..classify.illegal import IllegalList, IllegalLists, parse_list
from ..config.model import Config, IllegalListConfig
from ..files import replacing
from ..wording import counted

__all__ = ["IllegalListSource", "load_at_start", "sources_for", "without_fetching"]

log = logging.getLogger("schoolgate.illegal")


class IllegalListSource:
    """Where one list's digests come from, and its health: when it was last loaded, the last
    error. `list` is the `IllegalList` requests match against; this object fills it."""

    def __init__(self, config: IllegalListConfig, state_dir: Path | None = None):
        self.config = config
        self.list = IllegalList(config)
        self.loaded_at: float | None = None
        """Unix time of the last successful load (from the source, or the last good copy)."""
        self.checked_at: float | None = None
        self.last_error: str | None = None
        self.problems: list[str] = []
        self._state = state_dir / f"{config.name}.digests" if state_dir else None
        # The digests of the hosts of URL-level entries (selective decryption), beside the
        # entries: the SHA-256 of the entries file it goes with, then the host keys. Copies
        # written before it existed, or a pair torn apart, load without hosts (fail safe: every
        # host is decrypted in `selective` groups) until the next refresh.
        self._hosts_state = state_dir / f"{config.name}.hosts" if state_dir else None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def entries(self) -> int:
        return self.list.entries

    def age(self, now: float | None = None) -> float | None:
        if self.loaded_at is None:
            return None
        return (now or time.time()) - self.loaded_at

    def stale(self, now: float | None = None) -> bool:
        age = self.age(now)
        return age is None or age > self.config.stale_after_seconds

    def due_in(self, now: float | None = None) -> float:
        """Seconds until the next refresh is due: 0 when the list was never loaded, or its last
        good copy is already older than the refresh interval (a gateway that was down)."""
        age = self.age(now)
        if age is None or (self.checked_at is None and self.list.host_keys is None):
            # Never loaded, or a copy without host digests (from before they were kept, or torn):
            # read the source now, once, rather than decrypt every `selective` host until then.
            return 0.0
        return max(0.0, self.config.refresh_seconds - age)

    # -- loading (blocking I/O: call from a thread) --------------------------------------------

    def _read_source(self) -> list[str]:
        source = self.config.source
        if source.startswith(("http://", "https://")):
            # http(s) only, checked above: no file: or custom scheme reaches urlopen.
            req = urllib.request.Request(source, headers={"User-Agent": "Schoolgate"})  # noqa: S310
            with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310
                return r.read().decode("utf-8", errors="replace").splitlines()
        with open(source, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()

    def refresh(self) -> bool:
        """Load from the source and swap. False (last good list kept) on any failure."""
        self.checked_at = time.time()
        try:
            lines = self._read_source()
        except (OSError, ValueError) as e:
            # The reason may hold the URL or path, never an entry.
            return self._failed(f"cannot read {self.config.source}: {e}")
        keys, host_keys, problems = parse_list(lines, self.config.form, self.config.name)
        self.problems = problems
        for p in problems[:20]:
            log.warning("illegal list %s", p)
        if not keys:
            return self._failed(f"{self.config.name}: the source has no valid entries")
        if host_keys is None:
            log.warning("illegal list %s: a hashed line names no host digest, so every host is "
                        "decrypted for groups with `https: selective`", self.config.name)
        self.list.replace(keys, host_keys)
        self.loaded_at = self.checked_at
        self.last_error = None
        self._save_state()
        log.info("illegal list %s: %s loaded", self.config.name, counted(len(keys), "entry"))
        return True

    def restore(self) -> bool:
        """Load the last good digests saved on disk, keeping their age. For start-up, before the
        first refresh, so a source that is down does not leave the gateway without the list."""
        if self._state is None or not self._state.exists():
            return False
        try:
            raw = self._state.read_bytes()
            keys = array("Q")
            keys.frombytes(raw)
            self.list.replace(keys, self._restore_hosts(raw))
            self.loaded_at = self._state.stat().st_mtime
        except (OSError, ValueError) as e:
            log.warning("illegal list %s: last good copy unreadable: %s", self.config.name, e)
            return False
        return True

    def _restore_hosts(self, entries: bytes) -> array | None:
        if self._hosts_state is None:
            return None
        try:
            raw = self._hosts_state.read_bytes()
        except FileNotFoundError:
            return None
        if raw[:32] != hashlib.sha256(entries).digest():
            return None  # saved with other entries: a save interrupted between the two files
        hosts = array("Q")
        hosts.frombytes(raw[32:])
        return hosts

    def _save_state(self) -> None:
        if self._state is None:
            return
        try:
            entries = self.list.keys.tobytes()
            with replacing(self._state) as f:
                f.write(entries)
            if self._hosts_state is not None:
                hosts = self.list.host_keys
                if hosts is None:
                    self._hosts_state.unlink(missing_ok=True)
                else:
                    with replacing(self._hosts_state) as f:
                        f.write(hashlib.sha256(entries).digest() + hosts.tobytes())
        except OSError as e:
            log.warning("illegal list %s: cannot save the last good copy: %s", self.config.name, e)

    def _failed(self, reason: str) -> bool:
        self.last_error = reason
        kept = (f"keeping the last good list ({counted(self.entries, 'entry')})"
                if self.entries else "NO entries are loaded")
        # A warning while a last good list is in force and fresh; an error once there is none,
        # or it has gone stale (the age metric and its alert rule say so too).
        level = logging.WARNING if self.entries and not self.stale() else logging.ERROR
        log.log(level, "illegal list %s refresh failed: %s; %s", self.config.name, reason, kept)
        return False

    # -- on the loop -----------------------------------------------------------------------------

    async def keep_fresh(self, on_refreshed: Callable[[], None] = lambda: None) -> None:
        """Refresh now if the list is due (its last good copy older than the interval), then
        every interval, in a thread; `on_refreshed` after each success (the last good copy is
        saved by then). Runs until cancelled; one failure never ends it."""
        while True:
            await asyncio.sleep(self.due_in())
            try:
                if await asyncio.to_thread(self.refresh):
                    on_refreshed()
            except Exception:  # noqa: BLE001 - the refresher must outlive any one failure
                log.exception("illegal list %s refresh crashed; keeping the last good list",
                              self.config.name)
            if self.loaded_at is None or (self.checked_at or 0) > self.loaded_at:
                # Failed: try again after a full interval, as a successful refresh would.
                await asyncio.sleep(self.config.refresh_seconds)


def load_at_start(sources: list[IllegalListSource]) -> list[str]:
    """Before the first request (blocking): each list from its last good copy, or from its source
    when there is no copy. Returns a problem for each list that has neither; the gateway must
    not start then. A copy older than the interval is refreshed by `keep_fresh` at once."""
    missing = []
    for source in sources:
        if source.restore():
            continue
        if not source.refresh() and source.entries == 0:
            missing.append(f"illegal list {source.name}: {source.last_error}")
    return missing


def sources_for(config: Config) -> list[IllegalListSource]:
    """One source per configured list, keeping its last good copy in the data directory."""
    folder = config.data_dir / "illegal"
    return [IllegalListSource(c, folder) for c in config.illegal_lists.values()]


def without_fetching(config: Config) -> IllegalLists:
    """The lists as a command sees them (`why`, `allow`): the gateway's last good copy, else a
    local source file. A URL source is never fetched: a command must answer at once."""
    lists = []
    for source in sources_for(config):
        if not source.restore() and not source.config.source.startswith(("http://", "https://")):
            source.refresh()
        if source.entries == 0:
            log.warning("illegal list %s is not loaded here; its matches are not shown",
                        source.name)
        lists.append(source.list)
    return IllegalLists(lists)
