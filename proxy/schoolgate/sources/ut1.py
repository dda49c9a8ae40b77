"""Import UT1 category lists from a folder, the UT1 `blacklists.tar.gz` or its URL: every archive
member is checked before anything is written, the chosen categories are copied beside the lists in
use, read with the gateway's own readers, and swapped in with one rename.

Used by `schoolgate lists import ut1` (`lists_cli`); no mitmproxy, no store.
"""

from __future__ import annotations

import base64
import difflib
import fcntl
import http.client
import json
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPMessage
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .. import __version__
from ..classify.formats import ListFormat, read_list, read_ut1_folder
from ..classify.index import ut1_sources
from ..classify.lists import ListProblem

__all__ = [
    "MANIFEST",
    "CategoryCounts",
    "ImportFailed",
    "ImportRefused",
    "ImportResult",
    "import_ut1",
    "read_manifest",
    "shown_source",
]

MAX_DOWNLOAD_BYTES = 512 << 20
"""A download larger than this is refused. UT1's whole blacklists.tar.gz is about 25 MB."""
MAX_UNPACKED_BYTES = 4 << 30
"""An archive whose files add up to more than this is refused (a decompression bomb)."""
MAX_MEMBERS = 100_000
"""An archive with more files than this is refused (UT1's has a few hundred)."""
DOWNLOAD_TIMEOUT = 60.0
"""Seconds to wait for the server at each step (connect, each read)."""
DOWNLOAD_DEADLINE = 1800.0
"""Seconds the whole download may take."""
MANIFEST = ".schoolgate-import.json"
"""Written into every imported folder: what each category came from, when and by whom. Its
presence is also what lets a later import replace the folder."""
SHOWN_PROBLEMS = 3
"""Bad lines shown per category (all are counted)."""

_LIST_FILE = re.compile(r"(?:domains|urls)(?:\.\d+)?|expressions|very_restrictive_expression|usage")
KIND = {ListFormat.DOMAINS: "domains", ListFormat.HOSTS: "domains", ListFormat.ADBLOCK: "domains",
        ListFormat.URLS: "urls", ListFormat.EXPRESSIONS: "expressions"}
"""Which count a list format's entries go to."""


class ImportRefused(Exception):
    """The source is unsafe or is not UT1 lists: an archive member with an absolute path, a `..`
    or a link leading outside it, a device file, too large, or no category folders. Nothing was
    written and the lists in use are unchanged; the refusal is recorded in the audit log. Get the
    lists from their publisher and import again."""


class ImportFailed(Exception):
    """The source could not be fetched or read, a category asked for is not in it, or --dest
    is a folder this command did not make. Nothing was written; fix what the message says and run
    the command again."""

    def __init__(self, message: str, exit_status: int = 1):
        super().__init__(message)
        self.exit_status = exit_status
        """1 for a failure (network, disk), 2 for a usage error."""


@dataclass(frozen=True, slots=True)
class CategoryCounts:
    """What one imported category holds, as the gateway's readers count it."""

    name: str
    domains: int = 0
    urls: int = 0
    expressions: int = 0
    bad_lines: int = 0
    """Lines the readers skip (a usage file saying neither black nor white counts as one)."""
    problems: tuple[str, ...] = ()
    """The first few bad lines, `file:line: what is wrong`, with the file's final path."""

    @property
    def entries(self) -> int:
        return self.domains + self.urls + self.expressions

    def as_dict(self) -> dict[str, int]:
        return {"domains": self.domains, "urls": self.urls, "expressions": self.expressions,
                "bad_lines": self.bad_lines}


@dataclass(frozen=True, slots=True)
class ImportResult:
    """One finished import."""

    source: str
    """As recorded: an absolute path, or the URL without any user name or password."""
    destination: Path
    categories: tuple[CategoryCounts, ...]
    seconds: float
    titles: dict[str, str] = field(default_factory=dict)
    """English names from UT1's `global_usage`, by category, when the source has one."""
    links_skipped: int = 0
    """Symbolic links in the source (UT1's aliases such as porn -> adult), not imported."""

    @property
    def entries(self) -> int:
        return sum(c.entries for c in self.categories)


def shown_source(source: str) -> str:
    """`source` as it may be printed and recorded: a URL loses any user name and password (an
    authenticated download link must not end up in the audit log), a path becomes absolute."""
    if "://" in source:
        parts = urllib.parse.urlsplit(source)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return os.path.abspath(os.path.expanduser(source))


def import_ut1(source: str, dest: Path, categories: Sequence[str] | None = None, *,
               by: str = "", progress: Callable[[str], None] = lambda _: None) -> ImportResult:
    """Import UT1 categories from `source` (a folder, a tar archive, or an http(s) URL to one)
    into `dest`; `categories` None means every category the source has.

    `dest` becomes a symbolic link to a sibling folder `.NAME.XXXX` holding the category folders;
    a new import builds a new sibling (with the categories it does not replace carried over) and
    swaps the link in one rename, so the gateway reads the old lists or the new, never half of
    each. Raises `ImportRefused` or `ImportFailed` having changed nothing in `dest`, or
    `OSError` when `dest`'s disk cannot be written (nothing changed then either).
    """
    started = time.monotonic()
    shown = shown_source(source)
    dest = Path(os.path.abspath(os.path.expanduser(dest)))
    _current_version(dest)  # refuse a --dest this command did not make before creating anything
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.parent), tempfile.TemporaryDirectory(
        prefix=f".{dest.name}.work-", dir=dest.parent
    ) as work:
        current = _current_version(dest)  # again: another import may have finished meanwhile
        with _open_source(source, shown, Path(work), progress) as source_kind:
            chosen = _choose(source_kind.categories(), categories, shown)
            titles = source_kind.titles()
            staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
            try:
                os.chmod(staging, 0o755)  # mkdtemp makes 0700; the gateway may be another user  # noqa: S103 - a folder others must read
                source_kind.copy(chosen, staging)
                for path in staging.rglob("*"):
                    # Now, not the archive's times: the list cache and the gateway's file
                    # watcher both notice a changed file by its size and modification time.
                    os.utime(path)
                carried = _carry_over(current, staging, set(chosen))
                counts = tuple(_count(staging, name, dest) for name in chosen)
                _write_manifest(staging, current, carried, counts, shown, by)
                _swap(dest, staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        _remove_old_versions(dest, keep={staging.name, Path(work).name})
    return ImportResult(shown, dest, counts, round(time.monotonic() - started, 2), titles,
                        source_kind.links_skipped)


@contextmanager
def _open_source(source: str, shown: str, work: Path,
                 progress: Callable[[str], None]) -> Iterator[_Source]:
    if "://" in source:
        progress(f"downloading {shown}")
        path = _download(source, shown, work / "download")
        progress(f"downloaded {path.stat().st_size / 1e6:.1f} MB")
        opened: _Source = _Archive(path, shown)
    else:
        path = Path(shown)
        if path.is_dir():
            opened = _Folder(path)
        elif path.is_file():
            opened = _Archive(path, shown)
        else:
            raise ImportFailed(f"{shown} does not exist", exit_status=2)
    try:
        yield opened
    finally:
        opened.close()


def _remove_old_versions(dest: Path, keep: set[str]) -> None:
    """Remove the folder the link pointed to before, and what an interrupted import left (its
    names are ours: `.NAME.` and eight characters, `.NAME.work-...`, `.NAME.link-PID`). Runs
    under the lock, so no other import is using any of them."""
    ours = re.compile(rf"\.{re.escape(dest.name)}\.(?:[a-z0-9_]{{8}}|work-[a-z0-9_]{{8}}|link-\d+)")
    for entry in dest.parent.iterdir():
        if entry.name in keep or not ours.fullmatch(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _choose(available: list[str], wanted: Sequence[str] | None, shown: str) -> list[str]:
    if not available:
        raise ImportRefused(f"{shown} holds no UT1 category folders (folders such as gambling/ "
                            "holding domains, urls or expressions files)")
    if wanted is None:
        return available
    missing = [c for c in wanted if c not in available]
    if missing:
        hint = difflib.get_close_matches(missing[0], available, n=1)
        also = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ImportFailed(f"--categories: {shown} has no category {missing[0]!r}{also} "
                           f"(it has {len(available)}: {', '.join(available)})", exit_status=2)
    return list(dict.fromkeys(wanted))


def _current_version(dest: Path) -> Path | None:
    """The folder `dest` points to now, or None on a first import. Refuses a `dest` this
    command did not make, so a mistyped --dest can never replace someone's files."""
    if dest.is_symlink():
        target = os.readlink(dest)
        folder = dest.parent / target
        if "/" in target or not target.startswith(f".{dest.name}.") or not (
            folder / MANIFEST
        ).is_file():
            raise ImportFailed(f"--dest {dest} is a symbolic link to {target}, which "
                               "`schoolgate lists import` did not make; choose a new folder",
                               exit_status=2)
        return folder
    if dest.is_dir() and not any(dest.iterdir()):
        return None
    if dest.exists():
        raise ImportFailed(f"--dest {dest} already exists and was not made by `schoolgate lists "
                           "import`; choose a new or empty folder", exit_status=2)
    return None


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Two imports into one folder at once must not swap over each other (a lock on the folder
    itself, so nothing is left behind)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _swap(dest: Path, staging: Path) -> None:
    """Point `dest` at `staging` in one rename of a symbolic link (relative, so the data folder
    can move)."""
    link = dest.parent / f".{dest.name}.link-{os.getpid()}"
    link.unlink(missing_ok=True)
    os.symlink(staging.name, link)
    try:
        if dest.is_dir() and not dest.is_symlink():
            dest.rmdir()  # an empty folder (checked): a rename cannot put a link over it
        os.replace(link, dest)
    except BaseException:
        link.unlink(missing_ok=True)
        raise


def _carry_over(current: Path | None, staging: Path, chosen: set[str]) -> list[str]:
    """Bring the categories this import does not replace from the current folder: importing
    `gambling` alone must not take away the `games` the config still uses. Hard links where the
    file system allows (same size and time: the list cache stays current for them)."""
    if current is None:
        return []
    carried = []
    for folder in sorted(current.iterdir()):
        if not folder.is_dir() or folder.is_symlink() or folder.name in chosen:
            continue
        (staging / folder.name).mkdir()
        for f in folder.iterdir():
            if f.is_file() and not f.is_symlink():
                try:
                    os.link(f, staging / folder.name / f.name)
                except OSError:
                    shutil.copy2(f, staging / folder.name / f.name)
        carried.append(folder.name)
    return carried


def _count(staging: Path, name: str, dest: Path) -> CategoryCounts:
    """Read one staged category with the gateway's readers (the files `ut1_sources` gives the
    index), counting entries by kind and bad lines, named by their final path."""
    counts = {"domains": 0, "urls": 0, "expressions": 0}
    bad = 0
    shown: list[str] = []
    for source in ut1_sources(staging, categories=[name]):
        try:
            parsed = read_list(source.path, source.format)
        except OSError as e:
            raise ImportFailed(f"cannot read {source.path}: {e.strerror or e}") from None
        if (kind := KIND.get(parsed.format)) is not None:
            counts[kind] += parsed.summary.entries
        bad += len(parsed.summary.problems)
        final = str(dest / Path(source.path).relative_to(staging))
        for p in parsed.summary.problems[: SHOWN_PROBLEMS - len(shown)]:
            shown.append(str(ListProblem(final, p.line, p.message)))
    return CategoryCounts(name, counts["domains"], counts["urls"], counts["expressions"], bad,
                          tuple(shown))


def _write_manifest(staging: Path, current: Path | None, carried: list[str],
                    counts: Sequence[CategoryCounts], shown: str, by: str) -> None:
    previous: dict[str, Any] = {}
    if current is not None:
        try:
            previous = json.loads((current / MANIFEST).read_text(encoding="utf-8"))["categories"]
        except (OSError, ValueError, KeyError, TypeError):
            previous = {}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    categories = {name: previous[name] for name in carried if name in previous}
    for c in counts:
        categories[c.name] = {"source": shown, "imported_at": now, "by": by, **c.as_dict()}
    (staging / MANIFEST).write_text(
        json.dumps({"version": 1, "categories": dict(sorted(categories.items()))}, indent=2,
                   ensure_ascii=False) + "\n", encoding="utf-8")


def read_manifest(folder: Path) -> dict[str, Any]:
    """What `lists import` recorded about each category in `folder` ({} if nothing)."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return dict(data["categories"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _parse_titles(text: str) -> dict[str, str]:
    """English names from UT1's `global_usage` (`NAME: adult` ... `NAME EN: Adult (X)`)."""
    titles: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or line.startswith("#"):
            continue
        key, value = key.strip(), value.strip()
        if key == "NAME":
            name = value
        elif key == "NAME EN" and name and value:
            titles[name] = value
    return titles


# -- sources -------------------------------------------------------------------------------------


class _Source:
    links_skipped = 0

    def close(self) -> None:
        pass

    def categories(self) -> list[str]:
        raise NotImplementedError

    def copy(self, names: list[str], staging: Path) -> None:
        raise NotImplementedError

    def titles(self) -> dict[str, str]:
        return {}


class _Folder(_Source):
    """A folder in UT1 layout (the one holding the category folders, or a folder holding
    `blacklists/`), or one category folder."""

    def __init__(self, path: Path):
        self.only: str | None = None
        if _has_list_files(path):
            self.root, self.only = path.parent, path.name
        elif _ut1_categories(path):
            self.root = path
        else:
            inner = [d for d in sorted(path.iterdir()) if d.is_dir() and not d.is_symlink()
                     and _ut1_categories(d)]
            if len(inner) != 1:
                raise ImportRefused(f"{path} holds no UT1 category folders (folders such as "
                                    "gambling/ holding domains, urls or expressions files)")
            self.root = inner[0]
        self.links_skipped = sum(1 for d in self.root.iterdir() if d.is_symlink())

    def categories(self) -> list[str]:
        names = _ut1_categories(self.root)
        return [n for n in names if n == self.only] if self.only else names

    def copy(self, names: list[str], staging: Path) -> None:
        for category in read_ut1_folder(self.root):
            if category.name not in names:
                continue
            (staging / category.name).mkdir()
            for f in sorted(category.folder.iterdir()):
                if _LIST_FILE.fullmatch(f.name) and f.is_file() and not f.is_symlink():
                    try:
                        shutil.copyfile(f, staging / category.name / f.name)
                    except OSError as e:
                        raise ImportFailed(f"cannot copy {f}: {e.strerror or e}") from None

    def titles(self) -> dict[str, str]:
        try:
            return _parse_titles((self.root / "global_usage").read_text("utf-8", "replace"))
        except OSError:
            return {}


def _has_list_files(folder: Path) -> bool:
    return any(_LIST_FILE.fullmatch(f.name) and f.is_file() for f in folder.iterdir())


def _ut1_categories(root: Path) -> list[str]:
    try:
        return [c.name for c in read_ut1_folder(root)]
    except OSError:
        return []


class _Archive(_Source):
    """A tar archive (gzip, bzip2 or xz, or none), such as UT1's blacklists.tar.gz. Every member
    is checked before anything is written; only plain list files are extracted."""

    def __init__(self, path: Path, shown: str):
        self.shown = shown
        try:
            self.tar = tarfile.open(path, "r:*")
        except (tarfile.TarError, EOFError, zlib.error, OSError):
            raise ImportRefused(f"{shown} is not a tar archive (plain, or compressed with gzip, "
                                "bzip2 or xz), such as UT1's blacklists.tar.gz") from None
        try:
            self._read_members()
        except BaseException:
            self.tar.close()
            raise

    def close(self) -> None:
        self.tar.close()

    def _read_members(self) -> None:
        shown = self.shown
        members: list[tarfile.TarInfo] = []
        try:
            for m in self.tar:  # one by one, so a flood of members stops at the limit
                members.append(m)
                if len(members) > MAX_MEMBERS:
                    raise ImportRefused(f"{shown} has more than {MAX_MEMBERS:,} files; UT1's has "
                                        "a few hundred")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise ImportRefused(f"{shown} is damaged: {e}") from None
        self.links_skipped = _check_members(members, shown)
        # The UT1 root is the folder holding the category folders: `blacklists/` upstream.
        found: dict[tuple[str, ...], dict[str, list[tarfile.TarInfo]]] = {}
        self.global_usage: tarfile.TarInfo | None = None
        for m in members:
            if not m.isfile():
                continue
            parts = PurePosixPath(m.name).parts
            if len(parts) >= 2 and _LIST_FILE.fullmatch(parts[-1]):
                found.setdefault(parts[:-2], {}).setdefault(parts[-2], []).append(m)
        # The root with the most categories (a stray `usage` file elsewhere is not a root).
        self.root = max(found, key=lambda r: (len(found[r]), -len(r))) if found else ()
        self.members = found.get(self.root, {})
        for m in members:
            if m.isfile() and PurePosixPath(m.name).parts == (*self.root, "global_usage"):
                self.global_usage = m

    def categories(self) -> list[str]:
        return sorted(self.members)

    def copy(self, names: list[str], staging: Path) -> None:
        # Renamed to CATEGORY/FILE (no `blacklists/`), in archive order: a gzip stream can only
        # be read forwards, and each step back would decompress it again from the start.
        chosen = [m.replace(name=f"{name}/{PurePosixPath(m.name).name}", deep=False)
                  for name in names for m in self.members[name]]
        chosen.sort(key=lambda m: m.offset)
        try:
            # The members were checked one by one already; the "data" filter checks again.
            self.tar.extractall(staging, members=chosen, filter="data")
        except tarfile.FilterError as e:
            raise ImportRefused(f"{self.shown}: {e}") from None
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise ImportFailed(f"cannot unpack {self.shown}: {e}") from None

    def titles(self) -> dict[str, str]:
        if self.global_usage is None:
            return {}
        f = self.tar.extractfile(self.global_usage)
        return _parse_titles(f.read().decode("utf-8", "replace")) if f else {}


def _check_members(members: list[tarfile.TarInfo], shown: str) -> int:
    """Refuse the whole archive if any member could write outside the folder it is unpacked
    in, or is not a plain file, folder or link; return how many (harmless) links it has. Links
    are never extracted: a link inside the tree is an alias (UT1's porn -> adult), skipped."""
    total = 0
    links = 0
    for m in members:
        name = m.name
        where = f"{shown}: member {name!r}"
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            raise ImportRefused(f"{where} has an absolute path")
        if ".." in re.split(r"[/\\]", name):
            raise ImportRefused(f"{where} climbs out of the archive's folder with '..'")
        if m.issym() or m.islnk():
            target = m.linkname
            # A symbolic link is relative to its own folder; a hard link names another member.
            base = posixpath.dirname(name) if m.issym() else ""
            resolved = posixpath.normpath(posixpath.join(base, target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                kind = "symbolic" if m.issym() else "hard"
                raise ImportRefused(f"{where} is a {kind} link to {target!r}, outside the archive")
            links += 1
        elif m.ischr() or m.isblk() or m.isfifo():
            raise ImportRefused(f"{where} is a device file")
        elif not (m.isfile() or m.isdir()):
            raise ImportRefused(f"{where} is not a plain file or folder")
        else:
            total += m.size if m.isfile() else 0
    if total > MAX_UNPACKED_BYTES:
        raise ImportRefused(f"{shown} unpacks to {_bytes(total)}, more than the "
                            f"{_bytes(MAX_UNPACKED_BYTES)} allowed")
    return links


# -- downloading -------------------------------------------------------------------------------


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http and https only (urllib would also follow one to ftp)."""

    def http_error_302(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                       headers: HTTPMessage) -> Any:  # noqa: ANN401 - urllib's own type
        target = headers.get("location") or headers.get("uri")
        if target is not None:
            scheme = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, target)).scheme
            if scheme not in ("http", "https"):
                fp.close()
                raise ImportRefused(f"{shown_source(req.full_url)} redirects to a {scheme}: "
                                    "address; only http and https are followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _download(url: str, shown: str, into: Path) -> Path:
    """Fetch `url` into the file `into`, within the size and time limits."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise ImportRefused(f"{shown}: only http and https addresses are fetched, not {scheme}:")
    opener = urllib.request.build_opener(_HttpOnlyRedirects())
    parts = urllib.parse.urlsplit(url)
    request = urllib.request.Request(  # noqa: S310 - http(s) checked by the caller
        urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])),
        headers={"User-Agent": f"Schoolgate/{__version__}"},
    )
    if parts.username is not None:
        # urllib does not send a URL's user name and password itself. Unredirected: a redirect
        # to another server must not carry them along.
        user = urllib.parse.unquote(parts.username)
        login = f"{user}:{urllib.parse.unquote(parts.password or '')}"
        request.add_unredirected_header(
            "Authorization", "Basic " + base64.b64encode(login.encode()).decode("ascii"))
    deadline = time.monotonic() + DOWNLOAD_DEADLINE
    try:
        with opener.open(request, timeout=DOWNLOAD_TIMEOUT) as r, open(into, "wb") as f:
            try:
                length = int(r.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
            if length > MAX_DOWNLOAD_BYTES:
                raise ImportRefused(_too_big(shown, length))
            size = 0
            while chunk := r.read(1 << 20):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise ImportRefused(_too_big(shown, size))
                if time.monotonic() > deadline:
                    raise ImportFailed(f"downloading {shown} took more than "
                                       f"{DOWNLOAD_DEADLINE:.0f}s; try again later")
                f.write(chunk)
    except urllib.error.HTTPError as e:
        raise ImportFailed(f"cannot download {shown}: the server answered {e.code} {e.reason}") \
            from None
    except urllib.error.URLError as e:
        raise ImportFailed(f"cannot download {shown}: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise ImportFailed(f"cannot download {shown}: {e or type(e).__name__}") from None
    return into


def _too_big(shown: str, size: int) -> str:
    return (f"{shown} is larger than the {_bytes(MAX_DOWNLOAD_BYTES)} allowed ({_bytes(size)} "
            "or more); UT1's blacklists.tar.gz is about 25 MB")


def _bytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n:,} bytes"
