"""`schoolgate allow|block|unallow|unblock`, `schoolgate reload` and `schoolgate audit`: change a
group's local policy without a restart (recorded in the audit log with who, when and why), make
the running gateway take up a change, and read the audit log.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from ..classify import Classifier, URLError
from ..classify.urls import parse_target
from ..config.loader import load_config
from ..config.model import Config, ConfigError
from ..reports.reading import printable
from ..sources.illegal import without_fetching
from ..sources.localpolicy import (
    ALL_GROUPS,
    LocalEntry,
    change_local_policy,
    local_policy_path,
    next_id,
)
from ..store.audit import read_audit, record_change
from .common import apply_now, chosen_groups, iso_or_none, school_time, signal_reload

__all__ = ["change_policy", "register"]


def register(sub: argparse._SubParsersAction,
             config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `reload`, `allow`, `block`, `unallow`, `unblock` and `audit`."""
    reload = sub.add_parser(
        "reload",
        help="make the running gateway re-read its config and lists",
        description="Ask the running gateway (the one using this config's data_dir) to re-read "
        "the config file and every list, and print the outcome. The running rules stay in force "
        "if anything is wrong; the message names the file and line.",
    )
    config_arg(reload)
    reload.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the outcome (default 60)")
    reload.set_defaults(func=cmd_reload)

    for verb, undo in (("block", "unblock"), ("allow", "unallow")):
        sp = sub.add_parser(
            verb,
            help=f"{verb} a site for a group or for everyone, with a reason (audited)",
            description=f"{verb.capitalize()} a domain or URL prefix for one or more groups, or "
            "for every group with --all, without a restart: the running gateway applies it "
            "within 5 seconds. Recorded in the audit log with who, when and why."
            + (" The illegal-content lists cannot be allowed: such a request is refused and "
               "the refusal recorded." if verb == "allow" else
               " For an emergency: 'schoolgate block URL --all' blocks it for every user."),
        )
        sp.add_argument("target", metavar="URL|HOST", help="a domain (example.com) or a URL prefix")
        scope = sp.add_mutually_exclusive_group(required=True)
        scope.add_argument("--all", action="store_true", help="every group")
        scope.add_argument("--group", action="append", metavar="GROUP",
                           help="a group (repeat for several)")
        sp.add_argument("--reason", required=True, help="why, in words the audit log will show")
        sp.add_argument("--by", required=True, metavar="NAME", help="who is making the change")
        sp.add_argument("--until", metavar="DATE",
                        help="lapse at this date or date and time "
                             "(YYYY-MM-DD[THH:MM], school time)")
        sp.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long to wait for the running gateway to confirm (default 10)")
        config_arg(sp)
        sp.set_defaults(func=cmd_change, verb=verb)

        up = sub.add_parser(
            undo,
            help=f"remove an entry made with 'schoolgate {verb}' (audited)",
            description=f"Remove the '{verb}' entries for a target made with 'schoolgate {verb}' "
            "(for the given groups, or every one with --all). Recorded in the audit log.",
        )
        up.add_argument("target", metavar="URL|HOST")
        scope = up.add_mutually_exclusive_group(required=True)
        scope.add_argument("--all", action="store_true", help="the entry made for every group")
        scope.add_argument("--group", action="append", metavar="GROUP")
        up.add_argument("--reason", default=None, help="why (recorded)")
        up.add_argument("--by", required=True, metavar="NAME", help="who is making the change")
        up.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
        config_arg(up)
        up.set_defaults(func=cmd_undo, verb=verb)

    audit = sub.add_parser(
        "audit",
        help="show the audit log of policy changes",
        description="Print every policy change (command-line allows and blocks, refusals, "
        "config changes found at reload) with who, when, what and why, oldest first.",
    )
    audit.add_argument("--since", metavar="DATE", help="only changes on or after this date")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    config_arg(audit)
    audit.set_defaults(func=cmd_audit)


def cmd_reload(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    outcome, result = signal_reload(config, args.timeout)
    if outcome == "no-gateway":
        print(f"schoolgate: {result}", file=sys.stderr)
        return 1
    if outcome == "ok":
        print(f"reloaded: generation {result['generation']} in {result['seconds']}s")
        return 0
    if outcome == "refused":
        for problem in result.get("problems", []):
            print(f"schoolgate: reload refused: {problem}", file=sys.stderr)
        print("schoolgate: the running rules stay in force", file=sys.stderr)
        return 2
    print(f"schoolgate: no reload outcome within {args.timeout:.0f}s", file=sys.stderr)
    return 1


def cmd_change(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="schoolgate: %(message)s")
    config = load_config(args.config)
    scopes = chosen_groups(args, config)
    until = school_time(args.until, config, "--until").timestamp() if args.until else None
    if until is not None and until <= time.time():
        raise ConfigError([f"--until: {args.until} is already past"])
    scope_text = "all groups" if args.all else ", ".join(scopes)
    refused = change_policy(config, args.verb, args.target, scopes, reason=args.reason,
                            by=args.by, until=until)
    if refused is not None:
        print(f"schoolgate: refused: {args.target!r} is on the illegal-content list "
              f"{refused!r}, which no group, allow entry or administrator can override. "
              "The refusal is recorded in the audit log.", file=sys.stderr)
        return 2
    lapse = f" until {args.until}" if args.until else ""
    print(f"{args.verb}ed {args.target} for {scope_text}{lapse} (recorded in the audit log)")
    return apply_now(config, args.timeout)


def change_policy(config: Config, verb: str, target: str, scopes: list[str], *, reason: str,
                  by: str, until: float | None = None, detail: dict[str, Any] | None = None,
                  classifier: Classifier | None = None) -> str | None:
    """What `schoolgate allow/block` do, for any caller (`schoolgate requests approve` too): add a
    `verb` ("allow" or "block") entry for `target` for each of `scopes` (group names, or
    `localpolicy.ALL_GROUPS`) and record it in the audit log, with `detail` added to the row's.
    The running gateway is not signalled (`common.apply_now` does that).

    Returns None when done, or the name of the illegal-content list an allow was refused for
    (the refusal is audited). `classifier` has the illegal lists loaded (default: loaded here).
    Raises ConfigError for a target that is neither a domain nor a URL prefix."""
    try:
        host, path = parse_target(target)
    except (URLError, ValueError) as e:
        raise ConfigError([f"{target!r} is not a domain or URL prefix: {e}"]) from None
    scope_text = "all groups" if scopes == [ALL_GROUPS] else ", ".join(scopes)
    if verb == "allow":
        if classifier is None:
            classifier = Classifier(illegal=without_fetching(config))
        match = classifier.illegal_match(f"http://{host}{path or '/'}")
        if match is not None:
            record_change(config.database_path, actor=by, action="allow", outcome="refused",
                          target=target, scope=scope_text, reason=reason,
                          detail={**(detail or {}),
                                  "refused": f"on the illegal-content list {match.name}"})
            return match.name
    now = time.time()

    def add(entries: list[LocalEntry]) -> list[LocalEntry]:
        out = list(entries)
        for scope in scopes:
            # One entry per target, action and scope: a repeat replaces the old reason and expiry.
            out = [e for e in out if not (e.target == target and e.action == verb
                                          and e.scope == scope)]
            out.append(LocalEntry(next_id(out), verb, target, scope, reason, by, now, until))
        return out

    change_local_policy(local_policy_path(config), add)
    record_change(config.database_path, actor=by, action=verb, target=target,
                  scope=scope_text, reason=reason,
                  detail={**(detail or {}), "until": iso_or_none(until), "host": host,
                          "path": path})
    return None


def cmd_undo(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    scopes = chosen_groups(args, config)
    removed: list[LocalEntry] = []

    def drop(entries: list[LocalEntry]) -> list[LocalEntry]:
        keep = []
        for e in entries:
            if e.target == args.target and e.action == args.verb and e.scope in scopes:
                removed.append(e)
            else:
                keep.append(e)
        return keep

    change_local_policy(local_policy_path(config), drop)
    undo = f"un{args.verb}"
    scope_text = "all groups" if args.all else ", ".join(scopes)
    if not removed:
        print(f"schoolgate: no '{args.verb}' entry for {args.target} in {scope_text}; "
              "nothing changed", file=sys.stderr)
        return 1
    record_change(config.database_path, actor=args.by, action=undo, target=args.target,
                  scope=scope_text, reason=args.reason,
                  detail={"removed": [e.id for e in removed]})
    print(f"{undo}ed {args.target} for {scope_text} (recorded in the audit log)")
    return apply_now(config, args.timeout)


def cmd_audit(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    since = school_time(args.since, config, "--since") if args.since else None
    if since is not None and len(args.since.strip()) == 10:
        since = since.replace(hour=0, minute=0, second=0)
    rows = read_audit(config.database_path, since)
    # The actors' column is 16 wide, or as wide as a longer name, so what was done lines up.
    # Reasons come from the block page's report form too: a pupil's text, shown printable.
    width = max([16, *(len(printable(r.actor)) for r in rows)])
    indent = " " * (len(rows[0].ts) + 2) if rows else ""
    for r in rows:
        if args.json:
            print(json.dumps({"id": r.id, "ts": r.ts, "actor": r.actor, "action": r.action,
                              "target": r.target, "scope": r.scope, "reason": r.reason,
                              "detail": r.detail, "outcome": r.outcome}, ensure_ascii=False))
            continue
        what = " ".join(x for x in (r.action, r.target or "", f"for {r.scope}" if r.scope else "")
                        if x)
        refused = "  REFUSED" if r.outcome == "refused" else ""
        print(f"{r.ts}  {printable(r.actor):<{width}} {printable(what)}{refused}")
        if r.reason:
            print(f"{indent}reason: {printable(r.reason)}")
        if r.detail and r.outcome == "refused":
            print(f"{indent}{printable(str(r.detail.get('refused', '')))}")
        elif r.detail and r.detail.get("diff"):
            lines = r.detail["diff"]
            # A full UT1 import lists 70 categories: the gist here, every line with --json.
            shown = lines if len(lines) <= 12 else lines[:10]
            for line in shown:
                print(f"{indent}{printable(line)}")
            if len(shown) < len(lines):
                print(f"{indent}... and {len(lines) - len(shown)} more (schoolgate audit --json "
                      "shows them all)")
    if not rows and not args.json:
        print("no policy changes recorded" + (f" since {args.since}" if args.since else ""))
    return 0
