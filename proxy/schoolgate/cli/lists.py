"""`schoolgate lists import ut1 SOURCE` and `schoolgate lists show`: bring UT1 category lists
in (`listsimport` does the work), record it in the audit log and make the running gateway use
them; show what every configured list holds. `register` adds both to the CLI.

Exit status as for every command: 0 done; 1 the source could not be fetched or read, or the audit
log not written; 2 a usage or configuration problem, or a refused (unsafe or non-UT1) source.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from ..classify.formats import ListFormat, detect_format, read_list
from ..classify.index import (
    IndexCacheError,
    ListIndex,
    ListSource,
    sources_fingerprint,
    ut1_sources,
)
from ..classify.lists import read_domain_list
from ..config.loader import load_config
from ..config.model import Config, ConfigError
from ..sources.illegal import sources_for
from ..sources.keywords import load_library
from ..sources.lists import cache_path, category_sources
from ..sources.ut1 import (
    KIND,
    SHOWN_PROBLEMS,
    CategoryCounts,
    ImportFailed,
    ImportRefused,
    ImportResult,
    import_ut1,
    read_manifest,
    shown_source,
)
from ..store import StoreError
from ..store.audit import record_change
from .common import apply_now

__all__ = ["lists_report", "print_report", "register"]


# -- lists show ----------------------------------------------------------------------------------


def lists_report(config: Config, now: float | None = None) -> dict[str, Any]:
    """Everything `lists show` prints, as plain data: each configured category's list files
    (entries by kind, bad lines, age), whether the compiled cache is current, the illegal lists
    (size and age of the last good copy; never an entry), the do-not-decrypt lists and the
    keyword library."""

    now = time.time() if now is None else now
    cache = cache_path(config)
    summaries: dict[str, Any] = {}
    try:
        index = ListIndex.load(cache, sources_fingerprint(category_sources(config)))
        summaries = {s.path: s for s in index.summaries}
        cache_state = {"path": str(cache), "current": True, "note": ""}
    except IndexCacheError as e:
        note = "not built yet" if not cache.exists() else str(e).removeprefix(f"{cache}: ")
        cache_state = {"path": str(cache), "current": False, "note": note}

    categories = []
    for category in config.categories.values():
        total = {"domains": 0, "urls": 0, "expressions": 0, "bad_lines": 0}
        lists = []
        for path in category.lists:
            if path.is_dir():
                sources = [ListSource(category.name, s.path, s.format)
                           for s in ut1_sources(path.parent, categories=[path.name])]
                imported = read_manifest(path.parent).get(path.name)
            else:
                sources, imported = [ListSource(category.name, path)], None
            files = [_file_report(s.path, s.format, summaries, now) for s in sources]
            for f in files:
                for key in total:
                    total[key] += f.get(key, 0)
            lists.append({"path": str(path), "folder": path.is_dir(), "imported": imported,
                          "files": files})
        categories.append({"name": category.name, "title": category.title, **total,
                           "lists": lists})

    return {
        "categories": categories,
        "cache": cache_state,
        "illegal_lists": _illegal_report(config, now),
        "do_not_decrypt": {
            "files": [_file_report(p, ListFormat.DOMAINS, {}, now, domain_list=True)
                      for p in config.tls.do_not_decrypt],
            "hosts_in_config": len(config.tls.do_not_decrypt_hosts),
        },
        "keyword_library": _library_report(config),
    }


def _file_report(path: Path, fmt: ListFormat | None, summaries: dict[str, Any], now: float,
                 *, domain_list: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"path": str(path)}
    try:
        st = os.stat(path)
        if domain_list:

            _, summary = read_domain_list(path)
            fmt = ListFormat.DOMAINS
        else:
            fmt = fmt or detect_format(path)
            summary = summaries.get(str(path)) or read_list(path, fmt).summary
    except OSError as e:
        out["error"] = f"cannot be read: {e.strerror or e}"
        return out
    kind = KIND.get(fmt)
    out.update(format=str(fmt), domains=0, urls=0, expressions=0)
    if kind is not None:
        out[kind] = summary.entries
    out.update(
        bad_lines=len(summary.problems),
        problems=[str(p) for p in summary.problems[:SHOWN_PROBLEMS]],
        modified=datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds"),
        age_seconds=round(max(0.0, now - st.st_mtime)),
    )
    return out


def _illegal_report(config: Config, now: float) -> list[dict[str, Any]]:
    """From the gateway's last good copy (digests only): how many entries, how old. Never an
    entry, and never the source address, which may carry the licence holder's token."""
    out = []
    for lst in sources_for(config):
        c = lst.config
        restored = lst.restore()
        age = lst.age(now) if restored else None
        out.append({
            "name": c.name, "title": c.title, "kind": c.kind, "form": c.form,
            "source": "url" if c.source.startswith(("http://", "https://")) else "file",
            "entries": lst.entries if restored else None,
            "loaded_at": (datetime.fromtimestamp(lst.loaded_at, UTC).isoformat(timespec="seconds")
                          if restored and lst.loaded_at else None),
            "age_seconds": round(age) if age is not None else None,
            "stale_after_seconds": round(c.stale_after_seconds),
            "stale": not restored or lst.stale(now),
        })
    return out


def _library_report(config: Config) -> dict[str, Any] | None:
    if config.keyword_library is None:
        return None

    summary = load_library(config.keyword_library).summary()
    return {"folder": str(config.keyword_library), "phrases": summary.phrases,
            "files": summary.files, "problems": summary.problems,
            "by_theme": dict(summary.by_theme)}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown age"
    s = int(seconds)
    for big, big_name, small, small_name in ((86400, "d", 3600, "h"), (3600, "h", 60, "m")):
        if s >= big:
            rest = (s % big) // small
            return f"{s // big}{big_name}" + (f" {rest}{small_name}" if rest else "")
    return f"{s // 60}m" if s >= 60 else f"{s}s"


def print_report(report: dict[str, Any], out: TextIO | None = None) -> None:
    """`lists_report` as text: one line per category, list file, illegal list and theme."""

    def p(text: str = "") -> None:
        print(text, file=out or sys.stdout)

    cache = report["cache"]
    state = "current" if cache["current"] else (
        f"NOT current ({cache['note']}); the gateway rebuilds it at its next start or reload")
    p(f"Categories: {len(report['categories'])}; compiled list cache {cache['path']}: {state}")
    for c in report["categories"]:
        p(f"  {c['name']}{_title(c)}: {_counts(c)}")
        for lst in c["lists"]:
            indent = "    "
            if lst["folder"]:
                imported = lst["imported"]
                note = (f"  (imported {imported['imported_at']} by {imported['by']} from "
                        f"{imported['source']})") if imported else ""
                p(f"    {lst['path']}/{note}")
                indent = "      "
            for f in lst["files"]:
                name = Path(f["path"]).name if lst["folder"] else f["path"]
                p(f"{indent}{name}  {_file_line(f)}")
                for problem in f.get("problems", ()):
                    p(f"{indent}  {problem}")
    p()
    illegal = report["illegal_lists"]
    p(f"Illegal-content lists: {len(illegal) or 'none configured'}")
    for lst in illegal:
        if lst["entries"] is None:
            state = ("NOT LOADED: no last good copy yet "
                     "(the gateway saves one when it loads the list)")
        else:
            state = (f"{_n(lst['entries'], 'entry', 'entries')}, last good copy "
                     f"{_age(lst['age_seconds'])} old" + ("  STALE" if lst["stale"] else ""))
        p(f"  {lst['name']}{_title(lst)}: kind {lst['kind']}, form {lst['form']}, "
          f"{'downloaded' if lst['source'] == 'url' else 'from a file'}; {state}")
    p()
    dnd = report["do_not_decrypt"]
    p(f"Do-not-decrypt lists: {_n(len(dnd['files']), 'file')}, and "
      f"{_n(dnd['hosts_in_config'], 'host')} written in the config")
    for f in dnd["files"]:
        p(f"  {f['path']}  {_file_line(f)}")
        for problem in f.get("problems", ()):
            p(f"    {problem}")
    p()
    library = report["keyword_library"]
    if library is None:
        p("Keyword library: none configured")
        return
    problems = f", {_n(library['problems'], 'problem')}" if library["problems"] else ""
    p(f"Keyword library {library['folder']}: {_n(library['phrases'], 'phrase')} in "
      f"{_n(library['files'], 'file')}{problems}")
    for theme, count in library["by_theme"].items():
        p(f"  {theme}  {_n(count, 'phrase')}")


def _title(d: dict[str, Any]) -> str:
    return "" if d["title"] == d["name"] else " " + json.dumps(d["title"], ensure_ascii=False)


def _n(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


def _counts(d: dict[str, Any]) -> str:
    text = (f"{_n(d['domains'], 'domain')}, {_n(d['urls'], 'url')}, "
            f"{_n(d['expressions'], 'expression')}")
    return text + (f", {_n(d['bad_lines'], 'bad line')}" if d["bad_lines"] else "")


def _file_line(f: dict[str, Any]) -> str:
    """One list file: its entries of the kind it holds, bad lines and age."""
    if "error" in f:
        return f["error"]
    kind = KIND.get(ListFormat(f["format"]))
    if kind is None:  # a UT1 usage file: says black or white, no entries
        text = f"{f['format']} file"
    else:
        text = _n(f[kind], kind[:-1], kind)
        if f["format"] != kind:
            text += f" ({f['format']} format)"
    if f["bad_lines"]:
        text += f", {_n(f['bad_lines'], 'bad line')}"
    return f"{text}; {_age(f['age_seconds'])} old"


# -- the commands --------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction,
             config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `lists import ut1` and `lists show` to the main parser's subcommands."""
    lists = sub.add_parser(
        "lists",
        help="import UT1 category lists, or show what every configured list holds",
        description="Import category lists, and show the lists in use.",
    )
    verbs = lists.add_subparsers(dest="lists_command", metavar="COMMAND", required=True)
    imp = verbs.add_parser(
        "import",
        help="import UT1 categories from a folder, blacklists.tar.gz or its URL (audited)",
        description="Import UT1 categories into --dest (default <data_dir>/lists/ut1): every "
        "category in SOURCE, or those named with --categories. Unsafe archives are refused. The "
        "files are checked with the gateway's readers, swapped in at once, and the import is "
        "recorded in the audit log with its counts. Categories the config already uses from "
        "--dest are reloaded in the running gateway; for the others the YAML to add is printed.",
    )
    imp.add_argument("format", choices=("ut1",), help="the layout of the lists: ut1 (Université "
                     "Toulouse Capitole blacklists: one folder per category)")
    imp.add_argument("source", metavar="SOURCE", help="a folder in UT1 layout, a UT1 tar archive "
                     "(blacklists.tar.gz), or an http(s) URL to one")
    imp.add_argument("--categories", metavar="A,B,...",
                     help="import only these categories (default: every category in SOURCE)")
    imp.add_argument("--dest", metavar="DIR",
                     help="folder to import into (default: <data_dir>/lists/ut1)")
    imp.add_argument("--by", required=True, metavar="NAME", help="who is importing (audited)")
    imp.add_argument("--reason", help="why, in words the audit log will show")
    imp.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                     help="how long to wait for the running gateway to confirm (default 60)")
    config_arg(imp)
    imp.set_defaults(func=cmd_import)

    show = verbs.add_parser(
        "show",
        help="show every configured list: entries, bad lines, age, and the illegal lists' state",
        description="Show every configured category list (entries by kind, bad lines, age), "
        "whether the compiled list cache is current, the illegal-content lists (entries and age "
        "of the last good copy, never an entry), the do-not-decrypt lists and the keyword "
        "library. Reads files only: safe while the gateway runs.",
    )
    show.add_argument("--json", action="store_true", help="print one JSON object")
    config_arg(show)
    show.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    report = lists_report(config)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print_report(report)
    return 0


def cmd_import(args: argparse.Namespace) -> int:

    config = load_config(args.config)
    dest = (Path(os.path.abspath(os.path.expanduser(args.dest))) if args.dest
            else config.data_dir / "lists" / "ut1")
    wanted = None
    if args.categories is not None:
        wanted = [c.strip() for c in args.categories.split(",") if c.strip()]
        if not wanted:
            raise ConfigError(["--categories: name at least one category, such as gambling,vpn"])
    shown = shown_source(args.source)
    try:
        result = import_ut1(args.source, dest, wanted, by=args.by,
                            progress=lambda line: print(line, flush=True))
    except ImportRefused as e:
        try:
            record_change(config.database_path, actor=args.by, action="lists-import",
                          outcome="refused", target=shown, reason=args.reason,
                          detail={"refused": str(e), "source": shown, "destination": str(dest)})
            recorded = "The refusal is recorded in the audit log."
        except StoreError as store_error:
            recorded = f"The refusal could not be recorded: {store_error}"
        print(f"schoolgate: refused: {e}", file=sys.stderr)
        print(f"schoolgate: nothing was written; the lists in use are unchanged. {recorded}",
              file=sys.stderr)
        return 2
    except ImportFailed as e:
        print(f"schoolgate: {e}", file=sys.stderr)
        print("schoolgate: nothing was written; the lists in use are unchanged", file=sys.stderr)
        return e.exit_status
    except OSError as e:  # the destination's disk: full, read-only, not ours to write
        print(f"schoolgate: cannot import into {dest}: {e}", file=sys.stderr)
        print("schoolgate: the lists in use are unchanged", file=sys.stderr)
        return 1

    _print_table(result)
    try:
        record_change(
            config.database_path, actor=args.by, action="lists-import", target=result.source,
            reason=args.reason,
            detail={
                "source": result.source, "destination": str(result.destination),
                "categories": {c.name: c.as_dict() for c in result.categories},
                "entries": result.entries, "seconds": result.seconds,
                # `schoolgate audit` prints these lines under the row.
                "diff": [f"imported {c.name}: {_counts(c.as_dict())}" for c in result.categories],
            },
        )
    except StoreError as e:
        print(f"schoolgate: the lists were imported, but the audit log could not be written: {e}",
              file=sys.stderr)
        return 1
    in_use, other = _in_use(config, result)
    if other:
        _print_snippet(config, result, other)
    if not in_use:
        print("(recorded in the audit log; no configured category uses these folders yet, so "
              "the running rules are unchanged)")
        return 0
    print(f"in use by the config: {', '.join(in_use)} (recorded in the audit log)")

    return apply_now(config, args.timeout)


def _print_table(result: ImportResult) -> None:
    width = max([len("category"), len("total"), *(len(c.name) for c in result.categories)])
    print(f"{'category':<{width}}  {'domains':>10}  {'urls':>8}  {'expressions':>11}  "
          f"{'bad lines':>9}")
    for c in [*result.categories,
              CategoryCounts("total", *(sum(getattr(c, k) for c in result.categories)
                                        for k in ("domains", "urls", "expressions", "bad_lines")))]:
        print(f"{c.name:<{width}}  {c.domains:>10,}  {c.urls:>8,}  {c.expressions:>11,}  "
              f"{c.bad_lines:>9,}")
    for c in result.categories:
        for problem in c.problems:
            print(f"  {problem}")
        if c.bad_lines > len(c.problems):
            print(f"  ... and {_n(c.bad_lines - len(c.problems), 'more bad line')} in {c.name}")
    skipped = (f"; {_n(result.links_skipped, 'alias', 'aliases')} skipped (symbolic links to "
               "other categories)"
               if result.links_skipped else "")
    print(f"imported {_n(result.entries, 'entry', 'entries')} in "
          f"{_n(len(result.categories), 'category', 'categories')} into {result.destination} in "
          f"{result.seconds:.1f}s{skipped}")


def _in_use(config: Config, result: ImportResult) -> tuple[list[str], list[str]]:
    """Which imported categories a configured category reads (from `dest/<name>`), and which
    none does yet."""
    dest = os.path.realpath(result.destination)
    used: set[str] = set()
    for category in config.categories.values():
        for path in category.lists:
            if os.path.realpath(path.parent) == dest:
                used.add(path.name)
    in_use = [c.name for c in result.categories if c.name in used]
    return in_use, [c.name for c in result.categories if c.name not in used]


def _print_snippet(config: Config, result: ImportResult, names: list[str]) -> None:
    new = {}
    extend = []
    for name in names:
        path = str(result.destination / name)
        if name in config.categories:
            extend.append((name, path))
        else:
            title = result.titles.get(name) or name.replace("_", " ").capitalize()
            new[name] = {"title": title, "lists": [path]}
    print()
    if new:
        print(f"To filter with {'it' if len(new) == 1 else 'them'}, add to the categories: section "
              f"of {config.path}, then name {'it' if len(new) == 1 else 'them'} in a group's "
              "blocked_categories:")
        text = yaml.safe_dump({"categories": new}, sort_keys=False, allow_unicode=True,
                              default_flow_style=None, width=100)
        print(text.rstrip())
    for name, path in extend:
        print(f"categories.{name} in {config.path} reads other lists; to filter with the "
              f"import, put {path} in its lists:")
    print()
