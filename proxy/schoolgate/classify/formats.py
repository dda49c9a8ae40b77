"""Read every list format Schoolgate accepts: plain domain lists, hosts files, adblock rules and
the UT1 folder layout. A bad line becomes a `ListProblem` (file, line, what to do) and is skipped;
every reader returns its entries and a `ListSummary`, whose `str()` is the line a load prints.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

import re2

from .lists import ListProblem, ListSummary
from .urls import URLError, is_ip_address, normalise_host

__all__ = [
    "AdblockEntries",
    "DomainEntries",
    "Expression",
    "ListFormat",
    "ParsedList",
    "UT1Category",
    "UrlEntries",
    "UrlEntry",
    "Usage",
    "compile_expression",
    "detect_format",
    "expression_options",
    "read_adblock",
    "read_domains",
    "read_expressions",
    "read_hosts",
    "read_list",
    "read_urls",
    "read_usage",
    "read_ut1_folder",
    "split_url_entry",
    "strip_url_host_prefix",
]


class ListFormat(StrEnum):
    """The formats a list file can be in; `detect_format` picks one for a file."""

    DOMAINS = "domains"
    """One domain (or IPv4 address) per line; an entry covers the name and every name under it."""
    HOSTS = "hosts"
    """Hosts-file lines, `0.0.0.0 name [name ...]`; every name is blocked."""
    ADBLOCK = "adblock"
    """`||domain^` blocks a domain, `@@||domain^` allows it; other adblock syntax is reported."""
    URLS = "urls"
    """UT1/squidGuard URL list: `host/path` per line, no scheme; a bare host covers the domain."""
    EXPRESSIONS = "expressions"
    """One regular expression per line, matched against the URL without its scheme."""
    USAGE = "usage"
    """UT1 `usage`: whether the category is meant as a black or a white list."""


# -- normalised hosts, fast ----------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_LABEL = r"[a-z0-9_][a-z0-9_-]{0,62}"
# One regex decides whether a line is already a normalised host (what `normalise_host` would
# return unchanged): a canonical dotted quad, or lowercase ASCII labels of 1-63 characters, not
# starting with '-', no empty label, at most 253 characters. All-numeric names other than a
# canonical dotted quad (such as `010.1.1.1`) take the slow path, where `normalise_host` decides.
_FAST_HOST_PATTERN = (
    rf"(?=.{{1,253}}\Z)(?:{_OCTET}(?:\.{_OCTET}){{3}}|(?![0-9.]*\Z){_LABEL}(?:\.{_LABEL})*)"
)
_FAST_HOST_BYTES = re.compile(_FAST_HOST_PATTERN.encode("ascii"), re.S)
_FAST_HOST = re.compile(_FAST_HOST_PATTERN, re.S)

_BOM = b"\xef\xbb\xbf"


def _host(text: str) -> str:
    """Normalise a host name the way `normalise_host` does, skipping it when already normal."""
    if _FAST_HOST.fullmatch(text):
        return text
    return normalise_host(text)


def _read_lines(path: Path) -> list[bytes]:
    """The file's lines as bytes, without the BOM and the final newline; `\\r` is left on."""
    data = path.read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def _decode(raw: bytes, path: str, number: int, summary: ListSummary) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        summary.problems.append(
            ListProblem(path, number, "not valid UTF-8; save the file as UTF-8")
        )
        return None


# -- domain lists ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DomainEntries:
    """Normalised domain names read from one file, in file order: `names[i]` is on `lines[i]`.

    Names are kept as ASCII bytes (what the index hashes), not as one `str` per entry.
    """

    path: str
    names: list[bytes] = field(default_factory=list)
    """Normalised names (lowercase, punycode, canonical IPv4), ASCII bytes."""
    lines: array = field(default_factory=lambda: array("I"))
    """1-based line number of each name."""

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        for name, line in zip(self.names, self.lines, strict=True):
            yield name.decode("ascii"), line


def _domain_problem(text: str) -> str | None:
    """A message for text that can never be a domain entry, or None to let normalise_host try."""
    if "/" in text:
        return f"{text!r} looks like a URL; put it in a URL list (urls), not a domain list"
    if " " in text or "\t" in text:
        return f"{text!r} has spaces; write one domain per line"
    if "*" in text:
        return f"{text!r}: wildcards are not supported; `example.com` already covers its subdomains"
    return None


def read_domains(path: Path) -> tuple[DomainEntries, ListSummary]:
    """Read a plain domain list (UT1 `domains` is one): one name or IP address per line.

    `#` starts a comment; blank lines, CRLF, trailing spaces and a BOM are fine. A leading dot or
    `*.` is dropped (an entry covers its subdomains anyway), IDN becomes punycode, and IPv4 entries
    are kept in canonical form. Lines that are already normalised (all of UT1) skip
    `normalise_host` entirely, which is what makes a million lines quick.
    """
    where = str(path)
    summary = ListSummary(where)
    lines = _read_lines(path)
    fast = _FAST_HOST_BYTES.fullmatch
    if all(map(fast, lines)):
        entries = DomainEntries(where, lines, array("I", range(1, len(lines) + 1)))
    else:
        entries = DomainEntries(where)
        names, numbers = entries.names, entries.lines
        for number, raw in enumerate(lines, start=1):
            if fast(raw):
                names.append(raw)
                numbers.append(number)
                continue
            text = _decode(raw, where, number, summary)
            if text is None:
                continue
            text = text.split("#", 1)[0].strip()
            if not text:
                continue
            if text.startswith("*."):
                text = text[2:]
            if message := _domain_problem(text):
                summary.problems.append(ListProblem(where, number, message))
                continue
            try:
                name = _host(text)
            except URLError as e:
                summary.problems.append(ListProblem(where, number, str(e)))
                continue
            names.append(name.encode("ascii"))
            numbers.append(number)
    summary.entries = len(entries)
    return entries, summary


# -- hosts files -------------------------------------------------------------------------------

# Names every hosts file maps to itself; they are the machine, never a site to block.
_HOSTS_IGNORED = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",  # noqa: S104 - a hosts-file sink, not a bind
    }
)
_SINK_ADDRESSES = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1", "0"})  # noqa: S104 - a hosts-file sink, not a bind


def _is_address(text: str) -> bool:
    return text in _SINK_ADDRESSES or is_ip_address(text)


def read_hosts(path: Path) -> tuple[DomainEntries, ListSummary]:
    """Read a hosts file: `address name [name ...]`, as published by blocklists.

    Every name is an entry whatever the address (blocklists use 0.0.0.0 or 127.0.0.1);
    `localhost` and the other names a machine maps to itself are skipped silently. `#` comments,
    blank lines, CRLF and a BOM are fine.
    """
    where = str(path)
    summary = ListSummary(where)
    entries = DomainEntries(where)
    names, numbers = entries.names, entries.lines
    for number, raw in enumerate(_read_lines(path), start=1):
        text = _decode(raw, where, number, summary)
        if text is None:
            continue
        fields = text.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2 or not _is_address(fields[0]):
            summary.problems.append(
                ListProblem(where, number, f"{text.strip()!r} is not a hosts line ('0.0.0.0 name')")
            )
            continue
        for name in fields[1:]:
            if name.lower() in _HOSTS_IGNORED:
                continue
            if message := _domain_problem(name):
                summary.problems.append(ListProblem(where, number, message))
                continue
            try:
                names.append(_host(name.lower()).encode("ascii"))
            except URLError as e:
                summary.problems.append(ListProblem(where, number, str(e)))
                continue
            numbers.append(number)
    summary.entries = len(entries)
    return entries, summary


# -- adblock-style lists -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdblockEntries:
    """The two halves of an adblock-style list."""

    block: DomainEntries
    """`||domain^` rules: the domain and its subdomains are blocked."""
    allow: DomainEntries
    """`@@||domain^` exceptions: the domain and its subdomains are allowed."""


_ADBLOCK_RULE = re.compile(r"(@@)?\|\|([^/^$*|]+)\^(?:\$([a-z,-]+))?")
# Options that do not narrow a rule below "the whole domain", so the rule keeps its meaning here.
_ADBLOCK_OPTIONS = frozenset({"important", "all", "document", "doc"})


def read_adblock(path: Path) -> tuple[AdblockEntries, ListSummary]:
    """Read an adblock-style list: `||domain^` blocks, `@@||domain^` allows.

    Comments start with `!` (or a single `#`), and the `[Adblock Plus 2.0]` header is skipped.
    `$important`, `$all` and `$document` options are accepted. Anything else (cosmetic `##`
    rules, paths, wildcards, other options) is reported as an unsupported line: a gateway that sees
    only hosts and URLs cannot honour it, and guessing would block or allow the wrong thing.
    """
    where = str(path)
    summary = ListSummary(where)
    entries = AdblockEntries(DomainEntries(where), DomainEntries(where))
    for number, raw in enumerate(_read_lines(path), start=1):
        text = _decode(raw, where, number, summary)
        if text is None:
            continue
        text = text.strip()
        if not text or text.startswith("!") or (text.startswith("[") and text.endswith("]")):
            continue
        if text.startswith("#") and text[1:2] not in ("#", "@", "?", "$", "%"):
            continue
        m = _ADBLOCK_RULE.fullmatch(text)
        options = set(m[3].split(",")) if m and m[3] else set()
        if not m or not options <= _ADBLOCK_OPTIONS:
            summary.problems.append(
                ListProblem(
                    where,
                    number,
                    f"unsupported adblock rule {text!r}: only ||domain^ and @@||domain^ are used",
                )
            )
            continue
        try:
            name = _host(m[2].lower())
        except URLError as e:
            summary.problems.append(ListProblem(where, number, str(e)))
            continue
        half = entries.allow if m[1] else entries.block
        half.names.append(name.encode("ascii"))
        half.lines.append(number)
    summary.entries = len(entries.block) + len(entries.allow)
    return entries, summary


# -- URL lists ---------------------------------------------------------------------------------


class UrlEntry(NamedTuple):
    """One URL-list entry, normalised."""

    host: str
    """Normalised host, with scheme, user, port and a leading `www.` (see below) removed."""
    path: str
    """Everything from the first `/` (query included, fragment dropped), case kept; `""` for a
    domain-only entry, which covers the whole domain."""
    line: int


@dataclass(frozen=True, slots=True)
class UrlEntries:
    """The entries of one URL list, in file order."""

    path: str
    entries: list[UrlEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[UrlEntry]:
        return iter(self.entries)


_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
# squidGuard removes "(www|web|ftp)[0-9]*." from the request host before a URL-list lookup and
# documents that list entries are written without it (squidGuard configuration, "URLlists").
_HOST_PREFIX = re.compile(r"(?:www|web|ftp)[0-9]*\.")


def strip_url_host_prefix(host: str) -> str:
    """Drop a leading `www.`, `www2.`, `web.`, `ftp.` ... as squidGuard does for URL lists.

    Only when a dotted name remains, so `web20.pl` stays `web20.pl` (squidGuard would make it `pl`).
    """
    m = _HOST_PREFIX.match(host)
    if m and "." in host[m.end() :]:
        return host[m.end() :]
    return host


def split_url_entry(text: str) -> tuple[str, str]:
    """Split a URL-list entry into (normalised host, path), UT1 rules.

    Any scheme, user info, port and fragment are removed, the host is normalised and loses a
    leading `www.`-like label (`strip_url_host_prefix`); the path keeps its case. A bare host gives
    path `""`. Raises `URLError` with a readable message.
    """
    text = text.strip()
    if m := _SCHEME.match(text):
        text = text[m.end() :]
    text = text.split("#", 1)[0]
    cut = len(text)
    for sep in "/?":
        i = text.find(sep)
        if i != -1 and i < cut:
            cut = i
    hostport, path = text[:cut], text[cut:]
    if path.startswith("?"):
        path = "/" + path
    if "@" in hostport:
        hostport = hostport.rsplit("@", 1)[1]
    if hostport.startswith("["):
        end = hostport.find("]")
        host = hostport[: end + 1] if end != -1 else hostport
    else:
        host = hostport.split(":", 1)[0]
    if not host:
        raise URLError(f"{text!r} has no host name")
    if " " in text or "\t" in text:
        raise URLError(f"{text!r} has spaces; write one URL per line, spaces as %20")
    host = _host(host.lower())
    return strip_url_host_prefix(host), path


def read_urls(path: Path) -> tuple[UrlEntries, ListSummary]:
    """Read a URL list (UT1 `urls`): `host/path` per line, matched as a prefix of the URL.

    A line with no path (`example.com`) covers the whole domain. `#` starts a comment only at the
    start of a line, since URLs may contain `#`; blank lines, CRLF, trailing spaces, a BOM, IPv4
    hosts and IDN hosts are fine.
    """
    where = str(path)
    summary = ListSummary(where)
    entries = UrlEntries(where)
    append = entries.entries.append
    for number, raw in enumerate(_read_lines(path), start=1):
        text = _decode(raw, where, number, summary)
        if text is None:
            continue
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        try:
            host, url_path = split_url_entry(text)
        except URLError as e:
            summary.problems.append(ListProblem(where, number, str(e)))
            continue
        append(UrlEntry(host, url_path, number))
    summary.entries = len(entries)
    return entries, summary


# -- expressions -------------------------------------------------------------------------------


class Expression(NamedTuple):
    """One regular expression from an expressions file."""

    pattern: str
    line: int


def expression_options() -> re2.Options:
    """RE2 options for list expressions: case-insensitive like squidGuard's default
    (`REG_EXTENDED | REG_ICASE`), no captures, and room for a DFA over many patterns."""
    options = re2.Options()
    options.case_sensitive = False
    options.never_capture = True
    options.log_errors = False
    options.max_mem = 64 << 20
    return options


def compile_expression(pattern: str) -> re2._Regexp:
    """Compile one list expression with RE2; raises `re2.error` with RE2's reason."""
    return re2.compile(pattern, expression_options())


def read_expressions(path: Path) -> tuple[list[Expression], ListSummary]:
    """Read an expressions file (UT1 `expressions`, `very_restrictive_expression`): one POSIX
    extended regular expression per line, checked by compiling it with RE2.

    RE2 runs in time linear in the URL, so no pattern can stall the gateway; the price is that
    back-references and look-around are refused, and those lines are reported. A pattern that
    matches the empty string would block every URL, so it is reported too. Lines starting with
    `#` are comments (as a pattern they could only match a fragment, which is never sent).
    """
    where = str(path)
    summary = ListSummary(where)
    found: list[Expression] = []
    for number, raw in enumerate(_read_lines(path), start=1):
        text = _decode(raw, where, number, summary)
        if text is None:
            continue
        text = text.rstrip()
        if not text.strip() or text.startswith("#"):
            continue
        try:
            compiled = compile_expression(text)
        except re2.error as e:
            summary.problems.append(
                ListProblem(where, number, f"regular expression not accepted by RE2: {e}")
            )
            continue
        if compiled.search("") is not None:
            summary.problems.append(
                ListProblem(where, number, f"{text!r} matches every URL; it would block everything")
            )
            continue
        found.append(Expression(text, number))
    summary.entries = len(found)
    return found, summary


# -- usage -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    """What a UT1 `usage` file says about its category."""

    black: bool
    """Meant to be blocked."""
    white: bool
    """Meant to be allowed (some categories say both)."""
    names: tuple[str, ...] = ()
    """The other lines: aliases and descriptions, such as `porn` for adult."""


def read_usage(path: Path) -> tuple[Usage, ListSummary]:
    """Read a UT1 `usage` file: lines `black` and/or `white`, other lines are names; `#` lines
    are comments. A file that says neither black nor white is reported (line 0: the whole file)."""
    where = str(path)
    summary = ListSummary(where)
    black = white = False
    names: list[str] = []
    for number, raw in enumerate(_read_lines(path), start=1):
        text = _decode(raw, where, number, summary)
        if text is None:
            continue
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        word = text.lower()
        if word == "black":
            black = True
        elif word == "white":
            white = True
        else:
            names.append(text)
    if not (black or white):
        summary.problems.append(ListProblem(where, 0, "says neither 'black' nor 'white'"))
    summary.entries = int(black) + int(white)
    return Usage(black, white, tuple(names)), summary


# -- UT1 folders ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UT1Category:
    """One category folder of a UT1-layout tree and the list files it has."""

    name: str
    folder: Path
    domains: tuple[Path, ...] = ()
    """`domains`, or its upstream split `domains.0`, `domains.1`, ... in order."""
    urls: tuple[Path, ...] = ()
    expressions: Path | None = None
    very_restrictive: Path | None = None
    """`very_restrictive_expression`: broader patterns, meant to be opted into."""
    usage: Path | None = None


def _split_files(folder: Path, stem: str) -> tuple[Path, ...]:
    """`stem` itself and/or its numbered parts `stem.0`, `stem.1`, ... in numeric order."""
    found = []
    plain = folder / stem
    if plain.is_file():
        found.append((-1, plain))
    for part in folder.glob(f"{stem}.*"):
        suffix = part.name[len(stem) + 1 :]
        if suffix.isdigit() and part.is_file():
            found.append((int(suffix), part))
    return tuple(p for _, p in sorted(found))


def read_ut1_folder(root: Path) -> Iterator[UT1Category]:
    """Yield each category of a UT1-layout tree, by name, with the list files it holds.

    A category is a sub-folder with at least one of `domains`, `urls`, `expressions`,
    `very_restrictive_expression` or `usage`. Symbolic links (upstream's aliases such as
    `porn -> adult`) are skipped so that no list is indexed twice. Nothing is parsed here: pass the
    paths to the readers.
    """
    for folder in sorted(root.iterdir()):
        if folder.is_symlink() or not folder.is_dir():
            continue
        category = UT1Category(
            name=folder.name,
            folder=folder,
            domains=_split_files(folder, "domains"),
            urls=_split_files(folder, "urls"),
            expressions=_file_or_none(folder / "expressions"),
            very_restrictive=_file_or_none(folder / "very_restrictive_expression"),
            usage=_file_or_none(folder / "usage"),
        )
        if (
            category.domains
            or category.urls
            or category.expressions
            or category.very_restrictive
            or category.usage
        ):
            yield category


def _file_or_none(path: Path) -> Path | None:
    return path if path.is_file() else None


# -- detection and one entry point ---------------------------------------------------------------

_NAMED = {
    "domains": ListFormat.DOMAINS,
    "urls": ListFormat.URLS,
    "expressions": ListFormat.EXPRESSIONS,
    "very_restrictive_expression": ListFormat.EXPRESSIONS,
    "usage": ListFormat.USAGE,
    "hosts": ListFormat.HOSTS,
}
_SNIFF_LINES = 200


def detect_format(path: Path) -> ListFormat:
    """Choose a file's format, by these rules in order:

    1. By name: `domains`, `urls`, `expressions`, `very_restrictive_expression`, `usage` and
       `hosts` (also with a numeric suffix such as `domains.0`, or an extension such as
       `hosts.txt`) are what they say.
    2. By content, looking at the first 200 lines that are not blank or comments (`#`, `!`):
       any `||`/`@@` rule or a `[Adblock ...]` header means adblock; a line `address name` whose
       first field is an IP address means hosts; a line with `/` means a URL list.
    3. Otherwise it is a plain domain list.
    """
    head, _, suffix = path.name.partition(".")
    if path.name in _NAMED:
        return _NAMED[path.name]
    if head in _NAMED and (suffix.isdigit() or suffix in ("txt", "list")):
        return _NAMED[head]
    seen = 0
    for raw in _read_lines(path):
        text = raw.decode("utf-8", "replace").strip()
        if text.startswith("[Adblock"):
            return ListFormat.ADBLOCK
        if not text or text.startswith(("#", "!")):
            continue
        if text.startswith(("||", "@@")):
            return ListFormat.ADBLOCK
        fields = text.split()
        if len(fields) >= 2 and _is_address(fields[0]):
            return ListFormat.HOSTS
        if "/" in text:
            return ListFormat.URLS
        seen += 1
        if seen >= _SNIFF_LINES:
            break
    return ListFormat.DOMAINS


@dataclass(frozen=True, slots=True)
class ParsedList:
    """Whatever one file contributed, by format; fields that do not apply are empty."""

    format: ListFormat
    path: str
    summary: ListSummary
    block: DomainEntries | None = None
    """Domains to match by label suffix (domains, hosts, adblock `||`)."""
    allow: DomainEntries | None = None
    """Adblock `@@||` exceptions."""
    urls: UrlEntries | None = None
    expressions: tuple[Expression, ...] = ()
    usage: Usage | None = None


def read_list(path: Path, fmt: ListFormat | None = None) -> ParsedList:
    """Read one file in `fmt` (default: `detect_format(path)`)."""
    fmt = fmt or detect_format(path)
    where = str(path)
    match fmt:
        case ListFormat.DOMAINS:
            domains, summary = read_domains(path)
            return ParsedList(fmt, where, summary, block=domains)
        case ListFormat.HOSTS:
            domains, summary = read_hosts(path)
            return ParsedList(fmt, where, summary, block=domains)
        case ListFormat.ADBLOCK:
            rules, summary = read_adblock(path)
            return ParsedList(fmt, where, summary, block=rules.block, allow=rules.allow)
        case ListFormat.URLS:
            urls, summary = read_urls(path)
            return ParsedList(fmt, where, summary, urls=urls)
        case ListFormat.EXPRESSIONS:
            expressions, summary = read_expressions(path)
            return ParsedList(fmt, where, summary, expressions=tuple(expressions))
        case ListFormat.USAGE:
            usage, summary = read_usage(path)
            return ParsedList(fmt, where, summary, usage=usage)
    raise ValueError(f"unknown list format {fmt!r}")
