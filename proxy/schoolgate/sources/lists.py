"""Build the compiled list cache in a separate process: ``python -m schoolgate.sources.lists CONFIG``.

A reload of a million-entry set spends up to half a second in single C calls (sorting the hash
arrays) that hold the GIL; in a thread of the gateway that would stall every connection for that
long. So the gateway runs this module as a child process, which writes the cache, and then only
loads the finished arrays (about 20 ms). Exit status: 0 built or already current, 2 config error.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..classify import category_sources
from ..classify.index import ListIndex
from ..config.model import Config, ConfigError
from ..config.loader import load_config


def cache_path(config: Config) -> Path:
    return config.data_dir / "cache" / "lists.idx"


def main(argv: list[str]) -> int:
    try:
        config = load_config(argv[0])
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 2
    loaded = ListIndex.load_or_build(category_sources(config), cache_path(config))
    print("current" if loaded.from_cache else f"built: {loaded.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
