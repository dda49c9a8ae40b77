"""The `schoolgate` command: run the gateway, explain a verdict, find an event by reference.

Exit status: 0 success; 1 a runtime failure (or, for `why`, a URL that could not be read);
2 a configuration or usage error, printed as one line per problem and never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..config.model import Config, ConfigError
from ..config.loader import load_config, parse_address
from ..gateway.service import StartupError
from ..sources.illegal import without_fetching

DEFAULT_CONFIG = "config/schoolgate.yaml"
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
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ConfigError as e:
        for problem in e.problems:
            print(f"schoolgate: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="schoolgate",
        description="Web filtering and monitoring gateway for schools.",
    )
    p.add_argument("--version", action="version", version=f"schoolgate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def config_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config",
            metavar="PATH",
            default=os.environ.get("SCHOOLGATE_CONFIG", DEFAULT_CONFIG),
            help=f"configuration file (default: $SCHOOLGATE_CONFIG or {DEFAULT_CONFIG})",
        )

    run = sub.add_parser("run", help="start the gateway", description="Start the gateway.")
    config_arg(run)
    run.add_argument("--listen", metavar="HOST:PORT", help="override listen.host and listen.port")
    run.add_argument("--metrics", metavar="HOST:PORT", help="override metrics.host and metrics.port")
    run.set_defaults(func=cmd_run)

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
                        help="lapse at this date or date and time (YYYY-MM-DD[THH:MM], school time)")
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

    from .reports import register as register_reports
    from ..reports.mail import send_configured

    register_reports(sub, config_arg, send_email=send_configured)
    from .check import register as register_check

    register_check(sub, config_arg)
    from .requests import register as register_requests

    register_requests(sub, config_arg)
    from .lists import register as register_lists

    register_lists(sub, config_arg)

    event = sub.add_parser(
        "event",
        help="show the stored event(s) for a block page's reference",
        description="Find the event a block page's reference ID points to.",
    )
    event.add_argument("reference", help="the reference on the block page, e.g. 7KQ2M-9XDPA")
    event.add_argument("--json", action="store_true", help="print JSON, one object per line")
    config_arg(event)
    event.set_defaults(func=cmd_event)
    return p


# ---------------------------------------------------------------------------------------------
# why


def cmd_why(args: argparse.Namespace) -> int:
    from ..classify import URLError, normalise_url
    from ..identify import Identity, SubnetGroups

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

    from ..gateway.service import build_rules

    # Illegal lists: the gateway's last good copy (digests only) if there is one, else a local
    # source file. A URL source is never fetched here: `why` must answer at once.
    rules = build_rules(config, without_fetching(config))
    when = _school_time(args.at, config, "--at").timestamp() if args.at else None
    classifier, policy = rules.classifier, rules.policy
    for problem in classifier.problems:
        log.warning("%s", problem)
    status = 0
    for url in _urls(args.urls):
        result: dict = dict.fromkeys(WHY_KEYS)
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
            result.update(
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
            _print_why(result, config)
    return status


def _urls(items: Iterable[str]) -> Iterable[str]:
    for item in items:
        if item == "-":
            for line in sys.stdin:
                if line.strip():
                    yield line.strip()
        else:
            yield item


def _print_why(r: dict, config: Config) -> None:
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
            print(f"  matched     {r['matched_entry']} ({r['matched_list']}, line {r['matched_line']})")
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
    print()


# ---------------------------------------------------------------------------------------------
# reload


def cmd_reload(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    outcome, result = _signal_reload(config, args.timeout)
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


def _signal_reload(config: Config, timeout: float) -> tuple[str, Any]:
    """Send the running gateway SIGHUP and wait for the reload it starts to finish. Returns
    ("ok", status), ("refused", status), ("timeout", None) or ("no-gateway", why)."""
    import time

    pidfile = config.data_dir / "schoolgate.pid"
    status = config.data_dir / "reload-status.json"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return "no-gateway", f"no running gateway found ({pidfile} is missing or unreadable)"
    before = status.stat().st_mtime_ns if status.exists() else None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return "no-gateway", f"the gateway (pid {pid}) is not running; remove {pidfile}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status.exists() and status.stat().st_mtime_ns != before:
            try:
                result = json.loads(status.read_text())
            except (OSError, ValueError):
                time.sleep(0.05)  # caught between the write and the rename's visibility
                continue
            return ("ok" if result.get("ok") else "refused"), result
        time.sleep(0.05)
    return "timeout", None


# ---------------------------------------------------------------------------------------------
# block / allow / unblock / unallow / audit


def _school_time(text: str, config: Config, what: str):
    """A date or date-time typed by a technician, read in the school's time zone."""
    from datetime import datetime, time as dtime
    from zoneinfo import ZoneInfo

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError([f"{what}: {text!r} is not a date such as 2026-12-31 or "
                           "2026-12-31T17:00"]) from None
    if len(text.strip()) == 10:  # a day alone means the end of that day
        value = datetime.combine(value.date(), dtime(23, 59, 59))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(config.timezone))
    return value


def _scope(args: argparse.Namespace, config: Config) -> list[str]:
    from ..sources.localpolicy import ALL_GROUPS

    if args.all:
        return [ALL_GROUPS]
    unknown = [g for g in args.group if g not in config.groups]
    if unknown:
        raise ConfigError([f"--group: no group {unknown[0]!r}; defined groups: "
                           f"{', '.join(config.groups)}"])
    return list(dict.fromkeys(args.group))


def cmd_change(args: argparse.Namespace) -> int:
    import time

    logging.basicConfig(level=logging.WARNING, format="schoolgate: %(message)s")
    config = load_config(args.config)
    scopes = _scope(args, config)
    until = _school_time(args.until, config, "--until").timestamp() if args.until else None
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
    return _apply_now(config, args.timeout)


def change_policy(config: Config, verb: str, target: str, scopes: list[str], *, reason: str,
                  by: str, until: float | None = None, detail: dict | None = None,
                  classifier=None) -> str | None:
    """What `schoolgate allow/block` do, for any caller (`schoolgate requests approve` too): add a
    `verb` ("allow" or "block") entry for `target` for each of `scopes` (group names, or
    `localpolicy.ALL_GROUPS`) and record it in the audit log, with `detail` added to the row's.
    The running gateway is not signalled (`_apply_now` does that).

    Returns None when done, or the name of the illegal-content list an allow was refused for
    (the refusal is audited). `classifier` has the illegal lists loaded (default: loaded here).
    Raises ConfigError for a target that is neither a domain nor a URL prefix."""
    import time

    from ..classify import URLError
    from ..classify.urls import parse_target
    from ..sources.localpolicy import (
        ALL_GROUPS, LocalEntry, change_local_policy, local_policy_path, next_id,
    )
    from ..store.audit import record_change

    try:
        host, path = parse_target(target)
    except (URLError, ValueError) as e:
        raise ConfigError([f"{target!r} is not a domain or URL prefix: {e}"]) from None
    scope_text = "all groups" if scopes == [ALL_GROUPS] else ", ".join(scopes)
    if verb == "allow":
        if classifier is None:
            from ..classify import Classifier

            classifier = Classifier()
            classifier.illegal = without_fetching(config)
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
                  detail={**(detail or {}), "until": _iso_or_none(until), "host": host,
                          "path": path})
    return None


def cmd_undo(args: argparse.Namespace) -> int:
    from ..sources.localpolicy import change_local_policy, local_policy_path
    from ..store.audit import record_change

    config = load_config(args.config)
    scopes = _scope(args, config)
    removed: list = []

    def drop(entries):
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
    return _apply_now(config, args.timeout)


def _iso_or_none(ts: float | None) -> str | None:
    from datetime import UTC, datetime

    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _apply_now(config: Config, timeout: float) -> int:
    """Signal the running gateway to reload now and wait for its answer. Without one running,
    the change takes effect when it starts (the file watcher covers a missed signal)."""
    outcome, result = _signal_reload(config, timeout)
    if outcome == "no-gateway":
        print("no running gateway found: the change applies when it starts")
        return 0
    if outcome == "ok":
        print(f"in force in the running gateway (generation {result['generation']})")
        return 0
    if outcome == "refused":
        for problem in result.get("problems", []):
            print(f"schoolgate: the gateway refused the new rules: {problem}", file=sys.stderr)
        return 2
    print(f"schoolgate: the gateway did not confirm within {timeout:.0f}s; it also re-reads the "
          "file by itself every 2 seconds", file=sys.stderr)
    return 1


def cmd_audit(args: argparse.Namespace) -> int:
    from ..store.audit import read_audit

    config = load_config(args.config)
    since = _school_time(args.since, config, "--since") if args.since else None
    if since is not None and len(args.since.strip()) == 10:
        since = since.replace(hour=0, minute=0, second=0)
    rows = read_audit(config.database_path, since)
    for r in rows:
        if args.json:
            print(json.dumps({"id": r.id, "ts": r.ts, "actor": r.actor, "action": r.action,
                              "target": r.target, "scope": r.scope, "reason": r.reason,
                              "detail": r.detail, "outcome": r.outcome}, ensure_ascii=False))
            continue
        what = " ".join(x for x in (r.action, r.target or "", f"for {r.scope}" if r.scope else "")
                        if x)
        refused = "  REFUSED" if r.outcome == "refused" else ""
        print(f"{r.ts}  {r.actor:<16} {what}{refused}")
        if r.reason:
            print(f"{'':26}reason: {r.reason}")
        if r.detail and r.outcome == "refused":
            print(f"{'':26}{r.detail.get('refused', '')}")
        elif r.detail and r.detail.get("diff"):
            lines = r.detail["diff"]
            # A full UT1 import lists 70 categories: the gist here, every line with --json.
            shown = lines if len(lines) <= 12 else lines[:10]
            for line in shown:
                print(f"{'':26}{line}")
            if len(shown) < len(lines):
                print(f"{'':26}... and {len(lines) - len(shown)} more (schoolgate audit --json "
                      "shows them all)")
    if not rows and not args.json:
        print("no policy changes recorded" + (f" since {args.since}" if args.since else ""))
    return 0


# ---------------------------------------------------------------------------------------------
# event


def cmd_event(args: argparse.Namespace) -> int:
    from ..store import StoreError, events_by_reference

    config = load_config(args.config)
    if not config.database_path.exists():
        print(f"schoolgate: no event store yet at {config.database_path}", file=sys.stderr)
        return 1
    try:
        rows = events_by_reference(config.database_path, args.reference)
    except StoreError as e:
        print(f"schoolgate: {e}", file=sys.stderr)
        return 1
    if not rows:
        print(f"schoolgate: no event with reference {args.reference}", file=sys.stderr)
        return 1
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            for key, value in row.items():
                print(f"{key:13} {'' if value is None else value}")
            print()
    return 0


# ---------------------------------------------------------------------------------------------
# run


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.listen:
        config = config.replace(listen=parse_address(args.listen, "--listen"))
    if args.metrics:
        config = config.replace(metrics=parse_address(args.metrics, "--metrics"))
    try:
        return asyncio.run(_run(config))
    except StartupError as e:
        print(f"schoolgate: {e}", file=sys.stderr)
        return 1


def ensure_ca(config: Config) -> Path:
    """Create the interception CA on first start; return the public certificate's path.

    The CA is named after the school so a pupil inspecting a certificate sees who issued it.
    mitmproxy writes the private key files with mode 0600.
    """
    from mitmproxy import certs

    key_file = config.ca_dir / "mitmproxy-ca.pem"
    if not key_file.exists():
        try:
            certs.CertStore.create_store(
                config.ca_dir,
                "mitmproxy",
                2048,
                organization="Schoolgate",
                cn=f"Schoolgate CA - {config.school_name}"[:64],
            )
        except OSError as e:
            raise StartupError(f"cannot create the CA in {config.ca_dir}: {e}") from None
        log.info("created a new interception CA in %s", config.ca_dir)
    mode = stat.S_IMODE(key_file.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "the CA private key %s can be read by other users (mode %o): run chmod 600 on it",
            key_file, mode,
        )
    return config.ca_cert_path


async def _run(config: Config) -> int:
    from mitmproxy import addons as mitm_addons
    from mitmproxy import options
    from mitmproxy.addons import errorcheck, termlog
    from mitmproxy.master import Master

    from ..gateway import addons
    from ..gateway.service import Gateway
    from ..store import StoreError

    opts = options.Options()
    master = Master(opts, with_termlog=False)
    # Logs go to stderr, leaving stdout for the start-up banner (and journald keeps both).
    terminal_log = termlog.TermLog(out=sys.stderr)
    master.addons.add(terminal_log)
    master.addons.add(*mitm_addons.default_addons())
    logging.getLogger("schoolgate").setLevel(logging.INFO)

    ca_cert = ensure_ca(config)
    gateway = Gateway(config)
    gateway.log_lists()
    gateway.load_illegal_lists()
    # mitmproxy's ErrorCheck exits on any error logged during start-up. Add it only now: an
    # illegal list whose source is down is logged as an error but handled (the last good copy
    # is in force, or StartupError says why not), and must not stop the gateway from starting.
    master.addons.add(errorcheck.ErrorCheck())
    opts.update(
        listen_host=config.listen.host,
        listen_port=config.listen.port,
        mode=[config.mode],
        confdir=str(config.ca_dir),
        # Lazy: never open a connection to a blocked site's server, not even the TLS handshake
        # mitmproxy would otherwise make to copy its certificate details.
        connection_strategy="lazy",
        # mitm.it's onboarding app is mitmproxy-branded; schools install the CA through their
        # device management instead (README).
        onboarding=False,
        termlog_verbosity="info",
    )
    if config.upstream_trusted_ca:
        opts.update(ssl_verify_upstream_trusted_ca=str(config.upstream_trusted_ca))
    master.addons.add(*addons.ordered(gateway), _Announce(config, gateway, ca_cert))

    try:
        await gateway.start()
    except StoreError as e:
        raise StartupError(str(e)) from None
    except OSError as e:
        raise StartupError(f"cannot serve metrics on {config.metrics}: {e.strerror or e}") from None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Shutdown in stages: mitmproxy stops serving, then `done` runs and the Record addon
        # drains the event queue into the store before the process exits.
        loop.add_signal_handler(sig, master.shutdown)
    # `schoolgate reload` (or `kill -HUP`) rebuilds the rules without a restart.
    loop.add_signal_handler(signal.SIGHUP, gateway.request_reload, "SIGHUP")
    pidfile = config.data_dir / "schoolgate.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        await master.run()
    finally:
        await gateway.stop()  # no-op when `done` already stopped it
        terminal_log.uninstall()
        pidfile.unlink(missing_ok=True)
        (config.data_dir / "listen-address").unlink(missing_ok=True)  # `schoolgate check` reads it
    return 0


class _Announce:
    """Print where the gateway listens, the CA certificate and a first command to try."""

    def __init__(self, config: Config, gateway, ca_cert: Path):
        self.config, self.gateway, self.ca_cert = config, gateway, ca_cert

    def running(self) -> None:
        from mitmproxy import ctx

        proxyserver = ctx.master.addons.get("proxyserver")
        addrs = proxyserver.listen_addrs() if proxyserver else []
        if not addrs:
            return
        host, port = addrs[0][0], addrs[0][1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        proxy = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
        # Where `schoolgate check` finds this gateway (the real port when the config says 0).
        from ..reports.rendering import write_private

        write_private(self.config.data_dir / "listen-address", f"{proxy[len('http://'):]}\n")
        example = _example_blocked_host(self.config)
        lines = [
            "",
            f"Schoolgate {__version__} is filtering.",
            f"  proxy listening on  {', '.join(f'{a[0] or '*'}:{a[1]}' for a in addrs)} ({self.config.mode} mode)",
            f"  metrics             http://{self.gateway.metrics_address}/metrics",
            f"  CA certificate      {self.ca_cert}",
            f"  event store         {self.config.database_path}",
        ]
        if example:
            lines += [
                "",
                "See a block page:",
                f"  curl -x {proxy} http://{example}/",
                f"  curl -x {proxy} --cacert {self.ca_cert} https://{example}/",
            ]
        lines.append("")
        print("\n".join(lines), flush=True)


def _example_blocked_host(config: Config) -> str | None:
    """A domain from the default group's first blocked category, to show a newcomer a block."""
    from ..classify.lists import read_domain_list

    group = config.groups[config.default_group]
    for category in config.categories.values():
        if category.name not in group.blocked_categories:
            continue
        for path in category.lists:
            entries, _ = read_domain_list(path)
            if entries:
                return "www." + entries[0][0]
    return None


if __name__ == "__main__":
    sys.exit(main())
