"""`schoolgate why URL...`: the verdict each URL would get for a group or a client address, and
why: the canonical URL, every list entry that matches, the keyword flags, and the rule that
decided. Built with the gateway's own `build_rules` and `Policy.decide`, so it cannot explain a
verdict the gateway would not give.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..classify import URLError, normalise_url
from ..config.loader import load_config
from ..config.model import ConfigError
from ..gateway.rules import build_rules
from ..identify import Identity, SubnetGroups
from ..policy.decryption import decryption
from ..sources.illegal import without_fetching
from .common import school_time

__all__ = ["WHY_KEYS", "register"]

log = logging.getLogger("schoolgate")

# The keys of `why --json`, in order. Documented in README.md (a test checks) and stable: later
# versions add keys, never rename or remove them.
WHY_KEYS = (
    "url",
    "normalised_url",
    "host",
    "ip",
    "group",
    "group_source",
    "action",
    "category",
    "categories",
    "matched_list",
    "matched_entry",
    "matched_line",
    "rule",
    "error",
    "canonical_url",
    "lookup_expressions",
    "illegal_list",
    "reason",
    "matches",
    "keywords",
    "decrypt",
    "decrypt_reason",
)


def register(sub: argparse._SubParsersAction,
             config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    why = sub.add_parser(
        "why",
        help="explain the verdict for URLs without a running gateway",
        description="Print the verdict each URL would get: the normalised URL, the group, the "
        "matched list and category, and the action. Give URLs as arguments, or - to read them "
        "one per line from standard input.",
    )
    why.add_argument("urls", nargs="+", metavar="URL")
    why.add_argument("--group", help="decide for this group")
    why.add_argument("--ip", help="decide for the group this client IP belongs to")
    why.add_argument("--at", metavar="DATETIME",
                     help="decide as at this school-time date and time, such as "
                     "2026-11-23T10:00 (schedules); default now")
    why.add_argument("--json", action="store_true", help="one JSON object per URL per line")
    config_arg(why)
    why.set_defaults(func=cmd_why)


def cmd_why(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="schoolgate: %(message)s")
    config = load_config(args.config)
    if args.group is not None and args.group not in config.groups:
        raise ConfigError(
            [f"--group: no group {args.group!r}; defined groups: {', '.join(config.groups)}"]
        )
    groups = SubnetGroups(config)
    if args.ip is not None:
        try:
            identity = groups.identify(args.ip)
        except ValueError:
            raise ConfigError([f"--ip: {args.ip!r} is not an IP address"]) from None
        if args.group is not None:
            identity = Identity(ip=identity.ip, group=args.group, source="override")
    elif args.group is not None:
        identity = Identity(ip="", group=args.group, source="override")
    else:
        identity = Identity(ip="", group=config.default_group, source="default")

    # Illegal lists: the gateway's last good copy (digests only) if there is one, else a local
    # source file. A URL source is never fetched here: `why` must answer at once.
    rules = build_rules(config, without_fetching(config))
    when = school_time(args.at, config, "--at").timestamp() if args.at else None
    classifier, policy = rules.classifier, rules.policy
    for problem in classifier.problems:
        log.warning("%s", problem)
    status = 0
    for url in _urls(args.urls):
        result: dict[str, Any] = dict.fromkeys(WHY_KEYS)
        result.update(url=url, ip=identity.ip or None, group=identity.group,
                      group_source=identity.source, categories=[], matches=[], keywords=[])
        try:
            normalised, _ = normalise_url(url)
            classification = classifier.classify(url)
        except URLError as e:
            result["error"] = str(e)
            status = 1
        else:
            verdict = policy.decide(identity, classification, when)
            # The gateway's own predicate, on the host as the TLS decisions see it.
            decrypt = decryption(rules.decryption, identity.group, classification.host)
            result.update(
                decrypt=decrypt.decrypt,
                decrypt_reason=decrypt.reason,
                normalised_url=normalised,
                canonical_url=classification.canonical_url,
                lookup_expressions=list(classification.expressions),
                illegal_list=verdict.illegal_list,
                reason=verdict.reason,
                host=classification.host,
                action=verdict.action,
                category=verdict.category,
                categories=list(verdict.categories),
                matched_list=verdict.matched_list,
                matched_entry=verdict.matched_entry,
                matched_line=verdict.matched_line,
                rule=verdict.rule,
                # Every entry, not only the deciding one: a technician tuning lists needs to see
                # that a host is in three lists before allowing it in one. Illegal lists are not
                # here: their entries are never shown (`illegal_list` names the list only).
                matches=[
                    {"category": m.category, "kind": m.kind, "entry": m.entry,
                     "list": m.list_path, "line": m.line,
                     "blocked_for_group": m.category in policy.blocked_categories(identity.group)}
                    for m in classification.matches
                ],
                keywords=[
                    {"phrase": k.phrase.text, "theme": k.phrase.theme,
                     "severity": k.phrase.severity, "matched": k.text}
                    for k in classification.keywords
                ],
            )
        if args.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            _print_why(result)
    return status


def _urls(items: Iterable[str]) -> Iterator[str]:
    for item in items:
        if item == "-":
            for line in sys.stdin:
                if line.strip():
                    yield line.strip()
        else:
            yield item


def _print_why(r: dict[str, Any]) -> None:
    print(r["url"])
    if r["error"]:
        print(f"  error     {r['error']}")
        print()
        return
    how = {"subnet": f"client {r['ip']} is in its subnet", "default": "the default group",
           "override": "chosen with --group"}[r["group_source"]]
    print(f"  canonical   {r['canonical_url']}")
    print(f"  group       {r['group']} ({how})")
    if r["illegal_list"]:
        # Never the entry: the list's name is all anyone outside the licence may see.
        print(f"  illegal     on the illegal-content list {r['illegal_list']}")
    if r["categories"]:
        print(f"  categories  {', '.join(r['categories'])}")
        if r["matched_line"] is not None:
            print(f"  matched     {r['matched_entry']} "
                  f"({r['matched_list']}, line {r['matched_line']})")
    else:
        print("  categories  none (no list matches this host)")
    deciding = (r["matched_entry"], r["matched_line"])
    others = [m for m in r["matches"] if (m["entry"], m["line"]) != deciding]
    for m in others:
        state = "blocked for this group" if m["blocked_for_group"] else "allowed for this group"
        print(f"  also        {m['category']}: {m['entry']} ({m['list']}, line {m['line']}, "
              f"{m['kind']} entry; {state})")
    for k in r["keywords"]:
        print(f"  keyword     {k['phrase']!r} ({k['theme']}, {k['severity']})")
    if r["reason"] == "override":
        print(f"  override    {r['matched_entry']} ({r['matched_list']})")
    print(f"  action      {r['action'].upper()}" + (f"  ({r['rule']})" if r["rule"] else ""))
    https = "decrypted" if r["decrypt"] else "not decrypted (decided by host name)"
    print(f"  https       {https}: {r['decrypt_reason']}")
    print()
