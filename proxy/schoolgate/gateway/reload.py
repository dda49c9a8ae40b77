"""Reload without a restart: re-read the config and every list away from the event loop when a file
changes, a signal or `schoolgate reload` asks, or a command-line entry lapses; swap the whole rule
set at once, or keep the running one and say which file and line was bad. Every change taken up
(as a readable diff) and every refusal goes in the audit log.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ..classify.illegal import IllegalLists
from ..config.diff import config_diff
from ..config.loader import load_config
from ..config.model import Config, ConfigError
from ..files import write_atomically
from ..identify.maps import IpUserMap
from ..sources.lists import builder_command
from ..sources.localpolicy import local_policy_path
from ..store.audit import record_change
from .metrics import GatewayMetrics
from .rules import Rules, build_rules

__all__ = ["Reloader", "watched_files"]

log = logging.getLogger("schoolgate")

Fingerprint = dict[str, tuple[int, int]]

RESTART_KEYS = ("listen", "mode", "ca_dir", "data_dir", "metrics", "events",
                "upstream_trusted_ca", "upstream_connect_timeout", "illegal_lists")
"""Settings a running gateway cannot change: a reload says they wait for the next restart."""


def watched_files(config: Config) -> list[str]:
    """Every file whose change means a reload: the config, the local policy, every list, the
    identity files, the keyword library, the alert routing and the school's templates."""
    files = [str(config.path), str(local_policy_path(config))]
    files.extend(str(p) for p in config.tls.do_not_decrypt)
    ic = config.identity
    files.extend(str(p) for p in (ic.htpasswd, ic.ip_map, ic.devices, ic.user_groups) if p)
    if config.keyword_library is not None:
        files.extend(sorted(str(p) for p in config.keyword_library.glob("*.yaml")))
    if config.alert_routing is not None:
        files.append(str(config.alert_routing.path))
    if config.templates is not None:
        # A template the school edits, or copies in, is used without a restart.
        files.extend(sorted(str(p) for pattern in ("*.html", "*.txt", "email/*")
                            for p in config.templates.glob(pattern)))
    for c in config.categories.values():
        files.extend(str(p) for p in c.lists)
    return files


def _stat_all(files: list[str]) -> Fingerprint:
    out = {}
    for f in files:
        try:
            st = os.stat(f)
            out[f] = (st.st_mtime_ns, st.st_size)
        except OSError:
            out[f] = (-1, -1)
    return out


def needs_restart(old: Config, new: Config) -> list[str]:
    """The settings that changed from `old` to `new` but take effect only at a restart."""
    changed = [k for k in RESTART_KEYS if getattr(old, k) != getattr(new, k)]
    if old.identity.push != new.identity.push:
        changed.append("identity.push")
    return changed


class Reloader:
    """Builds each new generation of rules and hands it to `swap`. `current` gives the rules in
    force; `config` is the config the gateway started with (what cannot change without a
    restart). One reload at a time; a reload never raises."""

    def __init__(self, config: Config, illegal: IllegalLists, ip_users: IpUserMap,
                 metrics: GatewayMetrics, *, current: Callable[[], Rules],
                 swap: Callable[[Rules], None], primary: bool = True,
                 write_status: bool = True) -> None:
        self.config = config
        self.primary = primary
        """Audits and counts reloads. In `schoolgate run --workers N` only worker 0 does, so
        that one change is one audit row and one count, not N; the others reload alike."""
        self.write_status = write_status
        """Writes `reload-status.json`. Workers do not: the supervisor writes it once every
        worker has answered, so `schoolgate reload` never sees one worker's answer as all's."""
        self.illegal = illegal
        self.ip_users = ip_users
        self.metrics = metrics
        self._current = current
        self._swap = swap
        self._lock = asyncio.Lock()
        self._fingerprint: Fingerprint = {}
        self._audited: Config = config
        """The config as written at the last reload (not `Rules.config`: the command line's
        allow and block entries merge in there, and the CLI audits those itself)."""
        self.on_done: Callable[[dict[str, Any]], None] = lambda outcome: None
        """Called with `last` after every reload, whatever asked for it."""
        self._tasks: set[asyncio.Task[bool]] = set()
        self.last: dict[str, Any] = {}
        """The last reload's outcome, as written to `reload-status.json`."""

    async def remember_files(self) -> None:
        """Take the files' fingerprint now (at start), so only later changes reload."""
        self._fingerprint = await asyncio.to_thread(_stat_all, watched_files(self.config))

    def request(self, why: str) -> None:
        """Start a reload in the background: for a signal handler on the loop."""
        task = asyncio.get_running_loop().create_task(self.reload(why))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self, why: str) -> bool:
        """Re-read the config and every list away from the event loop, then swap the whole rule
        set at once. On any error the running rules stay and the error names file and line."""
        async with self._lock:
            started = time.monotonic()
            generation = self._current().generation + 1
            try:
                config = await asyncio.to_thread(load_config, self.config.path)
                restart = needs_restart(self.config, config)
                await self._prebuild_cache(config)
                rules = await asyncio.to_thread(
                    functools.partial(build_rules, config, self.illegal, generation, cache=True,
                                      ip_users=self.ip_users))
            except ConfigError as e:
                for p in e.problems:
                    log.error("reload (%s) refused, keeping the running rules: %s", why, p)
                await self._audit(why, "refused",
                                  {"refused": "; ".join(e.problems), "problems": e.problems})
                self._done(False, why, started, e.problems)
                return False
            except Exception as e:  # noqa: BLE001 - a reload must never take the gateway down
                log.exception("reload (%s) failed, keeping the running rules", why)
                await self._audit(why, "refused", {"refused": str(e), "problems": [str(e)]})
                self._done(False, why, started, [str(e)])
                return False
            self._swap(rules)
            before, self._audited = self._audited, config
            try:
                changes = config_diff(before, config)
            except Exception:  # noqa: BLE001 - the new rules are in force; say what failed
                log.exception("reload (%s): the config change could not be described", why)
                changes = ["the config changed (the difference could not be described)"]
            for line in changes:
                log.info("reload (%s): %s", why, line)
            if changes:
                await self._audit(why, "done", {"diff": changes})
            self._fingerprint = await asyncio.to_thread(_stat_all, watched_files(config))
            for key in restart:
                log.warning("reload: %s changed; it takes effect at the next restart", key)
            self._done(True, why, started, [])
            return True

    async def watch(self, interval: float) -> None:
        """Poll the watched files every `interval` seconds; reload when one changed or a
        command-line entry lapsed. Runs until cancelled; one failure never ends it."""
        while True:
            await asyncio.sleep(interval)
            try:
                rules = self._current()
                now = await asyncio.to_thread(_stat_all, watched_files(rules.config))
                if now != self._fingerprint:
                    changed = sorted(f for f in now if now[f] != self._fingerprint.get(f))
                    self._fingerprint = now  # a broken file is reported once, not every poll
                    await self.reload(f"changed: {', '.join(changed[:3])}")
                elif (lapse := rules.next_lapse) is not None and time.time() >= lapse:
                    await self.reload("a local allow or block entry lapsed")
            except Exception:  # noqa: BLE001 - the watcher must outlive any one failure
                log.exception("watching list files failed")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- parts -----------------------------------------------------------------------------------

    async def _audit(self, why: str, outcome: str, detail: dict[str, Any]) -> None:
        if not self.primary:
            return
        # A store that cannot be written must not undo or stop the reload.
        try:
            await asyncio.to_thread(functools.partial(
                record_change, self.config.database_path, actor="reload", action="config",
                outcome=outcome, reason=why, detail=detail))
        except Exception:  # noqa: BLE001
            log.exception("reload (%s): the audit log could not be written", why)

    async def _prebuild_cache(self, config: Config) -> None:
        """Compile changed lists in a child process (see `schoolgate.sources.lists`), so the loop
        only waits for a cache load. If the child fails, build_rules builds in the thread."""
        proc = await asyncio.create_subprocess_exec(
            *builder_command(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            log.warning("list cache build failed (%s): %s", proc.returncode,
                        err.decode(errors="replace").strip()[:500])

    def _done(self, ok: bool, why: str, started: float, problems: list[str]) -> None:
        seconds = time.monotonic() - started
        generation = self._current().generation
        if self.primary:
            self.metrics.reloads.labels("success" if ok else "failure").inc()
        self.last = {
            "ok": ok, "why": why, "at": time.time(), "seconds": round(seconds, 3),
            "generation": generation, "problems": problems,
        }
        if ok:
            log.info("reloaded (%s) in %.2fs: generation %d", why, seconds, generation)
        try:
            self.on_done(self.last)
        except Exception:  # noqa: BLE001 - telling others must not undo the reload
            log.exception("reload (%s): passing the outcome on failed", why)
        if not self.write_status:
            return
        try:
            # `schoolgate reload` waits for this file to change; readable by the technician.
            write_atomically(self.config.data_dir / "reload-status.json", json.dumps(self.last),
                             mode=0o644)
        except OSError as e:
            log.warning("cannot write the reload status file: %s", e)
