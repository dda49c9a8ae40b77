"""The `schoolgate` command: one module per command group, put together here. Nothing else in the
package imports the CLI.

Exit status: 0 success; 1 a runtime failure (or, for `why`, a URL that could not be read);
2 a configuration or usage error, printed as one line per problem and never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..config.model import ConfigError
from ..reports.mail import send_configured
from . import check, event, lists, policy, reports, requests, run, why
from .common import config_arg

__all__ = ["main", "parser"]


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not getattr(args, "command", None):
        p.print_help()
        return 2
    try:
        result: int = args.func(args)
        return result
    except ConfigError as e:
        for problem in e.problems:
            print(f"schoolgate: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="schoolgate",
        description="Web filtering and monitoring gateway for schools.",
    )
    p.add_argument("--version", action="version", version=f"schoolgate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run.register(sub, config_arg)
    why.register(sub, config_arg)
    policy.register(sub, config_arg)
    reports.register(sub, config_arg, send_email=send_configured)
    check.register(sub, config_arg)
    requests.register(sub, config_arg)
    lists.register(sub, config_arg)
    event.register(sub, config_arg)
    return p
