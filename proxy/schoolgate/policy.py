"""What the group may see: turn an `Identity` and a `Classification` into a `Verdict`.

Pure code. A group blocks whole categories; when several matching categories are blocked, the most
specific list entry decides, so the block page names the closest reason.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .classify import Classification
from .config import Config, Override
from .identify import Identity

__all__ = ["ALLOW", "BLOCK", "ERROR", "Policy", "Verdict", "new_reference"]

ALLOW, BLOCK, ERROR = "allow", "block", "error"

# Crockford's base32: no I, L, O or U, so a reference read aloud over the phone survives.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_reference() -> str:
    """A short random ID like ``7KQ2M-9XDPA`` (50 bits), printed on the block page and stored with
    the event. Not unique by construction: lookups show every event that carries it."""
    n = secrets.randbits(50)
    chars = [_ALPHABET[(n >> (5 * i)) & 31] for i in range(10)]
    return "".join(chars[:5]) + "-" + "".join(chars[5:])


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
    """Why, in a short code: `illegal:<list>`, `override`, `category`, `no-block`,
    `bad-request`, `filtering-error:<stage>`."""
    illegal_list: str | None = None
    """The illegal-content list that holds the request (its name only, never the entry)."""
    illegal_kind: str | None = None
    """`iwf`, `ctiru` or `other`: which wording the block page uses."""
    override: Override | None = None
    """The group's local allow or block entry that decided, if one did."""


class Policy:
    """Every group's policy, compiled once from the config.

    Order of precedence, first match wins: illegal-content lists (for everyone, never
    overridable) → the group's local overrides (most specific entry; block on a tie) → the
    group's blocked categories (most specific list entry) → allow.
    """

    def __init__(self, config: Config):
        self._blocked = {name: g.blocked_categories for name, g in config.groups.items()}
        # Per group: host -> overrides on that host, for a label-suffix walk like the lists'.
        self._overrides: dict[str, dict[str, list[tuple[Override, str]]]] = {}
        for name, g in config.groups.items():
            by_host: dict[str, list[tuple[Override, str]]] = {}
            for action, entries in ((ALLOW, g.allow), (BLOCK, g.block)):
                for o in entries:
                    by_host.setdefault(o.host, []).append((o, action))
            self._overrides[name] = by_host

    def override_for(self, group: str, host: str, path: str) -> tuple[Override, str] | None:
        """The group's most specific local entry covering host and path, and its action."""
        by_host = self._overrides.get(group)
        if not by_host:
            return None
        best: tuple[Override, str] | None = None
        best_key: tuple[int, int, int] = (-1, -1, -1)
        name = host
        while True:
            for o, action in by_host.get(name, ()):
                if o.path is None or path.startswith(o.path):
                    # Longer host, then longer path, then block over allow on a tie.
                    key = (len(o.host), len(o.path or ""), action == BLOCK)
                    if key > best_key:
                        best, best_key = (o, action), key
            dot = name.find(".")
            if dot == -1 or best is not None:
                # The first (longest) host with a match wins over any parent domain.
                break
            name = name[dot + 1 :]
        return best

    def blocked_categories(self, group: str) -> frozenset[str]:
        """The categories `group` blocks."""
        return self._blocked.get(group, frozenset())

    def decide(self, identity: Identity, classification: Classification) -> Verdict:
        group = identity.group
        categories = classification.categories
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
            )
        blocked = self._blocked[group]
        for m in classification.matches:
            if m.category in blocked:
                return Verdict(
                    action=BLOCK,
                    group=group,
                    reference=new_reference(),
                    category=m.category,
                    categories=categories,
                    rule=f"group {group} blocks {m.category}",
                    matched_list=m.list_path,
                    matched_entry=m.entry,
                    matched_line=m.line,
                    reason="category",
                )
        top = classification.matches[0] if classification.matches else None
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
