"""The `schoolgate` command: one module per command group, put together here. Nothing else in the
package imports the CLI.

Exit status: 0 success; 1 a runtime failure (or, for `why`, a URL that could not be read);
2 a configuration or usage error, printed as one line per problem and never as a traceback;
141 (128 + SIGPIPE) when whoever reads the output stops early (`schoolgate audit | head`).
"""

from __future__ import annotations

import argparse
import difflib
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import __version__
from ..config.model import ConfigError
from ..reports.mail import send_configured
from . import check, config, event, lists, policy, reports, requests, run, why
from .common import config_arg, global_config_arg

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = ["main", "parser"]

_STDOUT_CLOSED = 128 + getattr(signal, "SIGPIPE", 13)
"""The status a shell reports for a Unix tool whose reader went away (killed by SIGPIPE)."""


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            status = _run(argv)
        finally:
            # Output still buffered fails here, not in the interpreter's last flush, where it
            # would print "Exception ignored ... BrokenPipeError" after we have returned.
            sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    return status


def _run(argv: Sequence[str] | None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not getattr(args, "command", None):
        p.print_help()
        return 0
    try:
        result: int = args.func(args)
        return result
    except ConfigError as e:
        for problem in e.problems:
            print(f"schoolgate: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _stdout_closed() -> int:
    """The reader of our output went away (`schoolgate audit | head -3`): stop quietly, as a
    Unix tool does. Python flushes stdout once more at exit; from now on it goes nowhere, so
    that flush cannot fail too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (stdout replaced): nothing to flush
        pass
    return _STDOUT_CLOSED


class _Parser(argparse.ArgumentParser):
    """argparse with a mistyped command answered with the nearest one ("did you mean `why`?"),
    and its help and messages written like any other output: argparse swallows a failed write,
    so `schoolgate --help | head -1` would end with status 0 where every other command ends as
    a Unix tool does (`main`)."""

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            (file or sys.stderr).write(message)

    def _check_value(self, action: argparse.Action, value: object) -> None:
        if action.choices is None or value in action.choices:
            return
        choices = [str(c) for c in action.choices]
        close = difflib.get_close_matches(str(value), choices, n=1)
        if isinstance(action, argparse._SubParsersAction):
            suggestion = f"; did you mean `{close[0]}`?" if close else ""
            raise argparse.ArgumentError(None, f"unknown command {value!r}{suggestion} "
                                         f"(`{self.prog} --help` lists every command)")
        suggestion = f"; did you mean {close[0]!r}?" if close else ""
        raise argparse.ArgumentError(
            action, f"invalid choice: {value!r} (choose from {', '.join(choices)}){suggestion}")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="schoolgate",
        description="Web filtering and monitoring gateway for schools. "
        "'schoolgate COMMAND --help' describes a command and its options.",
    )
    p.add_argument("--version", action="version", version=f"schoolgate {__version__}")
    # --config before the command (`schoolgate --config PATH why ...`) or after it, as each
    # command also accepts it (`schoolgate why --config PATH ...`); after wins.
    global_config_arg(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run.register(sub, config_arg)
    why.register(sub, config_arg)
    policy.register(sub, config_arg)
    reports.register(sub, config_arg, send_email=send_configured)
    check.register(sub, config_arg)
    requests.register(sub, config_arg)
    lists.register(sub, config_arg)
    event.register(sub, config_arg)
    config.register(sub, config_arg)
    _groups_print_their_help(p)
    return p


def _groups_print_their_help(p: argparse.ArgumentParser) -> None:
    """`schoolgate lists` (a group without its verb) prints the group's verbs, as `schoolgate`
    alone prints the commands: a newcomer exploring gets a list, not a usage error."""
    for child in _subcommands(p):
        if _subcommands(child) and child.get_default("func") is None:
            for action in child._actions:
                if isinstance(action, argparse._SubParsersAction):
                    action.required = False
            child.set_defaults(func=lambda args, group=child: _print_help(group))
        _groups_print_their_help(child)


def _subcommands(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return list(dict.fromkeys(
        child for action in p._actions if isinstance(action, argparse._SubParsersAction)
        for child in action.choices.values()))


def _print_help(group: argparse.ArgumentParser) -> int:
    group.print_help()
    return 0
