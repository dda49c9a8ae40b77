"""What every `schoolgate` command shares: the `--config` argument, reading a date a technician
typed in school time, choosing groups, and telling the running gateway to take up a change
(SIGHUP to the pid it wrote, then its reload status file).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

from ..config.model import Config, ConfigError
from ..sources.localpolicy import ALL_GROUPS

__all__ = ["DEFAULT_CONFIG", "apply_now", "check_groups", "chosen_groups", "config_arg",
           "global_config_arg", "iso_or_none", "school_time", "signal_reload"]

DEFAULT_CONFIG = "config/schoolgate.yaml"


def config_arg(sp: argparse.ArgumentParser) -> None:
    """Add `--config PATH` to a command. Its default is the main parser's (`global_config_arg`),
    so `schoolgate --config PATH why ...` and `schoolgate why --config PATH ...` both work."""
    sp.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=_CONFIG_HELP)


def global_config_arg(p: argparse.ArgumentParser) -> None:
    """Add `--config PATH` before the command (default: $SCHOOLGATE_CONFIG, else the example
    config)."""
    p.add_argument("--config", metavar="PATH",
                   default=os.environ.get("SCHOOLGATE_CONFIG", DEFAULT_CONFIG), help=_CONFIG_HELP)


_CONFIG_HELP = f"configuration file (default: $SCHOOLGATE_CONFIG or {DEFAULT_CONFIG})"


def school_time(text: str, config: Config, what: str) -> datetime:
    """A date or date-time typed by a technician, read in the school's time zone; a day alone
    means the end of that day."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError([f"{what}: {text!r} is not a date such as 2026-12-31 or "
                           "2026-12-31T17:00"]) from None
    if len(text.strip()) == 10:
        value = datetime.combine(value.date(), clock_time(23, 59, 59))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(config.timezone))
    return value


def iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def chosen_groups(args: argparse.Namespace, config: Config) -> list[str]:
    """The groups `--group` names (each checked), or every group for `--all`."""
    if args.all:
        return [ALL_GROUPS]
    check_groups(args.group, config)
    return list(dict.fromkeys(args.group))


def check_groups(names: list[str], config: Config) -> None:
    """Raise the ConfigError `--group` gets for a name the config does not define: the groups
    there are, and the nearest one to a mistyped name."""
    unknown = [g for g in names if g not in config.groups]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(config.groups), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError([f"--group: no group {unknown[0]!r}; defined groups: "
                           f"{', '.join(config.groups)}{hint}"])


def signal_reload(config: Config, timeout: float) -> tuple[str, Any]:
    """Send the running gateway SIGHUP and wait for the reload it starts to finish. Returns
    ("ok", status), ("refused", status), ("timeout", None) or ("no-gateway", why)."""
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


def apply_now(config: Config, timeout: float) -> int:
    """Signal the running gateway to reload now and wait for its answer. Without one running,
    the change takes effect when it starts (the file watcher covers a missed signal)."""
    outcome, result = signal_reload(config, timeout)
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
