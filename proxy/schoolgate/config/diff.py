"""What changed between two loaded configs, as lines a person reads in the audit log: groups,
their categories, schedules and allow/block entries, the categories' list files, schedules, and
the other policy settings. Pure code: the gateway calls it after a reload and records the lines.

Each line names the thing and the config key, then what happened: `group pupils:
blocked_categories added games`, `group pupils: safe_search strict -> moderate`. An illegal list's
source is never shown (it may carry a licence token), only that it changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .model import Category, Config, Group, Override

__all__ = ["config_diff"]

# Group settings that hold one value, in the order `config.Group` declares them.
_GROUP_VALUES = ("title", "walled_garden", "safe_search", "youtube", "keyword_threshold", "https",
                 "no_sni", "circumvention")


def config_diff(old: Config, new: Config) -> list[str]:
    """Every policy difference from `old` to `new`, one readable line each; [] when the two
    configs filter alike. Settings that are not policy (listen addresses, event batching,
    report times) are left out."""
    lines: list[str] = []
    lines += _groups(old.groups, new.groups)
    if old.default_group != new.default_group:
        lines.append(f"default_group {old.default_group} -> {new.default_group}")
    lines += _categories(old.categories, new.categories)
    lines += _schedules(old.schedules, new.schedules)
    lines += _illegal_lists(old.illegal_lists, new.illegal_lists)
    lines += _sets("tls.do_not_decrypt", map(str, old.tls.do_not_decrypt),
                   map(str, new.tls.do_not_decrypt))
    lines += _sets("tls.do_not_decrypt_hosts", old.tls.do_not_decrypt_hosts,
                   new.tls.do_not_decrypt_hosts)
    lines += _sets("circumvention.categories", old.circumvention.categories,
                   new.circumvention.categories)
    if old.circumvention.allowed_ports != new.circumvention.allowed_ports:
        lines.append(f"circumvention.allowed_ports {old.circumvention.ports_text or 'none'} -> "
                     f"{new.circumvention.ports_text or 'none'}")
    if old.block_search_engines != new.block_search_engines:
        lines.append(f"safe_search.block_engines {_engines(old.block_search_engines)} -> "
                     f"{_engines(new.block_search_engines)}")
    if old.keyword_library != new.keyword_library:
        lines.append(f"keywords.library {old.keyword_library or 'none'} -> "
                     f"{new.keyword_library or 'none'}")
    lines += _sets("identity.login_required", old.identity.login_required,
                   new.identity.login_required)
    return lines


# -- groups ----------------------------------------------------------------------------------


def _groups(old: dict[str, Group], new: dict[str, Group]) -> Iterator[str]:
    for name, group in old.items():
        if name not in new:
            yield f"group removed: {name} {_quote(group.title)}"
    for name, group in new.items():
        before = old.get(name)
        if before is None:
            yield f"group added: {name} {_quote(group.title)}"
            # A new group is described as changes from an empty one: every setting it has.
            before = Group(name=name, title=group.title, subnets=(),
                           blocked_categories=frozenset())
        yield from _group(name, before, group)


def _group(name: str, old: Group, new: Group) -> Iterator[str]:
    head = f"group {name}:"
    for key in _GROUP_VALUES:
        a, b = getattr(old, key), getattr(new, key)
        if a != b:
            yield f"{head} {key} {_value(a)} -> {_value(b)}"
    if old.page_scan_bytes != new.page_scan_bytes:
        yield (f"{head} page_scan {_size(old.page_scan_bytes)} -> "
               f"{_size(new.page_scan_bytes)}")
    for line in _sets("subnets", map(str, old.subnets), map(str, new.subnets)):
        yield f"{head} {line}"
    for line in _sets("blocked_categories", old.blocked_categories, new.blocked_categories):
        yield f"{head} {line}"
    before = {s.schedule: s.categories for s in old.blocked_during}
    after = {s.schedule: s.categories for s in new.blocked_during}
    for schedule in [*before, *(s for s in after if s not in before)]:
        key = f"blocked_during {schedule}"
        for line in _sets(key, before.get(schedule, ()), after.get(schedule, ())):
            yield f"{head} {line}"
    for line in _sets("allowed_categories", old.allowed_categories, new.allowed_categories):
        yield f"{head} {line}"
    yield from _overrides(head, "allow", old.allow, new.allow)
    yield from _overrides(head, "block", old.block, new.block)


def _overrides(head: str, key: str, old: tuple[Override, ...],
               new: tuple[Override, ...]) -> Iterator[str]:
    # Keyed by target: the same site with a new reason is one change, not a removal and an
    # addition. `where` (file and line) is not compared: moving an entry changes no policy.
    before = {o.target: o.reason for o in old}
    after = {o.target: o.reason for o in new}
    for target, reason in before.items():
        if target not in after:
            yield f"{head} {key} removed {target} (reason: {_quote(reason)})"
    for target, reason in after.items():
        if target not in before:
            yield f"{head} {key} added {target} (reason: {_quote(reason)})"
        elif before[target] != reason:
            yield f"{head} {key} {target} reason {_quote(before[target])} -> {_quote(reason)}"


# -- categories, schedules, illegal lists ----------------------------------------------------


def _categories(old: dict[str, Category], new: dict[str, Category]) -> Iterator[str]:
    for name, c in old.items():
        if name not in new:
            yield f"category removed: {name} {_quote(c.title)}"
    for name, c in new.items():
        before = old.get(name)
        if before is None:
            yield f"category added: {name} {_quote(c.title)} (lists: {_paths(c.lists)})"
            continue
        if before.title != c.title:
            yield f"category {name}: title {_quote(before.title)} -> {_quote(c.title)}"
        for line in _sets("lists", map(str, before.lists), map(str, c.lists)):
            yield f"category {name}: {line}"


def _schedules(old: dict[str, Any], new: dict[str, Any]) -> Iterator[str]:
    for name, s in old.items():
        if name not in new:
            yield f"schedule removed: {name} {_quote(s.title)}"
    for name, s in new.items():
        windows = [w.text for w in s.windows]
        before = old.get(name)
        if before is None:
            yield f"schedule added: {name} {_quote(s.title)} ({', '.join(windows)})"
            continue
        if before.title != s.title:
            yield f"schedule {name}: title {_quote(before.title)} -> {_quote(s.title)}"
        for line in _sets("windows", (w.text for w in before.windows), windows, quote=True):
            yield f"schedule {name}: {line}"


def _illegal_lists(old: dict[str, Any], new: dict[str, Any]) -> Iterator[str]:
    restart = "; takes effect at the next restart"
    for name, lst in old.items():
        if name not in new:
            yield f"illegal list removed: {name} (kind {lst.kind}){restart}"
    for name, lst in new.items():
        before = old.get(name)
        if before is None:
            yield f"illegal list added: {name} (kind {lst.kind}, form {lst.form}){restart}"
            continue
        for key in ("title", "kind", "form"):
            a, b = getattr(before, key), getattr(lst, key)
            if a != b:
                yield f"illegal list {name}: {key} {_value(a)} -> {_value(b)}{restart}"
        for key in ("refresh_seconds", "stale_after_seconds"):
            a, b = getattr(before, key), getattr(lst, key)
            if a != b:
                yield f"illegal list {name}: {key.removesuffix('_seconds')} " \
                      f"{_duration(a)} -> {_duration(b)}{restart}"
        if before.source != lst.source:
            yield f"illegal list {name}: source changed{restart}"


# -- formatting ------------------------------------------------------------------------------


def _sets(key: str, old: Iterable[Any], new: Iterable[Any], *, quote: bool = False) -> list[str]:
    """`key added a, b` and `key removed c`, sorted so that a line never depends on the order
    of a set; quoted items (schedule windows) keep the order the config gives them."""
    before, after = list(dict.fromkeys(old)), list(dict.fromkeys(new))
    added = [x for x in after if x not in before]
    removed = [x for x in before if x not in after]
    if not quote:
        added, removed = sorted(added, key=str), sorted(removed, key=str)
    show = _quote if quote else str
    out = []
    if added:
        out.append(f"{key} added {', '.join(show(x) for x in added)}")
    if removed:
        out.append(f"{key} removed {', '.join(show(x) for x in removed)}")
    return out


def _size(n: int) -> str:
    """A page scanning size as the config writes it: `off`, `1MiB`, `512KiB`, or bytes."""
    if n == 0:
        return "off"
    for unit, size in (("MiB", 1024**2), ("KiB", 1024)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str) and not re.fullmatch(r"[\w.,:/@+-]+", v):
        return _quote(v)
    return str(v)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def _paths(paths: Iterable[Path]) -> str:
    return ", ".join(str(p) for p in paths) or "none"


def _engines(engines: tuple[str, ...] | None) -> str:
    if engines is None:
        return "the built-in list"
    return ", ".join(engines) or "none"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
