"""What the group may see: turn an `Identity` and a `Classification` into the final `Verdict`, in
one call that the gateway, `schoolgate why` and `schoolgate check` all make.

Pure code. A group blocks whole categories; when several matching categories are blocked, the most
specific list entry decides, so the block page names the closest reason.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..classify import CategoryMatch, Classification
from ..classify.canonical import canonicalize
from ..classify.library import Flag
from ..classify.search import SearchQuery
from ..classify.urls import parent_domains
from ..config.model import Config, Group, Override, Schedule
from ..identify import Identity
from .safesearch import (
    NO_SAFE_MODE_ENGINES,
    Rewrite,
    SafeSearchPolicy,
    enforce,
    engine_suffixes,
    unsafe_engine,
)

__all__ = ["ALLOW", "BLOCK", "BLOCK_KINDS", "ERROR", "Policy", "Verdict", "block_kind",
           "new_reference"]

ALLOW, BLOCK, ERROR = "allow", "block", "error"

now = time.time

_SEVERITY_POINTS = {"high": 10, "medium": 3, "low": 1}
"""The clock schedules are read against, looked up at each call so a test harness can move it."""
_SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}

# Crockford's base32: no I, L, O or U, so a reference read aloud over the phone survives.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class _RandomBits:
    """Random 50-bit numbers from the OS's CSPRNG, read 4 KiB at a time: `secrets.randbits` makes
    one `getrandom` system call per reference, which was 3 % of the hook time for every request.
    Not reseeded across fork (workers are started as new processes, not forked)."""

    _CHUNK = 4096

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0

    def next50(self) -> int:
        if self._at + 7 > len(self._buffer):
            self._buffer, self._at = os.urandom(self._CHUNK), 0
        at = self._at
        self._at = at + 7
        return int.from_bytes(self._buffer[at:at + 7], "big") >> 6


_random_bits = _RandomBits()


def new_reference() -> str:
    """A short random ID like ``7KQ2M-9XDPA`` (50 bits), printed on the block page and stored with
    the event. Not unique by construction: lookups show every event that carries it."""
    n = _random_bits.next50()
    a = _ALPHABET
    return "".join((a[n & 31], a[(n >> 5) & 31], a[(n >> 10) & 31], a[(n >> 15) & 31],
                    a[(n >> 20) & 31], "-", a[(n >> 25) & 31], a[(n >> 30) & 31],
                    a[(n >> 35) & 31], a[(n >> 40) & 31], a[(n >> 45) & 31]))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one request, put in `flow.metadata` and stored with the event."""

    action: str
    """`allow`, `block`, or `error` (filtering failed; the request was blocked anyway)."""
    group: str
    reference: str
    category: str | None = None
    """The category that decided a block, or the most specific category of an allowed page."""
    categories: tuple[str, ...] = ()
    """Every category the request matched."""
    rule: str | None = None
    """The policy rule that decided, in words: ``group ks3 blocks gambling``."""
    matched_list: str | None = None
    matched_entry: str | None = None
    matched_line: int | None = None
    severity: str | None = None
    reason: str = ""
    """Why, in a short code: `illegal:<list>`, `override`, `category`, `walled-garden`,
    `circumvention[:doh|:port]`, `no-safe-search`, `keywords`, `page-content`, `tls:no-sni`,
    `tls:passthrough`, `no-block`, `bad-request`, `filtering-error:<stage>`."""
    illegal_list: str | None = None
    """The illegal-content list that holds the request (its name only, never the entry)."""
    illegal_kind: str | None = None
    """`iwf`, `ctiru` or `other`: which wording the block page uses."""
    override: Override | None = None
    """The group's local allow or block entry that decided, if one did."""
    theme: str | None = None
    """Safeguarding theme of the request, such as `circumvention` (alerts route on it)."""
    schedule: str | None = None
    """The schedule whose window made this block, if one did."""
    search: SearchQuery | None = None
    """The search made, when the request is one."""
    flags: tuple[Flag, ...] = ()
    """Keyword library flags in the search term or the URL, most severe first."""
    page_score: float | None = None
    """For a scanned page's verdict (`Policy.page_verdict`): its keyword score."""
    page_phrases: tuple[str, ...] = ()
    """For a scanned page's verdict: the library's phrases that weighed most (as the library
    writes them, never the page's own words)."""

    @property
    def flag(self) -> Flag | None:
        """The most severe flag, which names the theme and phrase of the event."""
        return self.flags[0] if self.flags else None


def _canonical_prefix(host: str, path: str | None) -> str | None:
    """An allow or block entry's path prefix in the canonical form a request's path is compared
    in (`Classification.path`), so an entry written `/%7Ejohn/pic%2Ejpg` or `/a/./b` covers the
    request for `/~john/pic.jpg` or `/a/b`, as list entries do."""
    if path is None:
        return None
    try:
        c = canonicalize(f"http://{host}{path}")
    except ValueError:  # URLError: keep the entry as written rather than drop it
        return path
    return c.path + (f"?{c.query}" if c.query else "")


BLOCK_KINDS = ("illegal", "category", "schedule", "override", "walled_garden", "circumvention",
               "no_safe_search", "keywords", "page_content", "tls", "bad_request", "error", "other")
"""The kinds of rule that block (`block_kind`): a bounded set. Each is its own value of the
`reason` label of `schoolgate_blocks_total`, and the block page says each in its own words.
`other` is a reason this list does not know yet (a test keeps it unused)."""

_KINDS = {"category": "category", "override": "override", "walled-garden": "walled_garden",
          "no-safe-search": "no_safe_search", "keywords": "keywords",
          "page-content": "page_content", "bad-request": "bad_request"}


def block_kind(verdict: Verdict) -> str:
    """Which kind of rule (one of `BLOCK_KINDS`) blocked `verdict`: what the block page says
    and what the blocks metric counts, from the one reason code."""
    r = verdict.reason
    if r.startswith("illegal:"):
        return "illegal"
    if verdict.action == ERROR or r.startswith("filtering-error"):
        return "error"
    if verdict.schedule:
        return "schedule"
    if r.startswith("circumvention"):
        return "circumvention"
    if r.startswith("tls:"):
        return "tls"
    return _KINDS.get(r, "other")


class Policy:
    """Every group's policy, compiled once from the config.

    Order of precedence, first match wins: illegal-content lists (for everyone, never
    overridable) → the group's local overrides (most specific entry; block on a tie) → the
    group's blocked categories, always or in a schedule's window (most specific list entry) →
    circumvention tools (when the group blocks them) → a walled garden's closed gate → allow.
    An allowed request is then checked for what its shape gives away (DNS-over-HTTPS, a search
    engine with no lockable safe mode), and the keyword library's flags add their theme and
    severity, blocking at the group's threshold.

    `clock` gives the time schedules are checked against (injectable for tests).
    """

    def __init__(self, config: Config, clock: Callable[[], float] | None = None):
        self.clock = clock if clock is not None else (lambda: now())
        self._groups = config.groups
        self._schedules: dict[str, Schedule] = config.schedules
        self._circumvention = config.circumvention.categories
        self._blocked = {name: g.blocked_categories for name, g in config.groups.items()}
        self._no_safe_mode = engine_suffixes(
            NO_SAFE_MODE_ENGINES if config.block_search_engines is None
            else config.block_search_engines
        )
        self._safe_search = {
            name: SafeSearchPolicy(g.safe_search, g.youtube) for name, g in config.groups.items()
        }
        self._ports = config.circumvention
        # Per group: host -> (override, action, canonical path prefix) on that host, for the
        # label-suffix walk the lists use.
        self._overrides: dict[str, dict[str, list[tuple[Override, str, str | None]]]] = {}
        for name, g in config.groups.items():
            by_host: dict[str, list[tuple[Override, str, str | None]]] = {}
            for action, entries in ((ALLOW, g.allow), (BLOCK, g.block)):
                for o in entries:
                    by_host.setdefault(o.host, []).append(
                        (o, action, _canonical_prefix(o.host, o.path)))
            self._overrides[name] = by_host

    def group(self, name: str) -> Group:
        return self._groups[name]

    # -- the verdict -----------------------------------------------------------------------------

    def decide(
        self, identity: Identity, classification: Classification, now: float | None = None
    ) -> Verdict:
        """The final verdict for a request of `identity`'s group (schedules read at `now`,
        default the clock's time)."""
        verdict = self._by_lists(identity.group, classification, now)
        verdict = self._by_shape(verdict, classification)
        return self._by_keywords(verdict, classification)

    def _by_lists(self, group: str, classification: Classification, now: float | None) -> Verdict:
        categories = classification.categories
        theme = "circumvention" if self._circumvention and self.is_circumvention(
            classification) else None
        if classification.illegal is not None:
            lst = classification.illegal
            return Verdict(
                action=BLOCK,
                group=group,
                reference=new_reference(),
                categories=categories,
                rule=f"illegal-content list {lst.name} (applies to everyone, cannot be overridden)",
                matched_list=lst.name,
                severity="high",
                reason=f"illegal:{lst.name}",
                illegal_list=lst.name,
                illegal_kind=lst.kind,
            )
        found = self.override_for(group, classification.host, classification.path)
        if found is not None:
            o, action = found
            verb = "allows" if action == ALLOW else "blocks"
            top = classification.matches[0] if classification.matches else None
            return Verdict(
                action=action,
                group=group,
                reference=new_reference(),
                category=top.category if top else None,
                categories=categories,
                rule=f"group {group} {verb} {o.target} (local override: {o.reason})",
                matched_list=o.where,
                matched_entry=o.target,
                reason="override",
                override=o,
                theme=theme,
            )
        g = self._groups[group]
        blocked = self._blocked[group]
        scheduled = self._scheduled(g, now) if g.blocked_during and classification.matches else []
        for m in classification.matches:
            if m.category in blocked:
                return self._category_block(group, m, categories, f"group {group} blocks "
                                            f"{m.category}", theme)
            for cats, schedule in scheduled:
                if m.category in cats:
                    title = self._schedules[schedule].title
                    return self._category_block(
                        group, m, categories,
                        f"group {group} blocks {m.category} during {title}", theme, schedule,
                    )
        if theme is not None and g.circumvention == BLOCK:
            m = next(m for m in classification.matches if m.category in self._circumvention)
            return dataclasses.replace(self._category_block(
                group, m, categories, f"group {group} blocks circumvention tools ({m.category})",
                theme,
            ), reason="circumvention")
        top = classification.matches[0] if classification.matches else None
        if g.walled_garden and not any(
            m.category in g.allowed_categories for m in classification.matches
        ):
            open_ = ", ".join(sorted(g.allowed_categories)) or "nothing but its allow list"
            return Verdict(
                action=BLOCK,
                group=group,
                reference=new_reference(),
                category=top.category if top else None,
                categories=categories,
                rule=f"group {group} is a walled garden: only {open_} is open",
                reason="walled-garden",
                theme=theme,
            )
        return Verdict(
            action=ALLOW,
            group=group,
            reference=new_reference(),
            category=top.category if top else None,
            categories=categories,
            rule=None if top is None else f"group {group} allows {top.category}",
            matched_list=top.list_path if top else None,
            matched_entry=top.entry if top else None,
            matched_line=top.line if top else None,
            reason="no-block",
            theme=theme,
        )

    def _by_shape(self, verdict: Verdict, classification: Classification) -> Verdict:
        """An allowed request, checked for what its shape gives away: DNS-over-HTTPS on any
        host, and a search engine with no safe mode the gateway can lock."""
        if verdict.action != ALLOW:
            return verdict
        g = self._groups[verdict.group]
        if classification.doh is not None:
            blocked = g.circumvention == BLOCK
            return dataclasses.replace(
                verdict,
                action=BLOCK if blocked else ALLOW,
                rule=f"group {g.name} {'blocks' if blocked else 'logs'} {classification.doh}",
                reason="circumvention:doh",
                theme="circumvention",
            )
        if g.safe_search != "off" and self._no_safe_mode:
            engine = unsafe_engine(classification.host, self._no_safe_mode)
            if engine is not None:
                return dataclasses.replace(
                    verdict,
                    action=BLOCK,
                    rule=f"group {g.name} has safe search on, and {engine} has no safe mode "
                    "that can be locked",
                    matched_entry=engine,
                    matched_list=None,
                    matched_line=None,
                    reason="no-safe-search",
                )
        return verdict

    def _by_keywords(self, verdict: Verdict, classification: Classification) -> Verdict:
        """Add what the keyword library found: the flags (most severe first) give the event its
        theme, severity and phrase; a score at or above the group's `keyword_threshold` blocks.
        The score counts each distinct phrase once, its weight times its severity (high 10,
        medium 3, low 1): with the default threshold of 10 one high-severity phrase blocks, as
        do four medium ones."""
        search, flags = classification.search, classification.flags
        if not flags and search is None:
            return verdict
        ranked = tuple(sorted(flags, key=lambda f: -_SEVERITY_POINTS.get(f.severity, 0)))
        changes: dict[str, Any] = {"search": search, "flags": ranked}
        if ranked:
            top = ranked[0]
            changes.update(theme=verdict.theme or top.theme, severity=top.severity)
            if verdict.action == ALLOW:
                g = self._groups[verdict.group]
                score = self.keyword_score(ranked)
                what = f"the search {search.term!r}" if search is not None else "this address"
                if score >= g.keyword_threshold:
                    changes.update(
                        action=BLOCK,
                        rule=f"{what} matches {top.theme.replace('_', ' ')} phrases (score "
                        f"{score:g}, group {g.name} blocks at {g.keyword_threshold:g})",
                        reason="keywords",
                    )
                else:
                    changes.update(reason=verdict.reason or "no-block")
        return dataclasses.replace(verdict, **changes)

    def page_verdict(self, verdict: Verdict, flags: tuple[Flag, ...],
                     phrases: tuple[str, ...]) -> Verdict | None:
        """The verdict on an allowed request's page, from the keyword library's `flags` in its
        text (one per phrase, most points first) and its top `phrases`: a block (reason
        `page-content`) when the score reaches the group's `keyword_threshold`, the same
        threshold as a search's (one number for the technician to tune; each phrase counts
        once per page, so a long page does not add up repeats); an allow carrying the theme
        and score when a high-severity phrase is below it, so the DSL still hears; else None
        (nothing worth a record of its own)."""
        if not flags:
            return None
        g = self._groups[verdict.group]
        score = self.keyword_score(flags)
        top = min(flags, key=lambda f: _SEVERITY_RANK.get(f.severity, 3))
        changes: dict[str, Any] = {"flags": flags, "theme": top.theme, "severity": top.severity,
                                   "page_score": score, "page_phrases": phrases}
        words = top.theme.replace("_", " ")
        if score >= g.keyword_threshold:
            return dataclasses.replace(
                verdict, action=BLOCK, reason="page-content", **changes,
                rule=f"the page's text matches {words} phrases (score {score:g}, group "
                f"{g.name} blocks at {g.keyword_threshold:g})")
        if top.severity != "high":
            return None
        return dataclasses.replace(
            verdict, **changes,
            rule=f"the page's text matches {words} phrases (score {score:g}, below group "
            f"{g.name}'s {g.keyword_threshold:g})")

    @staticmethod
    def keyword_score(flags: Iterable[Flag]) -> float:
        """The score `keyword_threshold` is compared with: each distinct phrase once, its weight
        times its severity's points (high 10, medium 3, low 1)."""
        seen: dict[str, float] = {}
        for f in flags:
            seen.setdefault(f.phrase, f.weight * _SEVERITY_POINTS.get(f.severity, 1))
        return sum(seen.values())

    @staticmethod
    def _category_block(group: str, m: CategoryMatch, categories: tuple[str, ...], rule: str,
                        theme: str | None, schedule: str | None = None) -> Verdict:
        return Verdict(
            action=BLOCK,
            group=group,
            reference=new_reference(),
            category=m.category,
            categories=categories,
            rule=rule,
            matched_list=m.list_path,
            matched_entry=m.entry,
            matched_line=m.line,
            reason="category",
            theme=theme,
            schedule=schedule,
        )

    @staticmethod
    def failed(group: str, stage: str) -> Verdict:
        """The verdict when filtering itself failed: always a block (fail closed)."""
        return Verdict(
            action=ERROR,
            group=group,
            reference=new_reference(),
            rule=f"filtering error in {stage}: blocked to be safe",
            severity="high",
            reason=f"filtering-error:{stage}",
        )

    # -- the parts, for the verdict and for explaining it ----------------------------------------

    def override_for(self, group: str, host: str, path: str) -> tuple[Override, str] | None:
        """The group's most specific local entry covering host and path, and its action."""
        by_host = self._overrides.get(group)
        if not by_host:
            return None
        best: tuple[Override, str] | None = None
        best_key: tuple[int, int, int] = (-1, -1, -1)
        for name in parent_domains(host):
            for o, action, prefix in by_host.get(name, ()):
                if prefix is None or path.startswith(prefix):
                    # Longer host, then longer path, then block over allow on a tie.
                    key = (len(o.host), len(prefix or ""), action == BLOCK)
                    if key > best_key:
                        best, best_key = (o, action), key
            if best is not None:
                break  # the first (longest) host with a match wins over any parent domain
        return best

    def blocked_categories(self, group: str, now: float | None = None) -> frozenset[str]:
        """The categories `group` blocks at `now` (default: the clock's time)."""
        blocked = self._blocked.get(group, frozenset())
        g = self._groups.get(group)
        if g is None or not g.blocked_during:
            return blocked
        return blocked.union(*(sb for sb, _ in self._scheduled(g, now)))

    def _scheduled(self, g: Group, now: float | None) -> list[tuple[frozenset[str], str]]:
        """(categories, schedule name) for each of the group's schedules active at `now`."""
        when = self.clock() if now is None else now
        return [
            (sb.categories, sb.schedule)
            for sb in g.blocked_during
            if self._schedules[sb.schedule].active(when)
        ]

    def is_circumvention(self, classification: Classification) -> bool:
        return any(m.category in self._circumvention for m in classification.matches)

    def safe_search(
        self, group: str, method: str, host: str, path: str, headers: Mapping[str, str]
    ) -> Rewrite | None:
        """The rewrite that keeps the group's safe search on, or None."""
        return enforce(method, host, path, headers, self._safe_search[group])

    def connect_port(self, identity: Identity, host: str, port: int) -> Verdict | None:
        """A CONNECT to a port other than the allowed ones (443 by default) is a tunnel to
        something the filter cannot read: SSH, a VPN, a proxy. None when the port is fine."""
        if self._ports.port_allowed(port):
            return None
        g = self._groups[identity.group]
        blocked = g.circumvention == BLOCK
        return Verdict(
            action=BLOCK if blocked else ALLOW,
            group=g.name,
            reference=new_reference(),
            rule=f"group {g.name} {'blocks' if blocked else 'logs'} tunnels to port {port} "
            f"(allowed: {self._ports.ports_text})",
            reason="circumvention:port",
            theme="circumvention",
        )
