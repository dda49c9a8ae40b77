"""`schoolgate check`: run the filter check (`schoolgate.check`) through the running gateway, print
the table, record the run and write the governors' HTML summary. `register` adds the command to
the main parser.

Exit status: 0 every test passed (warnings allowed); 1 a test failed; 2 no running gateway, its
check token cannot be read, or a usage or configuration problem, printed as one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..check.answers import ADDRESS_FILE, TOKEN_FILE
from ..check.run import format_table, run_check
from ..check.summary import write_summary
from ..config.loader import load_config
from ..config.model import Config, ConfigError
from ..gateway.rules import build_rules
from ..sources.illegal import without_fetching
from ..store import StoreError
from ..store.checks import record_run
from .common import check_groups

__all__ = ["register"]


def register(sub: argparse._SubParsersAction,
             config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    check = sub.add_parser(
        "check",
        help="prove the running gateway filters as configured, group by group",
        description="For each group, send a suite of test requests through the running gateway "
        "as that group: the illegal lists' test addresses, a known site of each blocked "
        "category, circumvention, safe search on Google, Bing, DuckDuckGo and YouTube, and an "
        "education page that must stay open. The gateway answers every one itself: nothing is "
        "fetched from the internet. Prints a table, records the run in the event store and "
        "writes an HTML summary for governors. Exit status 1 when a test fails.",
    )
    check.add_argument("--group", action="append", metavar="GROUP",
                       help="check this group only (repeat for several; default every group)")
    check.add_argument("--json", action="store_true",
                       help="print the run as one JSON object instead of the table")
    check.add_argument("--html", metavar="FILE",
                       help="write the HTML summary here (default: the reports folder, "
                       "filter-check-YYYY-MM-DD.html)")
    check.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                       help="how long to wait for the gateway's answer to each test (default 10)")
    config_arg(check)
    check.set_defaults(func=cmd_check)


class _NoGateway(Exception):
    """No running gateway to check, or its token cannot be read: the message says which."""


def _gateway(config: Config) -> tuple[tuple[str, int], str]:
    """The running gateway's listen address and check token, from its data directory."""
    if config.mode != "regular":
        raise _NoGateway(f"the gateway runs in {config.mode} mode; schoolgate check sends "
                         "proxy requests, which needs mode: regular")
    address_file = config.data_dir / ADDRESS_FILE
    token_file = config.data_dir / TOKEN_FILE
    try:
        text = address_file.read_text(encoding="utf-8").strip()
    except OSError:
        raise _NoGateway(f"no running gateway found ({address_file} is missing: start it with "
                         "schoolgate run)") from None
    host, _, port = text.rpartition(":")
    try:
        address = (host.strip("[]"), int(port))
    except ValueError:
        raise _NoGateway(f"{address_file} does not hold HOST:PORT ({text!r})") from None
    try:
        token = token_file.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise _NoGateway(f"the running gateway wrote no check token ({token_file} is missing); "
                         "restart it with this version of Schoolgate") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _NoGateway(f"cannot read the check token {token_file}: {e}; run schoolgate check "
                         "as the user the gateway runs as (or root)") from None
    try:
        socket.create_connection(address, timeout=5).close()
    except OSError as e:
        raise _NoGateway(f"the gateway at {text} does not answer ({e}); is it running?") from None
    return address, token


def cmd_check(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="schoolgate: %(message)s")
    config = load_config(args.config)
    groups = list(dict.fromkeys(args.group or []))
    check_groups(groups, config)
    if args.timeout <= 0:
        raise ConfigError(["--timeout: must be more than 0 seconds"])
    try:
        address, token = _gateway(config)
    except _NoGateway as e:
        print(f"schoolgate: {e}", file=sys.stderr)
        return 2
    # The canaries are chosen from the same config and lists the gateway reads; the illegal lists
    # from the gateway's last good copy (digests only), to find their test addresses.
    rules = build_rules(config, without_fetching(config))
    run = run_check(config, rules, address, token, groups=groups or None, timeout=args.timeout)
    try:
        run_id = record_run(config.database_path, run)
        run = replace(run, id=run_id)
    except StoreError as e:
        print(f"schoolgate: {e}", file=sys.stderr)
    path = write_summary(config, run, Path(args.html) if args.html else None)
    if args.json:
        out = run.as_dict()
        out["summary"] = str(path)
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(format_table(run))
        print(f"HTML summary for governors: {path}")
        if run.id is not None:
            print(f"Recorded as check run {run.id}.")
    return 0 if run.passed else 1
