"""The report commands: `schoolgate report daily|weekly|context`, `schoolgate export user` and
`schoolgate purge`. `register` adds them to the main parser.

Exit status as for every command: 0 done; 1 the store could not be read or written, or nothing
matched; 2 a usage or configuration problem, printed as one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ..config.loader import load_config
from ..config.model import RETENTION_KINDS, Config, ConfigError
from ..reports.context import context_around, context_for_reference, format_context
from ..reports.daily import build_daily, email_parts, write_daily
from ..reports.export import export_user
from ..reports.reading import Person, local_midnight
from ..reports.retention import purge
from ..reports.weekly import build_weekly, week_start, weekly_email_parts, write_weekly
from ..store import StoreError
from ..wording import counted

__all__ = ["SendEmailNow", "register"]

SendEmailNow = Callable[[Config, tuple[str, ...], str, str, str, tuple[Path, ...]], None]
"""(config, to, subject, text, html, attachments): send one e-mail now, raising on failure."""


def register(
    sub: argparse._SubParsersAction,
    config_arg: Callable[[argparse.ArgumentParser], None],
    *,
    send_email: SendEmailNow | None = None,
) -> None:
    """Add `report`, `export` and `purge` to the main parser's subcommands. `send_email` is how
    `report daily --email` sends (the alert senders' SMTP); without it `--email` is refused."""
    report = sub.add_parser(
        "report",
        help="the DSL's daily suspicious-search report, the weekly summary, or a person's "
        "browsing around an incident",
        description="Build reports from the event store (read-only: safe while the gateway runs).",
    )
    kinds = report.add_subparsers(dest="report", metavar="REPORT", required=True)

    daily = kinds.add_parser(
        "daily",
        help="write the suspicious-search report for one day (HTML and CSV)",
        description="Write suspicious-searches-YYYY-MM-DD.html and .csv: every flagged search and "
        "illegal-list hit of one school day, grouped by person, most serious first, with each "
        "person's browsing an hour either side. The gateway also writes it every morning "
        "(reports.daily_at).",
    )
    daily.add_argument("--date", metavar="YYYY-MM-DD",
                       help="the school day to report on (default: yesterday, school time)")
    daily.add_argument("--out", metavar="DIR", help="folder to write to (default: reports.out_dir, "
                       "else <data_dir>/reports)")
    daily.add_argument("--email", action="store_true",
                       help="also e-mail it to reports.email_to (the DSL)")
    config_arg(daily)
    daily.set_defaults(func=_with_store(cmd_daily), send_email=send_email)

    weekly = kinds.add_parser(
        "weekly",
        help="write the weekly summary for leaders and governors (no names)",
        description="Write weekly-summary-YYYY-MM-DD.html and .csv (named by the week's Monday): "
        "safeguarding concerns by theme, group and severity, against the week before. No "
        "names, no addresses.",
    )
    weekly.add_argument("--week-of", metavar="DATE",
                        help="any day of the week to summarise (default: last week)")
    weekly.add_argument("--out", metavar="DIR")
    weekly.add_argument("--email", action="store_true",
                        help="also e-mail it to reports.weekly_email_to")
    config_arg(weekly)
    weekly.set_defaults(func=_with_store(cmd_weekly), send_email=send_email)

    context = kinds.add_parser(
        "context",
        help="a person's browsing either side of an incident",
        description="Print every event of one person from MINUTES before to MINUTES after a "
        "moment: the event a reference points to (from an alert or a block page), or a time "
        "given with --at for a user, device or IP address.",
    )
    who = context.add_mutually_exclusive_group(required=True)
    who.add_argument("--reference", metavar="REF", help="an alert's or block page's reference")
    who.add_argument("--user", metavar="NAME")
    who.add_argument("--device", metavar="NAME", help="a device with nobody signed in")
    who.add_argument("--ip", metavar="ADDRESS", help="an address with no user or device known")
    context.add_argument("--at", metavar="TIME",
                         help="the moment, e.g. 2026-03-02T10:15 (school time unless it has an "
                         "offset); required with --user, --device and --ip")
    context.add_argument("--minutes", type=int, default=60, metavar="N",
                         help="how far either side (default 60)")
    context.add_argument("--json", action="store_true", help="one JSON object per event")
    config_arg(context)
    context.set_defaults(func=_with_store(cmd_context))

    export = sub.add_parser(
        "export",
        help="write one person's records for a subject-access request",
        description="Write every record the store holds for one user as CSV and JSON, each "
        "opening with a block saying what it contains and what it leaves out.",
    )
    what = export.add_subparsers(dest="export", metavar="WHAT", required=True)
    user = what.add_parser("user", help="one user's records",
                           description="Write export-NAME-TIME.csv and .json for one user.")
    user.add_argument("name", metavar="NAME", help="the user name as the gateway records it")
    user.add_argument("--out", metavar="DIR", help="folder (default: <data_dir>/exports)")
    user.add_argument("--since", metavar="DATE", help="only records from this day (school time)")
    config_arg(user)
    user.set_defaults(func=_with_store(cmd_export_user))

    purge_cmd = sub.add_parser(
        "purge",
        help="delete records older than the retention periods now",
        description="Apply the retention periods now (the gateway also does it every night at "
        "reports.purge_at): allowed browsing, blocks, safeguarding events and alerts each "
        "have their own period. Deletes in small batches; safe while the gateway runs.",
    )
    purge_cmd.add_argument("--dry-run", action="store_true",
                           help="count what would be deleted, delete nothing")
    config_arg(purge_cmd)
    purge_cmd.set_defaults(func=_with_store(cmd_purge))


def _with_store(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command; a store that cannot be read is one line and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except StoreError as e:
            print(f"schoolgate: {e}", file=sys.stderr)
            return 1

    return run


def _day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError([f"{what}: {text!r} is not a date such as 2026-03-02"]) from None


def _moment(text: str, tz: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError([f"--at: {text!r} is not a time such as 2026-03-02T10:15"]) from None
    return value.replace(tzinfo=ZoneInfo(tz)) if value.tzinfo is None else value


def _today(config: Config) -> date:
    return datetime.now(ZoneInfo(config.timezone)).date()


def cmd_daily(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    day = _day(args.date, "--date") if args.date else _today(config) - timedelta(days=1)
    out = Path(args.out) if args.out else config.reports_dir
    report = build_daily(config.database_path, day, config.timezone, config.school_name)
    html_path, csv_path = write_daily(report, out, config.templates)
    print(f"{report.counts_text} on {day}; wrote {html_path} and {csv_path}")
    if args.email:
        return _send(args, config, config.reports.email_to, "reports.email_to",
                     email_parts(report, config.templates), csv_path)
    return 0


def cmd_weekly(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.week_of:
        week_of = _day(args.week_of, "--week-of")
    else:
        week_of = week_start(_today(config)) - timedelta(days=7)
    out = Path(args.out) if args.out else config.reports_dir
    summary = build_weekly(config.database_path, week_of, config.timezone, config.school_name)
    html_path, csv_path = write_weekly(summary, out, config.templates)
    print(f"{counted(summary.total.this_week, 'safeguarding concern')} in the week of "
          f"{summary.week_start} (last week {summary.total.last_week}); wrote {html_path} and "
          f"{csv_path}")
    if args.email:
        return _send(args, config, config.reports.weekly_email_to,
                     "reports.weekly_email_to", weekly_email_parts(summary, config.templates),
                     csv_path)
    return 0


def _send(args: argparse.Namespace, config: Config, to: tuple[str, ...], key: str,
          parts: tuple[str, str, str], attachment: Path) -> int:
    if args.send_email is None:
        print("schoolgate: e-mail is not set up in this installation (see the alerts "
              "configuration); the report files were written", file=sys.stderr)
        return 1
    if not to:
        print(f"schoolgate: {key} lists nobody to e-mail; the report files were written",
              file=sys.stderr)
        return 2
    subject, text, html = parts
    try:
        args.send_email(config, to, subject, text, html, (attachment,))
    except Exception as e:  # noqa: BLE001 - one line, not a traceback
        print(f"schoolgate: sending the e-mail to {', '.join(to)} failed: {e}", file=sys.stderr)
        return 1
    print(f"e-mailed to {', '.join(to)}")
    return 0


def cmd_context(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.minutes < 1 or args.minutes > 24 * 60:
        raise ConfigError(["--minutes: must be between 1 and 1440"])
    if args.reference:
        around = context_for_reference(config.database_path, args.reference, args.minutes)
        if around is None:
            print(f"schoolgate: no event with reference {args.reference}", file=sys.stderr)
            return 1
    else:
        if not args.at:
            raise ConfigError(["--at: give the moment to look around, e.g. --at 2026-03-02T10:15"])
        kind = "user" if args.user else "device" if args.device else "ip"
        person = Person(kind, args.user or args.device or args.ip)
        around = context_around(config.database_path, person, _moment(args.at, config.timezone),
                                args.minutes)
    if args.json:
        zone = ZoneInfo(config.timezone)
        for e in around.events:
            print(json.dumps({
                "id": e.id, "time": e.ts.astimezone(zone).isoformat(timespec="seconds"),
                "person": around.person.name, "person_kind": around.person.kind,
                "group": e.group, "action": e.action, "host": e.host, "url": e.url,
                "engine": e.engine, "search_term": e.search_term, "theme": e.theme,
                "severity": e.severity, "categories": e.categories,
                "illegal_list": e.illegal_list, "reference": e.reference,
                "incident": e.id in around.incident_ids,
            }, ensure_ascii=False))
    else:
        sys.stdout.write(format_context(around, config.timezone))
    return 0


def cmd_export_user(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    since = (local_midnight(_day(args.since, "--since"), ZoneInfo(config.timezone))
             if args.since else None)
    out = Path(args.out) if args.out else config.data_dir / "exports"
    policy = config.reports.retention
    done = export_user(
        config.database_path, args.name, out, tz=config.timezone,
        school_name=config.school_name, since=since,
        retention=(f"Records are kept for: allowed browsing {counted(policy.allowed.days, 'day')}, "
                   f"blocks {counted(policy.blocked.days, 'day')}, safeguarding events "
                   f"{counted(policy.safeguarding.days, 'day')}."),
    )
    print(f"{counted(done.rows, 'record')} for {args.name}; wrote {done.csv_path} and "
          f"{done.json_path}")
    if done.rows == 0:
        # Still written: "we hold no records" is a complete answer to a subject-access request.
        print(f"schoolgate: note: no records for the user {args.name!r} (user names are as the "
              "gateway records them, e.g. from the proxy login)", file=sys.stderr)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="schoolgate: %(message)s")
    config = load_config(args.config)
    policy = config.reports.retention
    counts = purge(config.database_path, policy, datetime.now(UTC), dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for kind in RETENTION_KINDS:
        print(f"{kind:13} kept {_days(policy.period(kind).days)}   {verb} {counts[kind]:,}")
    print(f"{'requests':13} kept {_days(policy.blocked.days)}   {verb} {counts['requests']:,}"
          "   (decided problem reports)")
    return 0


def _days(days: int) -> str:
    """A retention period for the purge table: the number right-aligned, the unit padded."""
    return f"{days:>4} {'day ' if days == 1 else 'days'}"
