"""`schoolgate requests list|approve|deny`: the problems people report from the block page ("this
should not be blocked") and its small form ("this should be blocked"). Approving one makes the
allow or block entry `schoolgate allow/block` would, audited, in force in the running gateway
within 5 seconds; denying one is audited too. `register` adds the command.

Exit status: 0 done; 1 no such request, already decided, the store could not be read, or the
gateway did not confirm; 2 a usage or configuration problem, or a refusal (an illegal-list page).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from ..classify import Classification, Classifier, URLError
from ..classify.urls import parse_target
from ..config.loader import load_config
from ..config.model import Config, ConfigError
from ..policy import Policy
from ..sources.illegal import without_fetching
from ..sources.localpolicy import (
    ALL_GROUPS,
    apply_local_policy,
    load_local_policy,
    local_policy_path,
)
from ..store import StoreError
from ..store.audit import record_change
from ..store.problem_reports import (
    ProblemReport,
    decide_report,
    read_report,
    read_reports,
    reopen_report,
)
from .common import apply_now, check_groups, school_time
from .policy import change_policy

__all__ = ["register"]

_STATUSES = ("open", "approved", "denied", "all")


def register(sub: argparse._SubParsersAction,
             config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `requests` and its actions to the main parser's subcommands."""
    requests = sub.add_parser(
        "requests",
        help="list, approve or deny the problems people report from the block page",
        description="People report a page that should not be blocked from its block page, and "
        "one that should be blocked from the small form linked there; each report is stored "
        "with who sent it. Approving one allows or blocks the page exactly as 'schoolgate "
        "allow' or 'schoolgate block' would (audited, in force within 5 seconds); denying one "
        "is audited too.",
    )
    actions = requests.add_subparsers(dest="requests_action", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        help="the reports waiting for a decision (or decided ones)",
        description="Print the reports, oldest first: number, when (school time), kind "
        "('unblock': this should not be blocked; 'block': this should be blocked), who and "
        "their group, the address, and their reason.",
    )
    listing.add_argument("--status", choices=_STATUSES, default="open",
                         help="which reports (default: open)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    config_arg(listing)
    listing.set_defaults(func=_with_store(cmd_list))

    approve = actions.add_parser(
        "approve",
        help="allow (or block) what request N asks for, audited",
        description="Approve request N: for 'this should not be blocked' allow the site, for "
        "'this should be blocked' block the page, for the reporter's group unless --group or "
        "--all says otherwise; exactly as 'schoolgate allow/block' do, recorded in the audit "
        "log with the reporter's reason, and applied by the running gateway within 5 seconds. "
        "Pages on an illegal-content list can never be allowed: such a request is refused, "
        "closed and its address forgotten.",
    )
    approve.add_argument("number", type=int, metavar="N", help="the request number")
    approve.add_argument("--by", required=True, metavar="NAME", help="who is approving it")
    scope = approve.add_mutually_exclusive_group()
    scope.add_argument("--all", action="store_true", help="for every group")
    scope.add_argument("--group", action="append", metavar="GROUP",
                       help="for this group (repeat for several; default: the reporter's group)")
    approve.add_argument("--target", metavar="URL|HOST",
                         help="what to allow or block instead (default: the site for an unblock "
                         "request, the page itself for a block request)")
    approve.add_argument("--until", metavar="DATE",
                         help="lapse at this date or date and time (YYYY-MM-DD[THH:MM], school "
                         "time)")
    approve.add_argument("--note", metavar="TEXT", help="a note kept with the decision")
    approve.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                         help="how long to wait for the running gateway to confirm (default 10)")
    config_arg(approve)
    approve.set_defaults(func=_with_store(cmd_approve))

    deny = actions.add_parser(
        "deny",
        help="close request N without changing anything, audited",
        description="Deny request N: nothing changes in the policy; the decision, who made it "
        "and the note are kept with the request and in the audit log.",
    )
    deny.add_argument("number", type=int, metavar="N", help="the request number")
    deny.add_argument("--by", required=True, metavar="NAME", help="who is denying it")
    deny.add_argument("--note", metavar="TEXT", help="why, kept with the decision")
    config_arg(deny)
    deny.set_defaults(func=_with_store(cmd_deny))


Command = Callable[[argparse.Namespace], int]


def _with_store(command: Command) -> Command:
    """A store that cannot be read or written is one line and status 1, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except StoreError as e:
            print(f"schoolgate: {e}", file=sys.stderr)
            return 1

    return run


# ---------------------------------------------------------------------------------------------
# list


def cmd_list(args: argparse.Namespace) -> int:

    config = load_config(args.config)
    rows = read_reports(config.database_path, None if args.status == "all" else args.status)
    rows = _hide_listed(config, rows)
    if args.json:
        for r in rows:
            print(json.dumps(r.as_dict(), ensure_ascii=False))
        return 0
    if not rows:
        which = "" if args.status == "all" else f"{args.status} "
        print(f"no {which}requests")
        return 0
    tz = ZoneInfo(config.timezone)
    when = f"WHEN ({config.timezone})"
    width = max(len(when), len("2026-01-31 09:00"))  # a zone's name can be longer than a time
    print(f"{'N':>5}  {when:<{width}}  {'KIND':<7}  WHO (GROUP)  ADDRESS")
    for r in rows:
        who = r.user or r.device or r.client_ip
        url = r.url if r.url is not None else f"{r.host} (address hidden: illegal-content list)"
        print(_printable(f"{r.id:>5}  {_local(r.ts, tz):<{width}}  {r.kind:<7}  {who} "
                         f"({r.group_name})  {url}"))
        print(_printable(f"{'':7}reason: {r.reason}"))
        if r.status != "open":
            decided = f"{'':7}{r.status} by {r.decided_by} on {_local(r.decided_ts, tz)}"
            if r.override_scope:
                decided += f" for {r.override_scope}"
            if r.decision_note:
                decided += f": {r.decision_note}"
            print(_printable(decided))
    return 0


def _hide_listed(config: Config, rows: list[ProblemReport]) -> list[ProblemReport]:
    """`rows` with the address taken off any that an illegal-content list has gained since it
    was reported (approving or denying it removes it from the store too)."""


    if not config.illegal_lists or all(r.url is None for r in rows):
        return rows
    classifier = Classifier()
    classifier.illegal = without_fetching(config)
    out = []
    for r in rows:
        try:
            listed = r.url is not None and classifier.illegal_match(r.url) is not None
        except URLError:
            listed = False
        out.append(dataclasses.replace(r, url=None) if listed else r)
    return out


def _local(iso: str | None, tz: ZoneInfo) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _printable(text: str) -> str:
    """What people typed, safe for a terminal: control and direction characters become '?'."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


# ---------------------------------------------------------------------------------------------
# approve / deny


def cmd_approve(args: argparse.Namespace) -> int:

    logging.basicConfig(level=logging.WARNING, format="schoolgate: %(message)s")
    config = load_config(args.config)
    db = config.database_path
    report = _open_report(config, args.number)
    if report is None:
        return 1
    n = report.id
    verb = "allow" if report.kind == "unblock" else "block"
    scopes = _scopes(args, config, report)
    target = args.target or _default_target(report)
    try:
        host, path = parse_target(target)
    except (URLError, ValueError) as e:
        raise ConfigError([f"--target: {target!r} is not a domain or URL prefix: {e}"]) from None
    until = school_time(args.until, config, "--until").timestamp() if args.until else None
    if until is not None and until <= time.time():
        raise ConfigError([f"--until: {args.until} is already past"])
    scope_text = _scope_text(scopes)

    classifier = Classifier()
    classifier.illegal = without_fetching(config)
    if report.url is None:  # _open_report refuses a redacted one
        raise RuntimeError(f"report {report.id} has no address to test")
    try:
        page = classifier.classify(report.url)
    except URLError as e:
        print(f"schoolgate: request {n}: its address cannot be read ({e}); deny it",
              file=sys.stderr)
        return 1
    listed = page.illegal
    if listed is None and verb == "allow":
        listed = classifier.illegal_match(f"http://{host}{path or '/'}")
        if listed is not None:
            # The technician's --target is listed, not the page: the request stays open.
            record_change(db, actor=args.by, action=verb, outcome="refused", target=host,
                          scope=scope_text, reason=f"request {n}",
                          detail={"request": n,
                                  "refused": f"on the illegal-content list {listed.name}"})
            print(f"schoolgate: refused: the target is on the illegal-content list "
                  f"{listed.name!r}, which no group, allow entry or administrator can override. "
                  "The refusal is recorded in the audit log.", file=sys.stderr)
            return 2
    elif listed is not None:
        # The page joined a list after it was reported. Close the request, forget the address,
        # and record the host and the list's name only (the address may be a list entry).
        decide_report(db, n, status="denied", by=args.by, redact_url=True,
                      note=f"on the illegal-content list {listed.name}: cannot be "
                      + ("unblocked" if verb == "allow" else "changed"))
        record_change(db, actor=args.by, action=verb, outcome="refused", target=report.host,
                      scope=scope_text, reason=f"request {n}",
                      detail={"request": n,
                              "refused": f"on the illegal-content list {listed.name}"})
        print(f"schoolgate: refused: request {n} ({report.host}) is on the illegal-content list "
              f"{listed.name!r}, which no group, allow entry or administrator can override. The "
              "request is closed as denied, its address removed, and the refusal recorded in "
              "the audit log.", file=sys.stderr)
        return 2

    # Claim it first: of two technicians approving at once, only one makes the change.
    if not decide_report(db, n, status="approved", by=args.by, note=args.note, scope=scope_text):
        return _already_decided(config, n)
    detail: dict = {"request": n}
    if args.note:
        detail["note"] = args.note
    try:
        refused = change_policy(config, verb, target, scopes,
                                reason=f"request {n}: {report.reason}", by=args.by, until=until,
                                detail=detail, classifier=classifier)
    except BaseException:
        reopen_report(db, n)
        raise
    if refused is not None:  # checked above; a list cannot change in between
        reopen_report(db, n)
        print(f"schoolgate: refused: on the illegal-content list {refused!r}", file=sys.stderr)
        return 2
    lapse = f" until {args.until}" if args.until else ""
    print(_printable(f"approved request {n}: {verb}ed {target} for {scope_text}{lapse} "
                     "(recorded in the audit log)"))
    for note in _not_decided_by_it(config, page, verb, scopes):
        print(_printable(f"schoolgate: note: {note}"), file=sys.stderr)
    return apply_now(config, args.timeout)


def cmd_deny(args: argparse.Namespace) -> int:

    logging.basicConfig(level=logging.WARNING, format="schoolgate: %(message)s")
    config = load_config(args.config)
    db = config.database_path
    report = _open_report(config, args.number)
    if report is None:
        return 1
    n = report.id
    classifier = Classifier()
    classifier.illegal = without_fetching(config)
    if report.url is None:  # _open_report refuses a redacted one
        raise RuntimeError(f"report {report.id} has no address to test")
    listed = classifier.illegal_match(report.url)
    if not decide_report(db, n, status="denied", by=args.by, note=args.note,
                         redact_url=listed is not None):
        return _already_decided(config, n)
    detail: dict = {"request": n, "kind": report.kind}
    if args.note:
        detail["note"] = args.note
    try:
        record_change(db, actor=args.by, action="request-denied",
                      # The host alone for a page on an illegal list: the address may be an entry.
                      target=report.host if listed is not None else report.url,
                      scope=report.group_name, reason=f"request {n}: {report.reason}",
                      detail=detail)
    except BaseException:
        reopen_report(db, n)
        raise
    what = report.host if listed is not None else report.url
    print(_printable(f"denied request {n} ({report.kind} {what}); nothing changed in the policy "
                     "(recorded in the audit log)"))
    return 0


def _open_report(config: Config, number: int) -> ProblemReport | None:
    """Request `number` if it is open, else None after saying why."""

    report = read_report(config.database_path, number)
    if report is None:
        print(f"schoolgate: no request {number}", file=sys.stderr)
        return None
    if report.status != "open" or report.url is None:
        _already_decided(config, number, report)
        return None
    return report


def _already_decided(config: Config, number: int, report: ProblemReport | None = None) -> int:

    report = report or read_report(config.database_path, number)
    if report is None:
        print(f"schoolgate: no request {number}", file=sys.stderr)
        return 1
    when = _local(report.decided_ts, ZoneInfo(config.timezone))
    print(_printable(f"schoolgate: request {number} was already {report.status} by "
                     f"{report.decided_by} on {when}; nothing changed"), file=sys.stderr)
    return 1


def _scopes(args: argparse.Namespace, config: Config, report: ProblemReport) -> list[str]:

    if args.all:
        return [ALL_GROUPS]
    groups = args.group or [report.group_name]
    unknown = [g for g in groups if g not in config.groups]
    if unknown and not args.group:
        raise ConfigError([f"request {report.id}: the reporter's group {unknown[0]!r} is no "
                           "longer in the config; give --group GROUP or --all"])
    check_groups(groups, config)
    return list(dict.fromkeys(groups))


def _scope_text(scopes: list[str]) -> str:

    return "all groups" if scopes == [ALL_GROUPS] else ", ".join(scopes)


def _default_target(report: ProblemReport) -> str:
    """The site for "this should not be blocked" (a page needs its site's images and scripts
    too); the page itself for "this should be blocked" (not the whole site it is on)."""
    if report.url is None:  # _open_report refuses a redacted one
        raise RuntimeError(f"report {report.id} has no address to test")
    return report.host if report.kind == "unblock" else report.url


def _not_decided_by_it(config: Config, page: Classification, verb: str,
                       scopes: list[str]) -> list[str]:
    """Groups for which the new entry does not decide the reported page, because a more
    specific allow or block entry does: said, so the technician can use --target."""

    now = time.time()
    policy = Policy(apply_local_policy(config, load_local_policy(local_policy_path(config)), now))
    groups = list(config.groups) if scopes == [ALL_GROUPS] else scopes
    notes = []
    for group in groups:
        found = policy.override_for(group, page.host, page.path)
        if found is None:
            notes.append(f"for group {group} the target does not cover {page.canonical_url}")
        elif found[1] != verb:
            o, action = found
            notes.append(f"for group {group} the page is still decided by the more specific "
                         f"{action} entry {o.target} ({o.where}); approve with --target to "
                         "name the page itself")
    return notes
