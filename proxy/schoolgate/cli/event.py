"""`schoolgate event REFERENCE`: the stored event(s) a block page's reference points to."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from ..config.loader import load_config
from ..reports.reading import printable
from ..store import StoreError, events_by_reference

__all__ = ["register"]


def register(sub: argparse._SubParsersAction,
             config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    event = sub.add_parser(
        "event",
        help="show the stored event(s) for a block page's reference",
        description="Find the event a block page's reference ID points to.",
    )
    event.add_argument("reference", help="the reference on the block page, e.g. 7KQ2M-9XDPA")
    event.add_argument("--json", action="store_true", help="print JSON, one object per line")
    config_arg(event)
    event.set_defaults(func=cmd_event)


def cmd_event(args: argparse.Namespace) -> int:
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
            # One column of names, one of values, whatever the longest name (search_normalised);
            # a line break or terminal escape a pupil typed cannot break the columns.
            width = max(map(len, row))
            for key, value in row.items():
                print(f"{key:<{width}}  {'' if value is None else printable(str(value))}")
            print()
    return 0
