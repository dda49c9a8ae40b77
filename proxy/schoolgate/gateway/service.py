"""The running gateway's shared parts, built once from the `Config` and handed to every addon.

Nothing here imports mitmproxy: the addons in `schoolgate.addons` adapt flows to these parts, and
the CLI builds the same parts to explain verdicts without a proxy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import sys
import time
import traceback
import weakref
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from ..policy.blockpage import BlockPage
from ..classify import Classifier
from ..classify.illegal import IllegalLists
from ..config.model import Address, Config, ConfigError
from ..config.loader import load_config
from ..identify import Identity, SubnetGroups
from ..sources.illegal import load_at_start, sources_for
from .metrics import GatewayMetrics
from ..policy import Policy
from ..store import EventWriter, open_for_writing

__all__ = ["FailureLog", "Gateway", "Rules", "StartupError", "build_rules"]

log = logging.getLogger("schoolgate")


class FailureLog:
    """Log each distinct filtering failure once with its traceback, then only a periodic count.

    A broken classifier fails every request; one traceback per request would bury the log and
    cost I/O on the hot path, while the metric still counts every one.
    """

    MAX_KINDS = 256

    def __init__(self, repeat_every: float = 60.0):
        self._seen: dict[tuple, list[float]] = {}  # kind -> [last logged, repeats since]
        self._repeat_every = repeat_every

    @staticmethod
    def kind(stage: str, exc: BaseException) -> tuple:
        """Same failure = same stage, exception type and raising line. Not the message: it often
        holds the host, and one bug hit by many hosts is still one bug."""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else None
        return (stage, type(exc).__qualname__, where)

    def report(self, stage: str, exc: BaseException) -> None:
        key = self.kind(stage, exc)
        now = time.monotonic()
        entry = self._seen.get(key)
        if entry is None:
            if len(self._seen) >= self.MAX_KINDS:
                return  # a flood of distinct failures: the metric still counts every one
            self._seen[key] = [now, 0]
            log.error(
                "filtering error in %s, request blocked (fail closed): %s\n%s",
                stage,
                exc,
                "".join(traceback.format_exception(exc)).rstrip(),
            )
            return
        entry[1] += 1
        if now - entry[0] >= self._repeat_every:
            log.error(
                "filtering error in %s repeated %d times in the last %.0fs: %s: %s",
                stage, entry[1], now - entry[0], type(exc).__name__, exc,
            )
            entry[0], entry[1] = now, 0


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything derived from the config and the lists, swapped whole on reload. A request takes
    one snapshot at its first hook, so it is decided by one generation from start to finish."""

    config: Config
    groups: SubnetGroups
    classifier: Classifier
    policy: Policy
    block_page: BlockPage
    generation: int = 1
    next_lapse: float | None = None
    """When a command-line allow or block entry next lapses (`--until`): reload then."""
    no_decrypt_hosts: frozenset[str] = frozenset()
    """Domains whose HTTPS is never decrypted (each covers its subdomains)."""
    identity: Any = None
    """`schoolgate.identity.IdentitySources` of this generation."""
    library: Any = None
    """`schoolgate.library.KeywordLibrary`, or None when no keyword library is configured."""

    def no_decrypt(self, host: str) -> bool:
        """Whether normalised `host` is on the do-not-decrypt list (label-suffix match)."""
        hosts = self.no_decrypt_hosts
        if not hosts:
            return False
        name = host
        while True:
            if name in hosts:
                return True
            dot = name.find(".")
            if dot == -1:
                return False
            name = name[dot + 1 :]


def load_keywords(config: Config):
    """The keyword library (blocking I/O), or None. A bad phrase is logged with its file and
    line and skipped; the rest loads."""
    if config.keyword_library is None:
        return None
    from ..classify.library import load_library

    library = load_library(config.keyword_library)
    for problem in library.problems:
        log.warning("%s", problem)
    log.info("keyword library %s: %d phrases", config.keyword_library, len(library))
    return library


def load_no_decrypt(config: Config) -> frozenset[str]:
    """The do-not-decrypt domains from the config's list files and inline hosts (blocking I/O).
    Bad lines are logged with file and line and skipped."""
    from ..classify.lists import read_domain_list

    hosts = set(config.tls.do_not_decrypt_hosts)
    for path in config.tls.do_not_decrypt:
        entries, summary = read_domain_list(path)
        hosts.update(host for host, _ in entries)
        for problem in summary.problems:
            log.warning("%s", problem)
    return frozenset(hosts)


def build_rules(
    config: Config, illegal: IllegalLists, generation: int = 1, *, cache: bool = False,
    ip_users: Any = None,
) -> Rules:
    """Build every config-derived part (blocking: list files are read). With `cache`, the list
    index comes from (or is saved to) the compiled cache in the data directory. Raises
    ConfigError for overrides that try to allow an illegal-list entry."""
    from ..sources.lists import cache_path
    from ..sources.localpolicy import (
        LocalPolicyError, apply_local_policy, load_local_policy, local_policy_path, next_change,
    )

    classifier = Classifier.from_config(config, cache_path(config) if cache else None)
    classifier.illegal = illegal
    refuse_illegal_allows(config, classifier)
    library = load_keywords(config)
    if library is not None:
        classifier.keyword_sets = (library.keyword_set,)
    now = time.time()
    try:
        local = load_local_policy(local_policy_path(config))
    except LocalPolicyError as e:
        raise ConfigError([str(e)]) from None
    # The CLI refuses an allow for an illegal-list URL when it is made; a list refresh may add
    # one later. Such an entry is dropped here (the lists outrank it anyway), not the reload.
    kept = []
    for entry in local:
        if entry.action == "allow" and entry.active(now):
            from ..classify.urls import parse_target

            host, path = parse_target(entry.target)
            if classifier.illegal_match(f"http://{host}{path or '/'}") is not None:
                log.error("local policy entry %d (allow %s) is refused: the URL is on an "
                          "illegal-content list, which nothing can override", entry.id,
                          entry.target)
                continue
        kept.append(entry)
    merged = apply_local_policy(config, kept, now)
    from ..sources.identity import build_identity

    return Rules(merged, SubnetGroups(merged), classifier, Policy(merged), BlockPage(merged),
                 generation, next_change(kept, now), load_no_decrypt(config),
                 build_identity(merged, ip_users), library)


def refuse_illegal_allows(config: Config, classifier: Classifier) -> None:
    """An `allow` entry naming something on an illegal-content list is refused outright. (The
    lists outrank every allow anyway; refusing says so to whoever wrote it.)"""
    problems = []
    for group in config.groups.values():
        for o in group.allow:
            url = f"http://{o.host}{o.path or '/'}"
            match = classifier.illegal_match(url)
            if match is not None:
                problems.append(
                    f"{o.where}: refused: {o.target!r} is on the illegal-content list "
                    f"{match.name!r}, which no group, allow entry or administrator can override"
                )
    if problems:
        raise ConfigError(problems)


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
    ):
        self.config = config
        self.metrics = GatewayMetrics(config, registry)
        from ..identify.maps import IpUserMap

        # Outlives rule generations: entries pushed by the network must survive a reload.
        self.ip_users = IpUserMap()
        # Verified proxy logins per client connection (a CONNECT's login covers the tunnel).
        self.logins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # `schoolgate check` connections (addons/check.py): client connection -> the Identity
        # its check header named. Only a header with the check token adds one.
        self.checks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.push_server = None
        self.reports = None
        self._group_lookups: set[str] = set()
        self.illegal_sources = sources_for(config)
        self.illegal = IllegalLists([s.list for s in self.illegal_sources])
        self.rules = build_rules(config, self.illegal, cache=True, ip_users=self.ip_users)
        self.failures = FailureLog()
        self.writer = EventWriter(
            config.database_path,
            config.events,
            on_dropped=self.metrics.events_dropped.inc,
            on_written=self._written,
        )
        self.metrics.watch_queue(lambda: self.writer.depth)
        self.alerts = None
        """`schoolgate.alerts.SafeguardingAlerts`, when alert routing is configured. Built here,
        before the proxy starts, so a missing template stops start-up with a clear message."""
        if config.alert_routing is not None:
            from ..alerts import SafeguardingAlerts

            try:
                self.alerts = SafeguardingAlerts(
                    config.alert_routing, config.database_path, school=config.school_name,
                    timezone=config.timezone,
                    list_titles={n: lst.title for n, lst in config.illegal_lists.items()},
                    on_outcome=lambda channel, outcome: self.metrics.alerts.labels(
                        channel, outcome).inc(),
                )
            except Exception as e:  # noqa: BLE001 - TemplateError and the like: what to fix
                raise StartupError(f"alerts: {e}") from None
        self.metrics.watch_outbox(lambda: self.alerts.outbox_depth() if self.alerts else 0)
        self.metrics.watch_lists(self.illegal_sources)
        self.metrics.watch_checks(config.database_path)
        self.metrics_address: Address | None = None
        self._started = False
        self._tasks: list[asyncio.Task] = []
        self._reload_lock = asyncio.Lock()
        self._fingerprint: dict[str, tuple[int, int]] = {}
        self.last_reload: dict = {}

    # The parts of the current generation, for callers (and tests) that need one of them.
    groups = property(lambda self: self.rules.groups,
                      lambda self, v: self._replace(groups=v))
    classifier = property(lambda self: self.rules.classifier,
                          lambda self, v: self._replace(classifier=v))
    policy = property(lambda self: self.rules.policy,
                      lambda self, v: self._replace(policy=v))
    block_page = property(lambda self: self.rules.block_page,
                          lambda self, v: self._replace(block_page=v))

    def _replace(self, **parts) -> None:
        self.rules = dataclasses.replace(self.rules, **parts)

    def _written(self, count: int, seconds: float) -> None:
        self.metrics.events_written.inc(count)
        self.metrics.store_write_seconds.observe(seconds)

    def log_lists(self) -> None:
        for summary in self.classifier.summaries:
            log.info("list %s", summary)
            for problem in summary.problems:
                log.warning("%s", problem)

    def record(self, event) -> None:
        """Queue an event for the store and let the alert engine consider it (no I/O: both only
        enqueue; an alert engine failure never loses the event)."""
        self.writer.put(event)
        if self.alerts is not None:
            try:
                self.alerts.consider(event)
            except Exception:  # noqa: BLE001 - alerting must never break recording
                log.exception("the alert engine failed on an event; the event is still stored")

    def fail_closed(self, stage: str, exc: BaseException) -> None:
        self.metrics.fail_closed.labels(stage).inc()
        self.failures.report(stage, exc)

    # -- illegal lists ---------------------------------------------------------------------

    def load_illegal_lists(self) -> None:
        """Start-up (blocking): each list from its last good copy, or from its source when there
        is none. A list with neither stops start-up: the gateway must never run without a
        configured illegal list. A copy older than its interval is refreshed once running."""
        missing = load_at_start(self.illegal_sources)
        if missing:
            raise StartupError("; ".join(missing) + " (and no last good copy to fall back on)")
        if self.illegal:
            # Re-check overrides now the lists are loaded.
            refuse_illegal_allows(self.config, self.classifier)

    # -- reload ----------------------------------------------------------------------------

    def _watched_files(self, config: Config) -> list[str]:
        from ..sources.localpolicy import local_policy_path

        files = [str(config.path), str(local_policy_path(config))]
        files.extend(str(p) for p in config.tls.do_not_decrypt)
        ic = config.identity
        files.extend(str(p) for p in (ic.htpasswd, ic.ip_map, ic.devices, ic.user_groups) if p)
        if config.keyword_library is not None:
            files.extend(sorted(str(p) for p in config.keyword_library.glob("*.yaml")))
        if config.alert_routing is not None:
            files.append(str(config.alert_routing.path))
        for c in config.categories.values():
            files.extend(str(p) for p in c.lists)
        return files

    @staticmethod
    def _stat_all(files: list[str]) -> dict[str, tuple[int, int]]:
        out = {}
        for f in files:
            try:
                st = os.stat(f)
                out[f] = (st.st_mtime_ns, st.st_size)
            except OSError:
                out[f] = (-1, -1)
        return out

    async def reload(self, why: str) -> bool:
        """Re-read the config and every list away from the event loop, then swap the whole rule
        set at once. On any error the running rules stay and the error names file and line."""
        from ..config.diff import config_diff
        from ..store.audit import record_change

        async def audit(outcome: str, detail: dict) -> None:
            # Every config change the gateway takes up, and every one it refuses, goes in the
            # audit log; a store that cannot be written must not undo or stop the reload.
            try:
                await asyncio.to_thread(functools.partial(
                    record_change, self.config.database_path, actor="reload", action="config",
                    outcome=outcome, reason=why, detail=detail))
            except Exception:  # noqa: BLE001
                log.exception("reload (%s): the audit log could not be written", why)

        async with self._reload_lock:
            started = time.monotonic()
            generation = self.rules.generation + 1
            try:
                config = await asyncio.to_thread(load_config, self.config.path)
                restart = _needs_restart(self.config, config)
                await self._prebuild_cache(config)
                rules = await asyncio.to_thread(
                    functools.partial(build_rules, config, self.illegal, generation, cache=True,
                                      ip_users=self.ip_users)
                )
            except ConfigError as e:
                for p in e.problems:
                    log.error("reload (%s) refused, keeping the running rules: %s", why, p)
                await audit("refused", {"refused": "; ".join(e.problems), "problems": e.problems})
                self._reload_done(False, why, started, e.problems)
                return False
            except Exception as e:  # noqa: BLE001 - a reload must never take the gateway down
                log.exception("reload (%s) failed, keeping the running rules", why)
                await audit("refused", {"refused": str(e), "problems": [str(e)]})
                self._reload_done(False, why, started, [str(e)])
                return False
            self.rules = rules
            # The config as written, not `rules.config`: allow and block entries made with the
            # CLI merge in there, and the CLI has audited those itself.
            before = getattr(self, "_audited_config", self.config)
            self._audited_config = config
            try:
                changes = config_diff(before, config)
            except Exception:  # noqa: BLE001 - the new rules are in force; say what failed
                log.exception("reload (%s): the config change could not be described", why)
                changes = ["the config changed (the difference could not be described)"]
            for line in changes:
                log.info("reload (%s): %s", why, line)
            if changes:
                await audit("done", {"diff": changes})
            if self.alerts is not None and config.alert_routing is not None:
                self.alerts.replace_routing(config.alert_routing)
            self._fingerprint = await asyncio.to_thread(self._stat_all, self._watched_files(config))
            for key in restart:
                log.warning("reload: %s changed; it takes effect at the next restart", key)
            self.log_lists()
            self._reload_done(True, why, started, [])
            return True

    async def _prebuild_cache(self, config: Config) -> None:
        """Compile changed lists in a child process (see `schoolgate.sources.lists`), so the loop
        only waits for a cache load. If the child fails, build_rules builds in the thread."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schoolgate.sources.lists", str(config.path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            log.warning("list cache build failed (%s): %s", proc.returncode,
                        err.decode(errors="replace").strip()[:500])

    def _reload_done(self, ok: bool, why: str, started: float, problems: list[str]) -> None:
        seconds = time.monotonic() - started
        self.metrics.reloads.labels("success" if ok else "failure").inc()
        self.last_reload = {
            "ok": ok, "why": why, "at": time.time(), "seconds": round(seconds, 3),
            "generation": self.rules.generation, "problems": problems,
        }
        if ok:
            log.info("reloaded (%s) in %.2fs: generation %d", why, seconds, self.rules.generation)
        try:
            status = self.config.data_dir / "reload-status.json"
            tmp = status.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.last_reload))
            os.replace(tmp, status)
        except OSError as e:
            log.warning("cannot write the reload status file: %s", e)

    async def _watch_files(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                now = await asyncio.to_thread(self._stat_all, self._watched_files(self.rules.config))
                if now != self._fingerprint:
                    changed = sorted(f for f in now if now[f] != self._fingerprint.get(f))
                    self._fingerprint = now  # a broken file is reported once, not every poll
                    await self.reload(f"changed: {', '.join(changed[:3])}")
                elif (lapse := self.rules.next_lapse) is not None and time.time() >= lapse:
                    await self.reload("a local allow or block entry lapsed")
            except Exception:  # noqa: BLE001 - the watcher must outlive any one failure
                log.exception("watching list files failed")

    # -- reports ---------------------------------------------------------------------------

    def _start_reports(self) -> None:
        """The daily report, weekly summary and retention purge on their schedule (school time),
        written under the reports folder and e-mailed through the alert routing's SMTP server."""
        from ..reports.scheduler import ReportSchedule

        c = self.config
        settings = c.reports
        send = None
        routing = c.alert_routing
        if routing is not None and routing.smtp is not None:
            from ..reports.mail import send_report_mail

            send = functools.partial(send_report_mail, routing.smtp)
        self.reports = ReportSchedule(c.database_path, c.school_name, c.timezone, settings,
                                      c.reports_dir, send_email=send)
        self.reports.start()

    # -- identity --------------------------------------------------------------------------

    def check_identity(self, client) -> Identity | None:
        """The identity of a `schoolgate check` connection (the group its check header named),
        or None for real traffic."""
        return self.checks.get(client) if self.checks else None

    def look_up_groups(self, user: str) -> None:
        """Fetch a user's directory groups in the background (one lookup per user at a time);
        until they arrive the subnet decides the group."""
        ldap = self.rules.identity.ldap if self.rules.identity else None
        if ldap is None or ldap.settings.service_dn is None or user in self._group_lookups:
            return
        self._group_lookups.add(user)

        async def fetch() -> None:
            try:
                await asyncio.to_thread(ldap.groups_of, user)
            except Exception as e:  # noqa: BLE001 - the subnet keeps deciding meanwhile
                log.warning("directory groups of a user could not be fetched: %s", e)
            finally:
                self._group_lookups.discard(user)

        task = asyncio.get_running_loop().create_task(fetch())
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _purge_ip_users(self, interval: float = 60.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.ip_users.purge()

    def request_reload(self, why: str) -> None:
        """Thread-safe from a signal handler on the loop: start a reload in the background."""
        task = asyncio.get_running_loop().create_task(self.reload(why))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, *, serve_metrics: bool = True, watch_interval: float = 2.0) -> None:
        """Prepare the store, start the writer, the refreshers, the file watcher and the metrics
        endpoint. Idempotent."""
        if self._started:
            return
        self._started = True
        open_for_writing(self.config.database_path)
        await self.writer.start()
        if self.alerts is not None:
            await self.alerts.start()
        self._start_reports()
        if serve_metrics:
            self.metrics_address = self.metrics.serve(self.config.metrics)
        self._fingerprint = await asyncio.to_thread(self._stat_all, self._watched_files(self.config))
        for source in self.illegal_sources:
            self._tasks.append(asyncio.create_task(source.keep_fresh(),
                                                   name=f"refresh {source.name}"))
        if watch_interval > 0:
            self._tasks.append(asyncio.create_task(self._watch_files(watch_interval),
                                                   name="watch list files"))
        self._tasks.append(asyncio.create_task(self._purge_ip_users(), name="purge IP map"))
        push = self.config.identity.push
        if push is not None:
            from .pushapi import PushServer

            token = push.token_file.read_text(encoding="utf-8").strip()
            self.push_server = PushServer(self.ip_users, token, push.listen.host or "0.0.0.0",
                                          push.listen.port, default_ttl=int(push.default_ttl))
            await self.push_server.start()
            log.info("IP map push endpoint on %s:%d", push.listen.host, self.push_server.port)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.push_server is not None:
            await self.push_server.stop()
            self.push_server = None
        if self.alerts is not None:
            await self.alerts.stop()
        if self.reports is not None:
            await self.reports.stop()
            self.reports = None
        queued = await self.writer.close()
        log.info(
            "event store closed: %d events written, %d flushed at shutdown, %d dropped",
            self.writer.written, queued, self.writer.dropped,
        )
        self.metrics.stop()


class StartupError(Exception):
    """The gateway could not start; the message says what to fix."""


def _needs_restart(old: Config, new: Config) -> list[str]:
    keys = ("listen", "mode", "ca_dir", "data_dir", "metrics", "events", "upstream_trusted_ca",
            "illegal_lists")
    if old.identity.push != new.identity.push:
        return [*[k for k in keys if getattr(old, k) != getattr(new, k)], "identity.push"]
    return [k for k in keys if getattr(old, k) != getattr(new, k)]
