"""Illegal-content lists (the IWF URL list, the police CTIRU list): URL-level, never overridable,
and confidential.

Entries are held only as SHA-256 digests of canonical Safe Browsing lookup expressions
(``host/path``), whether the source is plain or already hashed, so nothing in memory, in the
last-good copy on disk, in logs or in messages can reveal an entry. A request matches when any of
its lookup expressions' digests is in the list: a domain entry (``example.com/``) therefore covers
the whole domain and its subdomains, a URL entry only that page.

Loading does I/O and runs off the event loop; the digests are swapped whole, so a request sees
either the old list or the new one. A failed refresh keeps the last good list and records why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import urllib.request
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .urls import DNS_HOST, URLError

try:
    # CPython's own SHA-256 (HACL*, verified C) hashes a 40-byte expression in 0.40 us against
    # 0.48 us through OpenSSL's EVP interface, whose per-call set-up dominates input this short;
    # every request hashes about six expressions. Private module, so fall back when it is absent.
    from _sha2 import sha256 as _sha256
except ImportError:  # pragma: no cover - other interpreters
    _sha256 = hashlib.sha256

__all__ = [
    "IllegalList",
    "IllegalListError",
    "IllegalListSpec",
    "IllegalLists",
    "digest_key",
    "expression_digest",
]

log = logging.getLogger("schoolgate.illegal")

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
KINDS = ("iwf", "ctiru", "other")
FORMS = ("plain", "sha256")


class IllegalListError(Exception):
    """A list could not be loaded. The last good copy stays in force; fix the source (the message
    names it, never an entry) and it is picked up at the next refresh."""


@dataclass(frozen=True, slots=True)
class IllegalListSpec:
    """Where one illegal-content list comes from and how often to refresh it."""

    name: str
    """Short name used in events, metrics and the block page, such as `iwf`."""
    kind: str
    """`iwf` (shows the IWF's access-denied wording), `ctiru` or `other`."""
    source: str
    """A local file path (absolute) or an http(s) URL."""
    form: str
    """`plain` (one URL or domain per line) or `sha256` (hex digest of each lookup expression)."""
    refresh_seconds: float = 12 * 3600
    stale_after_seconds: float = 13 * 3600
    """Older than this without a successful refresh, the list is reported stale."""


def expression_digest(expression: str) -> bytes:
    """SHA-256 of a canonical lookup expression such as ``example.com/path/page.html``."""
    return _sha256(expression.encode("utf-8")).digest()


def digest_key(digest: bytes) -> int:
    # 64 bits of the digest: a false match needs a 1 in 2**64 coincidence per expression, and
    # the set costs 8 bytes an entry instead of a Python bytes object each.
    return int.from_bytes(digest[:8], "big")


def _entry_expression(entry: str) -> str:
    """The canonical lookup expression a plain entry stands for."""
    from .canonical import canonicalize

    text = entry.strip()
    if "://" not in text:
        text = "http://" + text
    c = canonicalize(text)
    if not (c.host.startswith("[") or DNS_HOST.fullmatch(c.host)):
        raise URLError("not a host name")  # the message never carries the entry
    return c.host_path


def parse_entries(lines: Iterable[str], form: str, source: str) -> tuple[array, list[str]]:
    """Return the sorted digest keys and the problems (line numbers only, never content)."""
    keys: list[int] = []
    problems: list[str] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip().lstrip("\ufeff")
        if not text or text.startswith("#"):
            continue
        if form == "sha256":
            if not _HEX64.match(text):
                problems.append(f"{source}:{number}: not a 64-character SHA-256 hex digest; skipped")
                continue
            keys.append(digest_key(bytes.fromhex(text)))
        else:
            try:
                keys.append(digest_key(expression_digest(_entry_expression(text))))
            except (URLError, ValueError):
                problems.append(f"{source}:{number}: not a valid URL or domain; skipped")
    keys.sort()
    return array("Q", keys), problems


class IllegalList:
    """One list's current digests and its health (age, last error)."""

    def __init__(self, spec: IllegalListSpec, state_dir: Path | None = None):
        self.spec = spec
        self._keys = array("Q")
        self.loaded_at: float | None = None
        """Unix time of the last successful load (from the source, or the last-good copy)."""
        self.checked_at: float | None = None
        self.last_error: str | None = None
        self.problems: list[str] = []
        self._state = state_dir / f"{spec.name}.digests" if state_dir else None

    @property
    def entries(self) -> int:
        return len(self._keys)

    def age(self, now: float | None = None) -> float | None:
        if self.loaded_at is None:
            return None
        return (now or time.time()) - self.loaded_at

    def stale(self, now: float | None = None) -> bool:
        age = self.age(now)
        return age is None or age > self.spec.stale_after_seconds

    def contains(self, key: int) -> bool:
        return key.to_bytes(8, "big") in self._lookup

    def holds_any(self, prefixes: set[bytes]) -> bool:
        """Whether any of these 8-byte digest prefixes is in the list (see `IllegalLists.match`)."""
        return not self._lookup.isdisjoint(prefixes)

    @property
    def _keys(self) -> array:
        return self._sorted

    @_keys.setter
    def _keys(self, keys: array) -> None:
        # Two views of the same digests. The sorted array is what the last-good copy stores; the
        # set of 8-byte prefixes is what requests probe (each reads `_lookup` once, so a refresh
        # swaps it whole). The set costs about 83 bytes an entry (8 MiB for 100,000) but answers in one C call,
        # where a bisect over the array made a Python int at each of its 17 steps: 1.6 us per
        # expression, more than the hash.
        self._lookup = frozenset(k.to_bytes(8, "big") for k in keys)
        self._sorted = keys

    # -- loading (blocking I/O: call from a thread) --------------------------------------------

    def _read_source(self) -> list[str]:
        source = self.spec.source
        if source.startswith(("http://", "https://")):
            req = urllib.request.Request(source, headers={"User-Agent": "Schoolgate"})
            with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - config-given URL
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
            return self._failed(f"cannot read {self.spec.source}: {e}")
        keys, problems = parse_entries(lines, self.spec.form, self.spec.name)
        self.problems = problems
        for p in problems[:20]:
            log.warning("illegal list %s", p)
        if not keys:
            return self._failed(f"{self.spec.name}: the source has no valid entries")
        self._keys = keys
        self.loaded_at = self.checked_at
        self.last_error = None
        self._save_state()
        log.info("illegal list %s: %d entries loaded", self.spec.name, len(keys))
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
            self._keys = keys
            self.loaded_at = self._state.stat().st_mtime
        except (OSError, ValueError) as e:
            log.warning("illegal list %s: last good copy unreadable: %s", self.spec.name, e)
            return False
        return True

    def _save_state(self) -> None:
        if self._state is None:
            return
        try:
            self._state.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._state.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                self._keys.tofile(f)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self._state)
        except OSError as e:
            log.warning("illegal list %s: cannot save the last good copy: %s", self.spec.name, e)

    def _failed(self, reason: str) -> bool:
        self.last_error = reason
        kept = f"keeping the last good list ({self.entries} entries)" if self.entries else (
            "NO entries are loaded"
        )
        log.error("illegal list %s refresh failed: %s; %s", self.spec.name, reason, kept)
        return False


class IllegalLists:
    """All illegal-content lists; `match` names the first list that holds a request."""

    def __init__(self, lists: Sequence[IllegalList] = ()):
        self.lists = tuple(lists)

    def __bool__(self) -> bool:
        return bool(self.lists)

    def match(self, expressions: Iterable[str]) -> IllegalList | None:
        if not self.lists:
            return None
        # 8-byte digest prefixes as bytes: probing a set of bytes needs no int conversion.
        sha256 = _sha256
        prefixes = {sha256(e.encode("utf-8")).digest()[:8] for e in expressions}
        for lst in self.lists:
            if lst.holds_any(prefixes):
                return lst
        return None
