"""Whether a connection to a host is decrypted, and why: one predicate (`decryption`) that the TLS
decisions and `schoolgate why` both call, for every group's `https` mode.

In `selective` a host is decrypted only when some decision about it needs the URL: an
illegal-list entry with a path on it, a category list's URL entry, a local allow or block entry
with a path, a search engine (searches are monitored), a site whose safe search or
Restricted Mode the group locks. Every other host is decided by its name at the handshake and
relayed. Pure code: `DecryptionRules` is compiled once per rules generation; the illegal lists are
read live, as they refresh on their own schedule.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from ..classify import Classifier
from ..classify.canonical import canonicalize
from ..classify.search import search_engine
from ..classify.urls import parent_domains
from ..config.model import Config, Group
from .safesearch import SafeSearchPolicy, enforced_engine

__all__ = ["REASONS", "Decryption", "DecryptionRules", "decryption"]

REASONS = (
    # Decrypted
    "group-decrypts-all",
    "illegal-url-entry",
    "illegal-hosts-unknown",
    "safe-search",
    "search-engine",
    "override-url",
    "category-url-entry",
    # Not decrypted
    "sni-only",
    "no-decrypt-list",
    "host-only",
)
"""Every `Decryption.reason`: a bounded set (safe in logs and as a label, never a host)."""


class Decryption(NamedTuple):
    """Whether a connection is decrypted, and the reason as one of `REASONS`."""

    decrypt: bool
    reason: str


class _GroupNeeds(NamedTuple):
    """What one group's policy decides by URL, compiled for `decryption`."""

    group: Group
    url_tags: frozenset[int]
    """Index tags of the lists whose URL entries can change this group's verdict."""
    override_hosts: frozenset[str]
    """Hosts of the group's allow and block entries that have a path."""
    safe_search: SafeSearchPolicy


class DecryptionRules:
    """Everything `decryption` needs from one generation of rules, built once: per group, the
    lists that decide by URL, its local entries with a path, its safe-search settings."""

    def __init__(self, config: Config, classifier: Classifier):
        self.classifier = classifier
        lists = classifier.index.lists
        circumvention = config.circumvention.categories
        self.groups: dict[str, _GroupNeeds] = {}
        for name, g in config.groups.items():
            relevant = _categories_deciding(g, circumvention)
            tags = frozenset(t for t, info in enumerate(lists) if info.category in relevant)
            self.groups[name] = _GroupNeeds(
                group=g,
                url_tags=tags,
                override_hosts=frozenset(o.host for o in (*g.allow, *g.block)
                                         if o.path is not None),
                safe_search=SafeSearchPolicy(g.safe_search, g.youtube),
            )


def _categories_deciding(g: Group, circumvention: Iterable[str]) -> frozenset[str]:
    """The categories whose entries can change `g`'s verdict: blocked (always or in any
    schedule, whatever the time: a connection outlives a schedule's edge), open in a walled
    garden, and circumvention tools (blocked, or logged with their theme)."""
    found = set(g.blocked_categories) | set(circumvention)
    for sb in g.blocked_during:
        found |= sb.categories
    if g.walled_garden:
        found |= g.allowed_categories
    return frozenset(found)


def _canonical_host(host: str) -> str:
    """`host` as the illegal lists' lookup expressions spell it."""
    return canonicalize(f"http://[{host}]/" if ":" in host else f"http://{host}/").host


def decryption(rules: DecryptionRules, group: str, host: str) -> Decryption:
    """Whether a TLS connection from `group` to normalised `host` is decrypted, and why.

    `sni-only` never decrypts (the devices lack the school's certificate). Otherwise a known
    URL-level illegal-list entry on the host decrypts it even when the host is on the
    do-not-decrypt list: nothing overrides the illegal lists, and that list is the school's own
    setting. Then the do-not-decrypt list is never decrypted; `decrypt` decrypts the rest;
    `selective` decrypts a host only for a reason below, else relays it (`host-only`).
    """
    needs = rules.groups[group]
    mode = needs.group.https
    if mode == "sni-only":
        return Decryption(False, "sni-only")
    classifier = rules.classifier
    no_decrypt = classifier.no_decrypt(host)
    if mode != "selective" and not no_decrypt:
        return Decryption(True, "group-decrypts-all")  # the common case: no hashing needed
    illegal, unknown = classifier.illegal.url_entry_on(_canonical_host(host))
    if illegal is not None:
        return Decryption(True, "illegal-url-entry")
    if no_decrypt:
        return Decryption(False, "no-decrypt-list")
    if unknown is not None:
        # A hashed list that does not name its entries' hosts: any host may hold one.
        return Decryption(True, "illegal-hosts-unknown")
    if enforced_engine(host, needs.safe_search) is not None:
        return Decryption(True, "safe-search")
    if search_engine(host) is not None:
        return Decryption(True, "search-engine")
    if needs.override_hosts and any(h in needs.override_hosts for h in parent_domains(host)):
        return Decryption(True, "override-url")
    if needs.url_tags and not needs.url_tags.isdisjoint(classifier.index.url_path_tags(host)):
        return Decryption(True, "category-url-entry")
    # Word patterns (UT1 `expressions`) are not a reason: they can match any address on any
    # host, so as a reason they would decrypt every host of every group that blocks adult
    # content, and selective would be decrypt by another name. On a relayed connection they are
    # matched against the site's name at the handshake (`host_verdict` classifies
    # `https://HOST/`); what they would have caught in a path is the trade-off the README states.
    # Issue #11 (content scanning by category) adds its reason here: a host in a category the
    # group scans is decrypted, as "category-scanned", before the connection is relayed.
    return Decryption(False, "host-only")
