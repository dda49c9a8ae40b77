"""Load Schoolgate's one YAML file into a typed, frozen `Config`, validated once at start-up.

Every problem is reported as ``file:line: key: what is wrong (what is allowed)`` so a technician
can fix it without reading code. All problems in a file are collected and raised together in one
`ConfigError`; the CLI prints them and exits with status 2, never a traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os.path
import re
import zoneinfo
from datetime import time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ..classify.shapes import CIRCUMVENTION_CATEGORIES
from ..classify.urls import URLError, normalise_host, parse_target
from .model import (
    BLOCK_OR_LOG,
    HTTPS_MODES,
    ILLEGAL_LIST_FORMS,
    ILLEGAL_LIST_KINDS,
    RETENTION_KINDS,
    SAFE_SEARCH_LEVELS,
    Address,
    Category,
    CheckSettings,
    CircumventionSettings,
    Config,
    ConfigError,
    EventSettings,
    Group,
    IdentityConfig,
    IllegalListConfig,
    LdapSettings,
    Network,
    Override,
    PushSettings,
    ReportSettings,
    RetentionPolicy,
    RunTime,
    Schedule,
    ScheduledBlock,
    TlsSettings,
)
from .routing import RoutingError, load_routing
from .times import ScheduleError, parse_run_time, parse_window
from .yamltree import Node as _Value
from .yamltree import YamlChecker
from .yamltree import describe as _kind

__all__ = ["load_config", "parse_address"]


MODES = ("regular", "transparent")
UT1_FILES = ("domains", "urls", "expressions")
DEFAULT_PAGE_SCAN_BYTES = 1024**2
"""A group's `page_scan.max_bytes` when it gives none: 1 MiB covers nearly every page's HTML."""
MAX_PAGE_SCAN_BYTES = 8 * 1024**2
"""The most a group may scan: a page is held in memory, and scanned on the event loop (about
10 ms of CPU per 100 KB of HTML)."""
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def parse_address(text: str, what: str) -> Address:
    """Parse ``HOST:PORT`` (``[v6]:PORT`` for IPv6), as given on the command line."""
    m = re.fullmatch(r"\[(?P<h6>[^\]]+)\]:(?P<p6>\d+)|(?P<h>[^:]*):(?P<p>\d+)", text.strip())
    if not m:
        raise ConfigError([f"{what}: '{text}' is not HOST:PORT (for example 127.0.0.1:8080)"])
    host = m["h6"] or m["h"] or ""
    port = int(m["p6"] or m["p"])
    problem = _address_problem(host, port)
    if problem:
        raise ConfigError([f"{what}: {problem}"])
    return Address(host, port)


def load_config(path: str | Path) -> Config:
    """Read and validate the YAML file at `path`. Raises `ConfigError` listing every problem."""
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: configuration file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{path}: cannot read configuration file: {e}"]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError([f"{where}: not valid YAML: {e.problem or e}"]) from None
    checker = _Checker(path)
    tree = checker.tree(root)
    config = checker.config(tree)
    if checker.problems or config is None:
        raise ConfigError(checker.problems or [f"{path}: the configuration is empty"])
    return config


# ---------------------------------------------------------------------------------------------
# The schema: typed accessors and one method per section (the tree is `yamlcheck`'s).


class _Checker(YamlChecker):
    # -- typed accessors -----------------------------------------------------------------------

    def text(self, v: _Value, *, allow_empty: bool = False) -> str | None:
        if not isinstance(v.data, str) or (not allow_empty and not v.data.strip()):
            self.bad(v, f"must be non-empty text, not {_kind(v.data)}")
            return None
        return v.data

    def integer(self, v: _Value, lo: int, hi: int) -> int | None:
        # bool is an int in Python; YAML `yes` must not become port 1.
        if isinstance(v.data, bool) or not isinstance(v.data, int):
            self.bad(v, f"must be a whole number from {lo} to {hi}, not {_kind(v.data)}")
            return None
        if not lo <= v.data <= hi:
            self.bad(v, f"must be from {lo} to {hi}, not {v.data}")
            return None
        return v.data

    def number(self, v: _Value, lo: float, hi: float) -> float | None:
        if isinstance(v.data, bool) or not isinstance(v.data, int | float):
            self.bad(v, f"must be a number from {lo} to {hi}, not {_kind(v.data)}")
            return None
        if not lo <= v.data <= hi:
            self.bad(v, f"must be from {lo} to {hi}, not {v.data}")
            return None
        return float(v.data)

    def choice(self, v: _Value, choices: tuple[str, ...]) -> str | None:
        if v.data not in choices:
            self.bad(v, f"must be one of {', '.join(choices)}, not {v.data!r}")
            return None
        return v.data

    def name(self, v: _Value, name: str, what: str) -> bool:
        if not NAME_RE.match(name):
            self.bad(v, f"{what} names use lowercase letters, digits, '-' and '_' (at most 63)")
            return False
        return True

    def path(self, v: _Value, *, must_be: str | None, what: str = "list file") -> Path | None:
        text = self.text(v)
        if text is None:
            return None
        p = Path(text).expanduser()
        p = p if p.is_absolute() else (self.base / p)
        p = Path(os.path.normpath(p))
        if must_be == "list" and p.is_dir():
            # A UT1 category folder: domains (or domains.N), urls, expressions.
            if not any(c.name.split(".")[0] in UT1_FILES for c in p.iterdir()):
                self.bad(v, f"{what} {p} is a folder with no UT1 list files "
                         f"({', '.join(UT1_FILES)}) in it")
                return None
            return p
        if must_be in ("file", "list") and not p.is_file():
            why = "is a directory, not a file" if p.is_dir() else "does not exist"
            self.bad(v, f"{what} {p} {why}")
            return None
        if must_be in ("file", "list") and not os.access(p, os.R_OK):
            self.bad(v, f"{what} {p} cannot be read by this user; check its permissions")
            return None
        if must_be == "dir" and p.exists() and not p.is_dir():
            self.bad(v, f"{p} exists but is not a directory")
            return None
        return p

    def address(self, v: _Value, default: Address) -> Address | None:
        m = self.mapping(v, ("host", "port"))
        if m is None:
            return None
        host = self.text(m["host"], allow_empty=True) if "host" in m else default.host
        port = self.integer(m["port"], 0, 65535) if "port" in m else default.port
        if host is None or port is None:
            return None
        problem = _address_problem(host, port)
        if problem:
            self.bad(m.get("host", v), problem)
            return None
        return Address(host, port)

    # -- the schema ----------------------------------------------------------------------------

    TOP = (
        "school",
        "listen",
        "mode",
        "ca_dir",
        "data_dir",
        "upstream_trusted_ca",
        "upstream_connect_timeout",
        "metrics",
        "events",
        "categories",
        "groups",
        "default_group",
        "illegal_lists",
        "schedules",
        "tls",
        "safe_search",
        "circumvention",
        "identity",
        "keywords",
        "alerts",
        "reports",
        "retention",
        "check",
        "templates",
    )

    def config(self, root: _Value) -> Config | None:
        top = self.mapping(root, self.TOP)
        if top is None:
            return None

        school_name, timezone = "School", "Europe/London"
        if "school" in top and (school := self.mapping(top["school"], ("name", "timezone"))):
            if "name" in school:
                school_name = self.text(school["name"]) or school_name
            if "timezone" in school and (tz := self.text(school["timezone"])):
                try:
                    zoneinfo.ZoneInfo(tz)
                    timezone = tz
                except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder
                    self.bad(school["timezone"], f"unknown time zone {tz!r} (e.g. Europe/London)")

        listen = Address("127.0.0.1", 8080)
        if "listen" in top:
            listen = self.address(top["listen"], listen) or listen
        metrics = Address("127.0.0.1", 9464)
        if "metrics" in top:
            metrics = self.address(top["metrics"], metrics) or metrics

        mode = "regular"
        if "mode" in top:
            mode = self.choice(top["mode"], MODES) or mode

        data_dir = self.base / "data"
        if "data_dir" in top:
            data_dir = self.path(top["data_dir"], must_be="dir") or data_dir
        ca_dir = data_dir / "ca"
        if "ca_dir" in top:
            ca_dir = self.path(top["ca_dir"], must_be="dir") or ca_dir
        upstream_ca = None
        if "upstream_trusted_ca" in top and top["upstream_trusted_ca"].data is not None:
            upstream_ca = self.path(top["upstream_trusted_ca"], must_be="file", what="CA file")
        connect_timeout = 30.0
        if "upstream_connect_timeout" in top and (
                seconds := self.duration(top["upstream_connect_timeout"])) is not None:
            if seconds > 300:
                self.bad(top["upstream_connect_timeout"], "must be at most 5m")
            else:
                connect_timeout = seconds

        events = EventSettings()
        if "events" in top:
            events = self.events(top["events"]) or events

        categories: dict[str, Category] = {}
        if (v := self.required(top, root, "categories")) is not None:
            categories = self.categories(v)
        schedules: dict[str, Schedule] = {}
        if "schedules" in top:
            schedules = self.schedules(top["schedules"], timezone)
        groups: dict[str, Group] = {}
        if (v := self.required(top, root, "groups")) is not None:
            groups = self.groups(v, categories, schedules)
        tls = TlsSettings()
        if "tls" in top:
            tls = self.tls(top["tls"]) or tls
        block_engines: tuple[str, ...] | None = None
        if "safe_search" in top and top["safe_search"].data is not None and (
                ss := self.mapping(top["safe_search"], ("block_engines",))):
            if "block_engines" in ss:
                block_engines = self.hosts(ss["block_engines"])
        circumvention = self.circumvention(top.get("circumvention"), categories)
        identity = IdentityConfig()
        if "identity" in top:
            identity = self.identity(top["identity"], groups) or identity
        routing = None
        if "alerts" in top and (am := self.mapping(top["alerts"], ("routing",))):
            if "routing" in am and (rp := self.path(am["routing"], must_be="file",
                                                    what="alert routing file")) is not None:
                try:
                    routing = load_routing(rp, known_groups=set(groups))
                except RoutingError as e:
                    self.problems.extend(e.problems)
        reports = (self.reports(top["reports"]) if "reports" in top else None) or ReportSettings()
        if "retention" in top and (retention := self.retention(top["retention"])) is not None:
            reports = dataclasses.replace(reports, retention=retention)
        library: Path | None = None
        if "keywords" in top and (km := self.mapping(top["keywords"], ("library",))):
            if "library" in km and (p := self.path(km["library"], must_be="dir",
                                                   what="keyword library folder")) is not None:
                if p.is_dir():
                    library = p
                else:
                    self.bad(km["library"], f"keyword library folder {p} does not exist")
        illegal: dict[str, IllegalListConfig] = {}
        if "illegal_lists" in top:
            illegal = self.illegal_lists(top["illegal_lists"])
        check = (self.check(top["check"], illegal, categories) if "check" in top
                 else None) or CheckSettings()
        templates: Path | None = None
        if "templates" in top and top["templates"].data is not None and (
                p := self.path(top["templates"], must_be="dir", what="templates folder")):
            if p.is_dir():
                templates = p
            else:
                self.bad(top["templates"], f"templates folder {p} does not exist")
        default_group = ""
        if (v := self.required(top, root, "default_group")) is not None:
            default_group = self.text(v) or ""
            if default_group and groups and default_group not in groups:
                self.bad(v, f"names no group; defined groups: {', '.join(groups)}")

        if self.problems:
            return None
        return Config(
            path=self.file,
            school_name=school_name,
            timezone=timezone,
            listen=listen,
            mode=mode,
            ca_dir=ca_dir,
            data_dir=data_dir,
            upstream_trusted_ca=upstream_ca,
            upstream_connect_timeout=connect_timeout,
            metrics=metrics,
            events=events,
            categories=categories,
            groups=groups,
            default_group=default_group,
            illegal_lists=illegal,
            schedules=schedules,
            tls=tls,
            block_search_engines=block_engines,
            circumvention=circumvention,
            identity=identity,
            keyword_library=library,
            alert_routing=routing,
            reports=reports,
            check=check,
            templates=templates,
        )

    CHECK_KEYS = ("schedule", "canaries")
    CANARY_KEYS = ("illegal", "categories", "education", "outside_garden")

    def check(self, v: _Value, illegal: dict[str, IllegalListConfig],
              categories: dict[str, Category]) -> CheckSettings | None:
        """The `check` section."""
        m = self.mapping(v, self.CHECK_KEYS) if v.data is not None else {}
        if m is None:
            return None
        times: list[RunTime] = []
        sv = m.get("schedule")
        for item in ([sv] if sv is not None and isinstance(sv.data, str)
                     else (self.sequence(sv) or []) if sv is not None else []):
            if (text := self.text(item)) is not None:
                try:
                    times.append(parse_run_time(text))
                except ValueError as e:
                    self.bad(item, str(e))

        def url(item: _Value) -> str | None:
            text = self.text(item)
            problem = canary_problem(text) if text is not None else None
            if problem:
                self.bad(item, problem)
            return None if problem else text

        cm = (self.mapping(m["canaries"], self.CANARY_KEYS) if "canaries" in m
              and m["canaries"].data is not None else None) or {}
        lists: dict[str, tuple[str, ...]] = {}
        named = (self.mapping(cm["illegal"], None) or {}) if "illegal" in cm else {}
        for name, lv in named.items():
            if name not in illegal:
                self.bad(lv, f"no illegal list {name!r} (defined: {', '.join(illegal) or 'none'})")
                continue
            items = [lv] if isinstance(lv.data, str) else self.sequence(lv) or []
            lists[name] = tuple(u for u in map(url, items) if u is not None)
        per_category: dict[str, str] = {}
        for name, uv in (self.mapping(cm["categories"], None) or {}
                         if "categories" in cm else {}).items():
            if name not in categories:
                self.bad(uv, f"unknown category {name!r} (defined: {', '.join(categories)})")
            elif (u := url(uv)) is not None:
                per_category[name] = u
        return CheckSettings(
            schedule=tuple(times), illegal=lists, categories=per_category,
            education=url(cm["education"]) if "education" in cm else None,
            outside_garden=url(cm["outside_garden"]) if "outside_garden" in cm else None,
        )

    IDENTITY_KEYS = ("htpasswd", "ldap", "login_required", "ip_map", "push", "devices",
                     "user_groups")
    LDAP_KEYS = ("url", "user_dn_template", "user_search_base", "user_filter", "service_dn",
                 "service_password_file", "group_search_base", "group_filter", "groups",
                 "start_tls", "ca_file", "timeout", "cache")

    def identity(self, v: _Value, groups: dict[str, Group]) -> IdentityConfig | None:
        m = self.mapping(v, self.IDENTITY_KEYS)
        if m is None:
            return None

        def file(key: str) -> Path | None:
            return self.path(m[key], must_be="file", what=f"{key} file") if key in m else None

        ldap = self.ldap(m["ldap"], groups) if "ldap" in m else None
        login_required: set[str] = set()
        for gv in (self.sequence(m["login_required"]) or []) if "login_required" in m else []:
            name = self.text(gv)
            if name is not None and name not in groups:
                self.bad(gv, f"unknown group {name!r} (defined: {', '.join(groups)})")
            elif name is not None:
                login_required.add(name)
        htpasswd = file("htpasswd")
        if login_required and htpasswd is None and ldap is None:
            self.bad(m["login_required"], "needs htpasswd or ldap to check the logins against")
        push = None
        if "push" in m and (pm := self.mapping(m["push"], ("listen", "token_file", "default_ttl"))):
            listen = self.address(pm["listen"], Address("127.0.0.1", 8081)) if "listen" in pm \
                else Address("127.0.0.1", 8081)
            token_v = self.required(pm, m["push"], "token_file")
            token = self.path(token_v, must_be="file", what="token file") if token_v else None
            ttl = self.duration(pm["default_ttl"]) if "default_ttl" in pm else 8 * 3600.0
            if listen is not None and token is not None and ttl is not None:
                push = PushSettings(listen, token, ttl)
        return IdentityConfig(
            htpasswd=htpasswd,
            ldap=ldap,
            login_required=frozenset(login_required),
            ip_map=file("ip_map"),
            push=push,
            devices=file("devices"),
            user_groups=file("user_groups"),
        )

    def ldap(self, v: _Value, groups: dict[str, Group]) -> LdapSettings | None:
        m = self.mapping(v, self.LDAP_KEYS)
        if m is None:
            return None
        url_v = self.required(m, v, "url")
        url = self.text(url_v) if url_v is not None else None
        # Only text keys, passed by name: LdapSettings checks them and names the one at fault.
        texts: dict[str, Any] = {}
        for key in ("user_dn_template", "user_search_base", "user_filter", "service_dn",
                    "group_search_base", "group_filter"):
            if key in m and (t := self.text(m[key])) is not None:
                texts[key] = t
        password = None
        if "service_password_file" in m:
            pf = self.path(m["service_password_file"], must_be="file", what="password file")
            if pf is not None:
                password = pf.read_text(encoding="utf-8").strip()
        mapping: list[tuple[str, str]] = []
        if "groups" in m and (gm := self.mapping(m["groups"], None)):
            for ldap_group, target in gm.items():
                name = self.text(target)
                if name is not None and name not in groups:
                    self.bad(target, f"unknown group {name!r} (defined: {', '.join(groups)})")
                elif name is not None:
                    mapping.append((ldap_group, name))
        start_tls = bool(self.flag(m["start_tls"])) if "start_tls" in m else False
        ca = self.path(m["ca_file"], must_be="file", what="CA file") if "ca_file" in m else None
        timeout = self.number(m["timeout"], 0.1, 60) if "timeout" in m else 5.0
        cache = self.duration(m["cache"]) if "cache" in m else 300.0
        if url is None or timeout is None or cache is None:
            return None
        try:
            return LdapSettings(
                url=url, service_password=password, group_mapping=tuple(mapping),
                start_tls=start_tls, ca_file=ca, timeout=timeout, cache_seconds=cache, **texts,
            )
        except ValueError as e:
            # LdapSettings names the key at fault; report it at the ldap section.
            for problem in str(e).split("; "):
                self.bad(v, problem)
            return None

    def schedules(self, v: _Value, timezone: str) -> dict[str, Schedule]:
        out: dict[str, Schedule] = {}
        for name, sv in (self.mapping(v, None) or {}).items():
            if not self.name(sv, name, "schedule"):
                continue
            sm = self.mapping(sv, ("title", "windows"))
            if sm is None:
                continue
            title = (self.text(sm["title"]) or name) if "title" in sm else name
            wv = self.required(sm, sv, "windows")
            windows = []
            for item in (self.sequence(wv) or []) if wv is not None else []:
                text = self.text(item)
                if text is None:
                    continue
                try:
                    windows.append(parse_window(text))
                except ScheduleError as e:
                    self.bad(item, str(e))
            if wv is not None and isinstance(wv.data, list) and not wv.data:
                self.bad(wv, "needs at least one window, such as 'Mon-Fri 08:30-15:30'")
            if windows:
                out[name] = Schedule(name, title, tuple(windows), timezone)
        return out

    def tls(self, v: _Value) -> TlsSettings | None:
        m = self.mapping(v, ("do_not_decrypt", "do_not_decrypt_hosts"))
        if m is None:
            return None
        files: list[Path] = []
        for item in (self.sequence(m["do_not_decrypt"]) or []) if "do_not_decrypt" in m else []:
            if (p := self.path(item, must_be="list")) is not None:
                files.append(p)
        hosts = self.hosts(m["do_not_decrypt_hosts"]) if "do_not_decrypt_hosts" in m else ()
        return TlsSettings(tuple(files), hosts)

    def hosts(self, v: _Value) -> tuple[str, ...]:
        out = []
        for item in self.sequence(v) or []:
            text = self.text(item)
            if text is None:
                continue
            try:
                out.append(normalise_host(text))
            except URLError as e:
                self.bad(item, f"not a domain name: {e}")
        return tuple(out)

    def circumvention(
        self, v: _Value | None, categories: dict[str, Category]
    ) -> CircumventionSettings:
        # By default every configured category that UT1 files under circumvention.
        cats = frozenset(c for c in CIRCUMVENTION_CATEGORIES if c in categories)
        ports: tuple[tuple[int, int], ...] = ((443, 443),)
        if v is None:
            return CircumventionSettings(cats, ports)
        m = self.mapping(v, ("categories", "allowed_ports"))
        if m is None:
            return CircumventionSettings(cats, ports)
        if "categories" in m:
            cats = frozenset(self.category_names(m["categories"], categories))
        if "allowed_ports" in m:
            found = [self.port_range(p) for p in self.sequence(m["allowed_ports"]) or []]
            ports = tuple(p for p in found if p is not None)
        return CircumventionSettings(cats, ports)

    def port_range(self, v: _Value) -> tuple[int, int] | None:
        """A port (443) or a range of ports as text ("8000-8999")."""
        m = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", v.data) if isinstance(
            v.data, str) else None
        if m:
            lo, hi = int(m[1]), int(m[2])
            if 1 <= lo <= hi <= 65535:
                return lo, hi
            self.bad(v, f"{v.data!r} is not a range of ports from 1 to 65535, low to high")
            return None
        if isinstance(v.data, str):
            self.bad(v, "must be a port such as 443 or a range such as '8000-8999', not "
                     f"{_kind(v.data)}")
            return None
        port = self.integer(v, 1, 65535)
        return None if port is None else (port, port)

    def category_names(self, v: _Value, categories: dict[str, Category]) -> set[str]:
        out: set[str] = set()
        for cv in self.sequence(v) or []:
            cat = self.text(cv)
            if cat is None:
                continue
            if cat not in categories:
                hint = difflib.get_close_matches(cat, list(categories), n=1)
                also = f"; did you mean '{hint[0]}'?" if hint else ""
                known = ", ".join(sorted(categories)) or "none"
                self.bad(cv, f"unknown category {cat!r} (defined: {known}){also}")
                continue
            out.add(cat)
        return out

    def events(self, v: _Value) -> EventSettings | None:
        m = self.mapping(v, ("queue_size", "batch_size", "flush_interval"))
        if m is None:
            return None
        d = EventSettings()
        queue_size = self.integer(m["queue_size"], 1, 10_000_000) if "queue_size" in m else None
        batch_size = self.integer(m["batch_size"], 1, 100_000) if "batch_size" in m else None
        flush = self.number(m["flush_interval"], 0.001, 3600) if "flush_interval" in m else None
        return EventSettings(
            queue_size=queue_size or d.queue_size,
            batch_size=batch_size or d.batch_size,
            flush_interval=flush or d.flush_interval,
        )

    def categories(self, v: _Value) -> dict[str, Category]:
        m = self.mapping(v, None)
        out: dict[str, Category] = {}
        if not m:
            if m is not None:
                self.bad(v, "define at least one category")
            return out
        for name, cv in m.items():
            if not self.name(cv, name, "category"):
                continue
            title = name.replace("_", " ").capitalize()
            lists: list[Path] = []
            items: list[_Value] | None
            if isinstance(cv.data, list):  # shorthand: name: [file, file]
                items = cv.data
            else:
                cm = self.mapping(cv, ("title", "lists"))
                if cm is None:
                    continue
                if "title" in cm:
                    title = self.text(cm["title"]) or title
                lv = self.required(cm, cv, "lists")
                # None: missing or not a list, already reported; say nothing more about it.
                items = self.sequence(lv) if lv is not None else None
            if items is not None and not items:
                self.bad(cv, "needs at least one list file")
            for item in items or []:
                if (p := self.path(item, must_be="list")) is not None:
                    lists.append(p)
            out[name] = Category(name=name, title=title, lists=tuple(lists))
        return out

    GROUP_KEYS = (
        "title",
        "subnets",
        "blocked_categories",
        "blocked_during",
        "walled_garden",
        "allowed_categories",
        "safe_search",
        "youtube",
        "keyword_threshold",
        "page_scan",
        "https",
        "no_sni",
        "circumvention",
        "allow",
        "block",
    )

    def groups(
        self, v: _Value, categories: dict[str, Category], schedules: dict[str, Schedule]
    ) -> dict[str, Group]:
        m = self.mapping(v, None)
        out: dict[str, Group] = {}
        if not m:
            if m is not None:
                self.bad(v, "define at least one group")
            return out
        owner: dict[Network, _Value] = {}
        for name, gv in m.items():
            if not self.name(gv, name, "group"):
                continue
            gm = self.mapping(gv, self.GROUP_KEYS)
            if gm is None:
                continue
            title = (self.text(gm["title"]) or name) if "title" in gm else name
            subnets: list[Network] = []
            for sv in self.sequence(gm["subnets"]) or [] if "subnets" in gm else []:
                net = self.subnet(sv)
                if net is None:
                    continue
                if net in owner:
                    first = owner[net]
                    self.bad(sv, f"{net} is already in {first.key} (line {first.line}); "
                             "a subnet belongs to one group: use a more specific one to carve "
                             "out part of it")
                    continue
                owner[net] = sv
                subnets.append(net)
            blocked = (
                self.category_names(gm["blocked_categories"], categories)
                if "blocked_categories" in gm else set()
            )
            during: list[ScheduledBlock] = []
            if "blocked_during" in gm and (bm := self.mapping(gm["blocked_during"], None)):
                for sched, cats_v in bm.items():
                    if sched not in schedules:
                        known = ", ".join(sorted(schedules)) or "none (add a schedules: section)"
                        self.bad(cats_v, f"unknown schedule {sched!r} (defined: {known})")
                        continue
                    during.append(
                        ScheduledBlock(sched, frozenset(self.category_names(cats_v, categories)))
                    )
            walled = bool(self.flag(gm["walled_garden"])) if "walled_garden" in gm else False
            open_cats = (
                self.category_names(gm["allowed_categories"], categories)
                if "allowed_categories" in gm else set()
            )
            if "allowed_categories" in gm and not walled:
                self.bad(gm["allowed_categories"], "only means something with walled_garden: true "
                         "(without it every category not blocked is allowed)")

            def pick(key: str, choices: tuple[str, ...], default: str,
                     gm: dict[str, _Value] = gm) -> str:
                # `gm` bound now: the group this loop turn checks (pick is called right here).
                return (self.choice(gm[key], choices) or default) if key in gm else default

            threshold = (
                self.number(gm["keyword_threshold"], 0.1, 10_000) or 10.0
                if "keyword_threshold" in gm else 10.0
            )
            page_scan = self.page_scan(gm["page_scan"]) if "page_scan" in gm else None
            allow = self.overrides(gm["allow"]) if "allow" in gm else ()
            block = self.overrides(gm["block"]) if "block" in gm else ()
            out[name] = Group(
                name=name,
                title=title,
                subnets=tuple(subnets),
                blocked_categories=frozenset(blocked),
                allow=allow,
                block=block,
                blocked_during=tuple(during),
                walled_garden=walled,
                allowed_categories=frozenset(open_cats),
                safe_search=pick("safe_search", SAFE_SEARCH_LEVELS, "strict"),
                youtube=pick("youtube", SAFE_SEARCH_LEVELS, "strict"),
                keyword_threshold=threshold,
                page_scan_bytes=DEFAULT_PAGE_SCAN_BYTES if page_scan is None else page_scan,
                https=pick("https", HTTPS_MODES, "decrypt"),
                no_sni=pick("no_sni", BLOCK_OR_LOG, "block"),
                circumvention=pick("circumvention", BLOCK_OR_LOG, "block"),
            )
        return out

    def page_scan(self, v: _Value) -> int | None:
        """A group's `page_scan`: `off` (or false), or `{max_bytes: SIZE}`; the largest page
        body scanned, in bytes (0: none). None: the default (after a reported problem too)."""
        if v.data is False or v.data == "off":
            return 0
        m = self.mapping(v, ("max_bytes",))
        if m is None:
            return None
        if "max_bytes" not in m:
            self.bad(v, "give max_bytes (such as 1MiB), or write page_scan: off")
            return None
        return self.size(m["max_bytes"], MAX_PAGE_SCAN_BYTES)

    def size(self, v: _Value, most: int) -> int | None:
        """Bytes as a whole number, or text such as `512KiB`, `2MB`, `1MiB` (KB and MB are
        1000s, KiB and MiB 1024s); 0 or `off` is 0. At most `most`."""
        n: float | None = None
        if isinstance(v.data, int) and not isinstance(v.data, bool) and v.data >= 0:
            n = v.data
        elif v.data is False or v.data == "off":
            n = 0
        elif isinstance(v.data, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*", v.data, re.I)
            if m:
                units = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
                         "gb": 1000**3, "gib": 1024**3}
                n = float(m[1]) * units[(m[2] or "b").lower()]
        if n is None:
            self.bad(v, f"must be a size such as 512KiB, 1MiB or 2MB (or 0 or off), not "
                     f"{_kind(v.data)}")
            return None
        if n > most:
            self.bad(v, f"must be at most {most // 1024**2}MiB, not {v.data}: a page is held "
                     "in memory while it is scanned, and a larger one takes too long to scan")
            return None
        return int(n)

    def overrides(self, v: _Value) -> tuple[Override, ...]:
        out = []
        for item in self.sequence(v) or []:
            m = self.mapping(item, ("target", "reason"))
            if m is None:
                continue
            target_v = self.required(m, item, "target")
            reason_v = self.required(m, item, "reason")
            target = self.text(target_v) if target_v is not None else None
            reason = self.text(reason_v) if reason_v is not None else None
            if target_v is None or target is None or reason is None:
                continue
            try:
                host, path_prefix = parse_target(target)
            except ValueError as e:
                self.bad(target_v, f"not a domain or URL prefix: {e}")
                continue
            where = f"{self.file}:{item.line}: {item.key}"
            out.append(Override(target, host, path_prefix, reason, where))
        return tuple(out)

    def illegal_lists(self, v: _Value) -> dict[str, IllegalListConfig]:
        m = self.mapping(v, None)
        out: dict[str, IllegalListConfig] = {}
        for name, lv in (m or {}).items():
            if not self.name(lv, name, "illegal list"):
                continue
            lm = self.mapping(lv, ("title", "kind", "source", "form", "refresh", "stale_after"))
            if lm is None:
                continue
            kind = self.choice(lm["kind"], ILLEGAL_LIST_KINDS) if "kind" in lm else "other"
            form = self.choice(lm["form"], ILLEGAL_LIST_FORMS) if "form" in lm else "plain"
            title = (self.text(lm["title"]) or name) if "title" in lm else name
            refresh = self.duration(lm["refresh"]) if "refresh" in lm else 12 * 3600.0
            stale = self.duration(lm["stale_after"]) if "stale_after" in lm else None
            source_v = self.required(lm, lv, "source")
            source: str | None = None
            if source_v is not None and (text := self.text(source_v)):
                if text.startswith(("http://", "https://")):
                    source = text
                elif (p := self.path(source_v, must_be="file",
                                     what="illegal list file")) is not None:
                    source = str(p)
            if kind is None or form is None or refresh is None or source is None:
                continue
            if refresh > 12 * 3600:
                self.bad(lm["refresh"], "must be at most 12h: schools must refresh these lists at "
                         "least twice a day")
                continue
            out[name] = IllegalListConfig(
                name=name,
                title=title,
                kind=kind or "other",
                source=source,
                form=form or "plain",
                refresh_seconds=refresh,
                stale_after_seconds=stale if stale is not None else refresh + 3600,
            )
        return out

    def duration(self, v: _Value) -> float | None:
        """Seconds as a number, or text such as `90s`, `30m`, `12h`, `1d`, `2w`, `1y` (365 d)."""
        if isinstance(v.data, int | float) and not isinstance(v.data, bool) and v.data > 0:
            return float(v.data)
        if isinstance(v.data, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdwy])\s*", v.data)
            if m and float(m[1]) > 0:
                return float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400,
                                      "y": 365 * 86400}[m[2]]
        self.bad(v, f"must be a duration such as 30m, 12h, 30d or 1y, not {_kind(v.data)}")
        return None

    REPORT_KEYS = ("daily_at", "weekly_on", "weekly_at", "purge_at", "out_dir", "email_to",
                   "weekly_email_to")

    def reports(self, v: _Value) -> ReportSettings | None:
        m = self.mapping(v, self.REPORT_KEYS)
        if m is None:
            return None
        d = ReportSettings()

        def clock(key: str, default: time) -> time:
            if key not in m:
                return default
            text = m[key].data
            t = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", str(text).strip()) if isinstance(
                text, str) else None
            if t is None:
                self.bad(m[key], f"must be a time of day HH:MM such as \"07:00\" (quoted), not "
                         f"{_kind(text)}")
                return default
            return time(int(t[1]), int(t[2]))

        days = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        weekly_on = d.weekly_on
        if "weekly_on" in m and (day := self.choice(m["weekly_on"], days)) is not None:
            weekly_on = days.index(day)
        out_dir = None
        if "out_dir" in m:
            out_dir = self.path(m["out_dir"], must_be="dir")

        def addresses(key: str) -> tuple[str, ...]:
            out = []
            for item in (self.sequence(m[key]) or []) if key in m else []:
                text = self.text(item)
                if text is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
                    self.bad(item, f"{text!r} is not an e-mail address")
                elif text is not None:
                    out.append(text)
            return tuple(out)

        return ReportSettings(
            daily_at=clock("daily_at", d.daily_at), weekly_on=weekly_on,
            weekly_at=clock("weekly_at", d.weekly_at), purge_at=clock("purge_at", d.purge_at),
            out_dir=out_dir, email_to=addresses("email_to"),
            weekly_email_to=addresses("weekly_email_to"),
        )

    def retention(self, v: _Value) -> RetentionPolicy | None:
        m = self.mapping(v, RETENTION_KINDS)
        if m is None:
            return None
        values = {}
        for kind in RETENTION_KINDS:
            if kind in m and (seconds := self.duration(m[kind])) is not None:
                if seconds < 86400:
                    self.bad(m[kind], "must be at least 1d")
                    continue
                values[kind] = timedelta(seconds=seconds)
        return RetentionPolicy(**values)

    def subnet(self, v: _Value) -> Network | None:
        text = v.data if isinstance(v.data, str) else None
        if text is None:
            self.bad(v, f"must be a network such as 10.20.0.0/16, not {_kind(v.data)}")
            return None
        try:
            return ipaddress.ip_network(text.strip(), strict=True)
        except ValueError as e:
            loose = None
            try:
                loose = ipaddress.ip_network(text.strip(), strict=False)
            except ValueError:
                pass
            hint = f"; did you mean {loose}?" if loose else ""
            self.bad(v, f"{text!r} is not a network ({e}){hint}")
            return None


def _address_problem(host: str, port: int) -> str | None:
    if not 0 <= port <= 65535:
        return f"port must be from 0 to 65535, not {port}"
    if host in ("", "localhost"):
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"host {host!r} must be an IP address such as 127.0.0.1 or 0.0.0.0 (all addresses)"
    return None


def canary_problem(url: str) -> str | None:
    """What is wrong with a canary URL, or None: it must be http(s) with a host name."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as e:
        return f"{url!r} is not a URL: {e}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http:// or https:// URL with a host name"
    return None
