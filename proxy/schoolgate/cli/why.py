"""`schoolgate why URL...`: the verdict each URL would get for a group or a client address, and
why: the canonical URL, every list entry that matches, the search and its keyword matches, the
keyword flags in the address, the rule that decided and where the gateway decides it. Built with
the gateway's own `build_rules` and identity sources, and decided by
`schoolgate.gateway.decision.explain`, which runs the stage functions the gateway's addons call
(CONNECT, TLS handshake, request, body) in their order: it cannot give a verdict the gateway
would not give.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..classify import Classification
from ..config.loader import load_config
from ..config.model import ConfigError
from ..gateway.decision import BAD_REQUEST_RULE, explain
from ..gateway.rules import Rules, build_rules
from ..identify import Identity
from ..identify.maps import IpUserMap
from ..policy.decryption import decryption
from ..sources.illegal import without_fetching
from .common import check_groups, school_time

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
    "stage",
    "search",
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
    why.add_argument("--method", metavar="METHOD",
                     help="the request's method (default GET, or POST with --data)")
    why.add_argument("--data", metavar="BODY",
                     help="the request's body, for a search sent in it (DuckDuckGo's forms, "
                     "YouTube's in-page search)")
    why.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                     help="a request header (repeatable), such as 'Content-Type: "
                     "application/json' or 'Accept: application/dns-json'")
    why.add_argument("--json", action="store_true", help="one JSON object per URL per line")
    config_arg(why)
    why.set_defaults(func=cmd_why)


def cmd_why(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="schoolgate: %(message)s")
    config = load_config(args.config)
    if args.group is not None:
        check_groups([args.group], config)
    headers = _headers(args.header)
    body = args.data.encode("utf-8", "surrogateescape") if args.data is not None else None
    method = args.method or ("POST" if body is not None else "GET")
    # Illegal lists: the gateway's last good copy (digests only) if there is one, else a local
    # source file. A URL source is never fetched here: `why` must answer at once. The IP map's
    # file rows are read as the gateway reads them (what the network pushes is the gateway's).
    rules = build_rules(config, without_fetching(config), ip_users=IpUserMap())
    identity = _identity(rules, args)
    when = school_time(args.at, config, "--at").timestamp() if args.at else None
    classifier, policy = rules.classifier, rules.policy
    for problem in classifier.problems:
        log.warning("%s", problem)
    status = 0
    for url in _urls(args.urls):
        result: dict[str, Any] = dict.fromkeys(WHY_KEYS)
        # An argument that is not UTF-8 (the shell passes its bytes as surrogates) is shown
        # with those bytes as \xNN: the output stays valid UTF-8 and JSON.
        shown = url.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        result.update(url=shown, ip=identity.ip or None, group=identity.group,
                      group_source=identity.source, categories=[], matches=[], keywords=[])
        found = explain(rules, identity, url, method=method, headers=headers, body=body,
                        now=when)
        verdict, classification = found.verdict, found.classification
        # What the gateway does with a URL it cannot read, or cannot send on: refused, as a
        # bad request (400); `error` says why, and the exit status is 1.
        refused = verdict.reason == "bad-request"
        result.update(action=verdict.action, reason=verdict.reason, rule=verdict.rule,
                      stage=found.stage,
                      error=(found.error or (verdict.rule or "").removeprefix(BAD_REQUEST_RULE)
                             if refused else None),
                      normalised_url=found.request.url if found.request is not None else None)
        if refused:
            status = 1
        if classification is not None:
            # The gateway's own predicate, on the host as the TLS decisions see it.
            decrypt = decryption(rules.decryption, identity.group, classification.host)
            result.update(
                decrypt=decrypt.decrypt,
                decrypt_reason=decrypt.reason,
                canonical_url=classification.canonical_url,
                lookup_expressions=list(classification.expressions),
                illegal_list=verdict.illegal_list,
                host=classification.host,
                category=verdict.category,
                categories=list(verdict.categories),
                matched_list=verdict.matched_list,
                matched_entry=verdict.matched_entry,
                matched_line=verdict.matched_line,
                # Every entry, not only the deciding one: a technician tuning lists needs to see
                # that a host is in three lists before allowing it in one. Illegal lists are not
                # here: their entries are never shown (`illegal_list` names the list only).
                matches=[
                    {"category": m.category, "kind": m.kind, "entry": m.entry,
                     "list": m.list_path, "line": m.line,
                     "blocked_for_group": m.category in policy.blocked_categories(
                         identity.group, when)}
                    for m in classification.matches
                ],
                keywords=[
                    {"phrase": classifier.library.written(k.phrase)
                     if classifier.library is not None else k.phrase.text,
                     "theme": k.phrase.theme,
                     "severity": k.phrase.severity, "matched": k.text}
                    for k in classifier.keywords_outside_search(classification)
                ],
                search=_search(rules, identity.group, classification),
            )
        if args.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            _print_why(result)
    return status


def _identity(rules: Rules, args: argparse.Namespace) -> Identity:
    """Who the URLs are decided for: the group given, or the one the gateway's identity
    sources give the client address (the IP map's file rows and the user groups included)."""
    if args.ip is not None:
        try:
            identity = rules.identity.identify(args.ip)
        except ValueError:
            raise ConfigError([f"--ip: {args.ip!r} is not an IP address"]) from None
        if args.group is not None:
            return Identity(ip=identity.ip, group=args.group, source="override",
                            user=identity.user, device=identity.device)
        return identity
    if args.group is not None:
        return Identity(ip="", group=args.group, source="override")
    return Identity(ip="", group=rules.config.default_group, source="default")


def _headers(given: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in given:
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            raise ConfigError([f"--header: {item!r} is not NAME: VALUE"])
        headers[name.strip()] = value.strip()
    return headers


def _search(rules: Rules, group: str, classification: Classification) -> dict[str, Any] | None:
    """The `search` object: the search the request makes, its keyword matches, and the score
    the group's threshold is compared with (the policy's own score)."""
    search = classification.search
    if search is None:
        return None
    flags = classification.flags
    return {
        "engine": search.engine,
        "term": search.term,
        "normalised": search.normalised,
        "score": rules.policy.keyword_score(flags),
        "threshold": rules.policy.group(group).keyword_threshold,
        # `rule` names the rule that matched: for a phrase, the phrase itself (a misspelling
        # generated from it matches as it); a combination rule's name, with `phrase` null.
        "matches": [{"rule": f.rule, "phrase": None if f.combination else f.phrase,
                     "theme": f.theme, "severity": f.severity, "matched": f.text}
                    for f in flags],
    }


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
        print(f"  error       {r['error']}")
        print(f"  action      {r['action'].upper()}  (the gateway refuses it as a bad request)")
        print()
        return
    how = {"subnet": f"client {r['ip']} is in its subnet", "default": "the default group",
           "override": "chosen with --group",
           "user-csv": f"client {r['ip']} is a user the IP map names, in the user groups file",
           "ldap-group": f"client {r['ip']} is a user the IP map names, in a directory group",
           }.get(r["group_source"], r["group_source"])
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
    search = r["search"]
    if search is not None:
        print(f"  search      {search['engine']}: {search['term']!r} (score {search['score']:g}; "
              f"the group blocks at {search['threshold']:g})")
        for m in search["matches"]:
            print(f"  phrase      {m['phrase']!r} ({m['theme']}, {m['severity']})")
    for k in r["keywords"]:
        print(f"  keyword     {k['phrase']!r} ({k['theme']}, {k['severity']})")
    if r["reason"] == "override":
        print(f"  override    {r['matched_entry']} ({r['matched_list']})")
    print(f"  action      {r['action'].upper()}" + (f"  ({r['rule']})" if r["rule"] else ""))
    where = _STAGE_WORDS.get(r["stage"])
    if where:
        print(f"  decided     {where}")
    https = "decrypted" if r["decrypt"] else "not decrypted (decided by host name)"
    print(f"  https       {https}: {r['decrypt_reason']}")
    print()


_STAGE_WORDS = {
    "connect": "at the CONNECT, before anything is decrypted",
    "handshake": "at the TLS handshake, by host name: nothing inside is seen",
    "body": "when the request's body arrived (the search is in it)",
}
