"""The category lists a config names, compiled into one `ListIndex` and cached on disk, and the
`Classifier` built on them. Also a child-process entry point that builds the cache:
``python -m schoolgate.sources.lists CONFIG``.

A reload of a million-entry set spends up to half a second in single C calls (sorting the hash
arrays) that hold the GIL; in a thread of the gateway that would stall every connection for that
long. So the gateway runs this module as a child process, which writes the cache, and then only
loads the finished arrays (about 20 ms). Start-up uses the same child when the cache is not
current: building the full UT1 set in the gateway's own process left it at 193 MiB resident
(309 MiB at the peak) for good, against 115 MiB when the same index is loaded from the cache, and
every worker of `schoolgate run --workers N` would pay that. Exit status: 0 built or already
current, 2 config error.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..classify import NO_DECRYPT, Classifier
from ..classify.illegal import IllegalLists
from ..classify.index import (
    IndexCacheError,
    ListIndex,
    ListSource,
    sources_fingerprint,
    ut1_sources,
)
from ..classify.library import KeywordLibrary
from ..config.loader import load_config
from ..config.model import Config, ConfigError

__all__ = ["build_classifier", "builder_command", "cache_path", "category_sources"]

log = logging.getLogger("schoolgate.lists")


def cache_path(config: Config) -> Path:
    return config.data_dir / "cache" / "lists.idx"


def category_sources(config: Config) -> list[ListSource]:
    """Every list the config names, with its category: each category's files, and the
    do-not-decrypt lists and hosts (category `NO_DECRYPT`). A folder is a UT1 category folder
    (`domains`, `domains.N`, `urls`, `expressions`, `usage`)."""
    sources: list[ListSource] = []
    named = [(c.name, path) for c in config.categories.values() for path in c.lists]
    named += [(NO_DECRYPT, path) for path in config.tls.do_not_decrypt]
    for category, path in named:
        if path.is_dir():
            sources.extend(ListSource(category, s.path, s.format)
                           for s in ut1_sources(path.parent, categories=[path.name]))
        else:
            sources.append(ListSource(category, path))
    if config.tls.do_not_decrypt_hosts:
        sources.append(ListSource(NO_DECRYPT, config.path,
                                  entries=config.tls.do_not_decrypt_hosts))
    return sources


def build_classifier(config: Config, *, cache: bool = False, illegal: IllegalLists | None = None,
                     library: KeywordLibrary | None = None) -> Classifier:
    """The classifier for `config` (blocking: list files are read). With `cache`, the index
    comes from the compiled cache in the data directory when it was built from these very
    files, else it is built and saved there."""
    sources = category_sources(config)
    if not cache:
        return Classifier(ListIndex.build(sources), illegal=illegal, library=library)
    path = cache_path(config)
    new = not path.exists()
    if config.path is not None:
        _build_in_child(config, sources, new=new)
    loaded = ListIndex.load_or_build(sources, path)
    if not loaded.from_cache and not path.exists():
        log.warning("list cache %s: %s", path, loaded.note)  # could not be written
    elif new and not loaded.from_cache:
        # No cache yet (a first start): nothing is wrong, and the start-up has said it is
        # being created.
        log.debug("list cache %s: %s", path, loaded.note)
    elif loaded.note:
        log.info("list cache %s: %s", path, loaded.note)
    classifier = Classifier(loaded.index, illegal=illegal, library=library)
    classifier.loaded_from_cache = loaded.from_cache
    return classifier


def builder_command(config: Config) -> list[str]:
    """The child process that brings the list cache of `config` (a file) up to date."""
    return [sys.executable, "-m", "schoolgate.sources.lists", str(config.path)]


CHILD_BUILD_BYTES = 4 << 20
"""List files larger than this in all are compiled in a child process at start-up; smaller sets
build in a few milliseconds here, less than starting an interpreter costs (about 0.3 s)."""


def _list_bytes(sources: Sequence[ListSource]) -> int:
    total = 0
    for source in sources:
        try:
            total += 0 if source.entries else source.path.stat().st_size
        except OSError:
            pass  # reported by the build itself
    return total


def _build_in_child(config: Config, sources: Sequence[ListSource], *, new: bool) -> None:
    """Bring a stale cache of a large list set up to date in a child process, so this one only
    loads arrays. Any failure is logged and left to `load_or_build`, which then builds here."""
    if _list_bytes(sources) < CHILD_BUILD_BYTES:
        return
    try:
        ListIndex.load(cache_path(config), sources_fingerprint(sources))
        return  # current: nothing to build
    except IndexCacheError:
        pass
    try:
        done = subprocess.run(builder_command(config), capture_output=True, text=True,  # noqa: S603 - our own interpreter and module
                              timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("list cache build in a child process failed (%s); building here", e)
        return
    if done.returncode != 0:
        log.warning("list cache build in a child process failed (%s): %s; building here",
                    done.returncode, done.stderr.strip()[:500])
    else:
        # `new`: the first build, which the start-up announced; otherwise why it was rebuilt.
        log.log(logging.DEBUG if new else logging.INFO, "list cache %s: %s", cache_path(config),
                done.stdout.strip())


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
