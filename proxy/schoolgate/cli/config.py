"""`schoolgate config check`: everything `schoolgate run` would refuse in a config, found without
starting the gateway or touching the network: the file itself, the category lists and keyword
library it names, the identity files, the illegal lists, the local allow and block entries, and
the e-mail templates. `make check-config` runs it. `register` adds the command.

Exit status: 0 the gateway would start with it (warnings, such as skipped list lines, allowed);
2 a problem, one line each, naming the file and line where there is one: something start-up or a
reload refuses, or a school's template the gateway could not use (it would show its own).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..alerts.messages import AlertTemplates, TemplateError, email_folder
from ..classify.illegal import IllegalLists
from ..config.loader import load_config
from ..config.model import Config, ConfigError
from ..gateway.rules import Rules, build_rules
from ..identify.maps import IpUserMap
from ..sources.illegal import sources_for

__all__ = ["check_config", "register"]


def register(sub: argparse._SubParsersAction,
             config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    group = sub.add_parser(
        "config",
        help="check a configuration before starting the gateway with it",
        description="Work with the configuration file.",
    )
    verbs = group.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    check = verbs.add_parser(
        "check",
        help="report everything the gateway would refuse in the config, without starting it",
        description="Read the config file and everything it names as the gateway does at "
        "start-up (category lists, keyword library, identity files, illegal lists, local allow "
        "and block entries, e-mail templates) and report every problem with its file and "
        "line. Nothing is downloaded: an illegal list with a URL source and no last good copy "
        "yet is a warning. Exit status 2 when there is a problem: something the gateway "
        "would refuse, or a template of the school's it could not use.",
    )
    config_arg(check)
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # a ConfigError is printed by main, status 2
    problems, warnings, rules = check_config(config)
    for warning in warnings:
        print(f"schoolgate: warning: {warning}", file=sys.stderr)
    if problems or rules is None:
        raise ConfigError(problems)
    c = rules.config
    print(f"{config.path}: no problems; the gateway would start with it "
          f"({_n(len(c.groups), 'group')}, {_n(len(c.categories), 'category', 'categories')}, "
          f"{_n(len(c.illegal_lists), 'illegal list')}"
          + (f", {_n(len(warnings), 'warning')} above" if warnings else "") + ")")
    return 0


def check_config(config: Config) -> tuple[list[str], list[str], Rules | None]:
    """(problems, warnings, the rules built) for a loaded config. A problem is what start-up
    or a reload refuses, or what the gateway logs as an error (a school's template it cannot
    use); a warning is what it logs and works around (a bad list line it skips)."""
    problems: list[str] = []
    with _logged() as logged:
        illegal = _illegal_lists(config, problems, logged)
        rules = None
        try:
            # With an IP map to fill, as the gateway's, so the ip_map file is read and checked.
            rules = build_rules(config, illegal, ip_users=IpUserMap())
        except ConfigError as e:
            problems.extend(e.problems)
        if config.alert_routing is not None:
            try:
                AlertTemplates(email_folder(config.alert_routing, config.templates))
            except TemplateError as e:
                problems.extend(f"alerts: {line}" for line in str(e).splitlines())
    problems.extend(r.getMessage() for r in logged if r.levelno >= logging.ERROR)
    warnings = [r.getMessage() for r in logged if r.levelno < logging.ERROR]
    if rules is not None:
        # The bad lines of the category lists, which the gateway logs once it has built them.
        warnings += [str(p) for s in rules.classifier.summaries for p in s.problems]
    return problems, warnings, rules if not problems else None


def _illegal_lists(config: Config, problems: list[str],
                   logged: list[logging.LogRecord]) -> IllegalLists:
    """The illegal lists as start-up loads them (the last good copy, else the source), except
    that a URL is never fetched: without a copy that is a warning, not a problem."""
    lists = []
    for source in sources_for(config):
        if not source.restore():
            if source.config.source.startswith(("http://", "https://")):
                logged.append(logging.makeLogRecord({
                    "levelno": logging.WARNING,
                    "msg": f"illegal list {source.name}: no last good copy yet; the gateway "
                    "downloads it at start-up and does not start if that fails",
                }))
            else:
                mark = len(logged)
                if not source.refresh() and source.entries == 0:
                    # Said once, as start-up says it, not also as the refresh's own error.
                    logged[mark:] = [r for r in logged[mark:] if r.levelno < logging.ERROR]
                    problems.append(f"illegal list {source.name}: {source.last_error} (and no "
                                    "last good copy to fall back on): the gateway would not "
                                    "start")
        lists.append(source.list)
    return IllegalLists(lists)


@contextmanager
def _logged() -> Iterator[list[logging.LogRecord]]:
    """The warnings and errors Schoolgate logs meanwhile, kept instead of printed."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("schoolgate")
    handler = Keep(logging.WARNING)
    was = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate = False
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate, _ = was
        logger.setLevel(was[1])


def _n(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"
