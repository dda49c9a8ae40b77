"""What the group may see: turn an `Identity` and a `Classification` into a `Verdict`.

Pure code. A group blocks whole categories; when several matching categories are blocked, the most
specific list entry decides, so the block page names the closest reason.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .classify import Classification
from .config import Config
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
    """Why, in a short code: `category`, `no-block`, `filtering-error:<stage>`."""


class Policy:
    """Every group's policy, compiled once from the config."""

    def __init__(self, config: Config):
        self._blocked = {name: g.blocked_categories for name, g in config.groups.items()}

    def decide(self, identity: Identity, classification: Classification) -> Verdict:
        blocked = self._blocked[identity.group]
        categories = classification.categories
        for m in classification.matches:
            if m.category in blocked:
                return Verdict(
                    action=BLOCK,
                    group=identity.group,
                    reference=new_reference(),
                    category=m.category,
                    categories=categories,
                    rule=f"group {identity.group} blocks {m.category}",
                    matched_list=m.list_path,
                    matched_entry=m.entry,
                    matched_line=m.line,
                    reason="category",
                )
        top = classification.matches[0] if classification.matches else None
        return Verdict(
            action=ALLOW,
            group=identity.group,
            reference=new_reference(),
            category=top.category if top else None,
            categories=categories,
            rule=None if top is None else f"group {identity.group} allows {top.category}",
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
