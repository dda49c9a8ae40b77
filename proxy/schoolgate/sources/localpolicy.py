"""Allow and block entries made from the command line (`schoolgate block ... --all`,
`schoolgate allow ... --group staff`), kept in one JSON file in the data directory.

The file is the state and the audit log is the history. The CLI rewrites the file atomically under
a lock and signals the gateway; the gateway also watches the file, so an emergency block is in
force for everyone within seconds, without a restart. Entries merge into each group's overrides,
so they beat categories and never the illegal lists.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..classify.urls import parse_target
from ..config.model import Config, Override
from ..files import write_atomically

__all__ = [
    "ALL_GROUPS",
    "LocalEntry",
    "LocalPolicyError",
    "apply_local_policy",
    "change_local_policy",
    "load_local_policy",
    "local_policy_path",
]

ALL_GROUPS = "*"
_VERSION = 1


class LocalPolicyError(Exception):
    """The local policy file cannot be read. The message names the file; the running rules stay
    in force. Fix or remove the file (the audit log still holds every change)."""


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """One allow or block made from the command line."""

    id: int
    action: str
    """`allow` or `block`."""
    target: str
    """As typed: a domain or a URL prefix."""
    scope: str
    """A group name, or `*` for every group."""
    reason: str
    by: str
    at: float
    """Unix time it was made."""
    until: float | None = None
    """Unix time it lapses, or None."""

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    @property
    def scope_text(self) -> str:
        return "all groups" if self.scope == ALL_GROUPS else f"group {self.scope}"


def local_policy_path(config: Config) -> Path:
    return config.data_dir / "local-policy.json"


def load_local_policy(path: Path) -> list[LocalEntry]:
    """Every entry in the file (lapsed ones too); [] when there is no file."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise LocalPolicyError(f"{path}: cannot read the local policy: {e}") from None
    try:
        data = json.loads(raw)
        if data.get("version") != _VERSION:
            raise ValueError(f"version {data.get('version')!r} is not {_VERSION}")
        return [LocalEntry(**e) for e in data["entries"]]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise LocalPolicyError(f"{path}: not a Schoolgate local policy file: {e}") from None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two technicians at once must not lose an entry
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def change_local_policy(
    path: Path, change: Callable[[list[LocalEntry]], list[LocalEntry]]
) -> list[LocalEntry]:
    """Read, change and atomically rewrite the file under a lock; return the new entries."""
    with _locked(path):
        entries = change(load_local_policy(path))
        # Readable by all, as before: the gateway may run as another user than the technician.
        write_atomically(path, json.dumps(
            {"version": _VERSION, "entries": [dataclasses.asdict(e) for e in entries]},
            indent=2, ensure_ascii=False) + "\n", mode=0o644)
    return entries


def next_id(entries: list[LocalEntry]) -> int:
    return max((e.id for e in entries), default=0) + 1


def apply_local_policy(
    config: Config, entries: list[LocalEntry], now: float | None = None
) -> Config:
    """`config` with each active entry added to its groups' allow or block overrides."""
    when = time.time() if now is None else now
    extra: dict[str, dict[str, list[Override]]] = {g: {"allow": [], "block": []}
                                                    for g in config.groups}
    for e in entries:
        if not e.active(when):
            continue
        try:
            host, path = parse_target(e.target)
        except ValueError:
            # The CLI checked it when it was made; a later rule change is no reason to stop.
            continue
        day = datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        o = Override(e.target, host, path, e.reason,
                     f"local policy entry {e.id} (by {e.by}, {day})")
        for g in config.groups if e.scope == ALL_GROUPS else [e.scope]:
            if g in extra:
                extra[g][e.action].append(o)
    groups = {
        name: dataclasses.replace(g, allow=g.allow + tuple(extra[name]["allow"]),
                                  block=g.block + tuple(extra[name]["block"]))
        for name, g in config.groups.items()
    }
    return config.replace(groups=groups)


def next_change(entries: list[LocalEntry], now: float) -> float | None:
    """When the next active entry lapses (the gateway reloads then), or None."""
    times = [e.until for e in entries if e.until is not None and e.until > now]
    return min(times) if times else None
