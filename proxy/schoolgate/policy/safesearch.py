"""Safe search, enforced and locked: rewrite Google, Bing, DuckDuckGo and Yahoo requests to carry
the group's safe-search setting whatever the user sent, add `YouTube-Restrict` on YouTube, and name
the search engines with no safe mode the gateway can lock. Pure code: the enforce addon applies it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from ..classify.shapes import header_value
from ..classify.urls import parent_domains

__all__ = [
    "ENGINES",
    "LEVELS",
    "NO_SAFE_MODE_ENGINES",
    "YOUTUBE_HEADER",
    "YOUTUBE_HOSTS",
    "YOUTUBE_MODES",
    "Rewrite",
    "SafeSearchPolicy",
    "enforced_engine",
    "engine_suffixes",
    "enforce",
    "google_hosts",
    "lock_form_body",
    "lock_query",
    "unsafe_engine",
]

LEVELS = ("strict", "moderate", "off")
"""Safe-search levels a group can have, strictest first."""
YOUTUBE_MODES = ("strict", "moderate", "off")
"""YouTube Restricted Mode settings a group can have, strictest first."""
ENGINES = ("google", "bing", "duckduckgo", "yahoo", "youtube")
"""Every `Rewrite.engine` value: a bounded metric label, so metrics can create them all up front."""
YOUTUBE_HEADER = "YouTube-Restrict"
"""The header YouTube reads for Restricted Mode; its values are `Strict` and `Moderate`."""
YOUTUBE_HOSTS = frozenset(
    {
        # The five hosts Google documents for the header (Workspace "Restrict YouTube content").
        "www.youtube.com",
        "m.youtube.com",
        "youtubei.googleapis.com",
        "youtube.googleapis.com",
        "www.youtube-nocookie.com",
        # Only redirects to www.youtube.com, which gets the header again; costs nothing.
        "youtube.com",
    }
)

# Every Google search country domain, as https://www.google.com/supported_domains lists them
# (`google.` + one of these). A host here but not Google's would only get a harmless parameter.
_GOOGLE_TLDS = """
    com ad ae com.af com.ag com.ai al am co.ao com.ar as at com.au az ba com.bd be bf bg com.bh bi
    bj com.bn com.bo com.br bs bt co.bw by com.bz ca cd cf cg ch ci co.ck cl cm cn com.co co.cr
    com.cu cv com.cy cz de dj dk dm com.do dz com.ec ee com.eg es com.et fi com.fj fm fr ga ge gg
    com.gh com.gi gl gm gr com.gt gy com.hk hn hr ht hu co.id ie co.il im co.in iq is it je com.jm
    jo co.jp co.ke com.kh ki kg co.kr com.kw kz la com.lb li lk co.ls lt lu lv com.ly co.ma md me
    mg mk ml com.mm mn ms com.mt mu mv mw com.mx com.my co.mz com.na com.ng com.ni ne nl no com.np
    nr nu co.nz com.om com.pa com.pe com.pg com.ph com.pk pl pn com.pr ps pt com.py com.qa ro ru
    rw com.sa com.sb sc se com.sg sh si sk com.sl sn so sm sr st com.sv td tg co.th com.tj tl tm
    tn to com.tr tt com.tw co.tz com.ua co.ug co.uk com.uy co.uz com.vc co.ve vg co.vi com.vn vu
    ws rs co.za co.zm co.zw cat
""".split()

NO_SAFE_MODE_ENGINES: tuple[str, ...] = (
    # General web and image search that Schoolgate cannot lock: either there is no safe mode, or
    # it is a setting the pupil controls (a cookie or an account), not something in the request
    # a gateway can force. Matched by label suffix: "ecosia.org" covers www.ecosia.org.
    # Deliberately absent: swisscows.com (always family-filtered; there is no "off"). Self-hosted
    # meta-search (SearXNG, Whoogle) runs under any name: the redirector lists cover those.
    "ecosia.org",  # adult filter is a settings cookie; popular in schools, so expect requests
    "search.brave.com",  # safe search is a settings cookie; brave.com (the browser) is not covered
    "startpage.com",  # Google results, family filter in a settings cookie; "Anonymous View" proxies
    "qwant.com",  # filter is a user setting on the web front end (covers lite.qwant.com)
    "mojeek.com",  # independent index; safe search is a user preference
    "kagi.com",  # safe search is an account setting
    "presearch.com",  # safe search is a user setting
    "metager.org",  # meta-search; filter is a user setting, every result has an anonymising proxy
    "metager.de",  # the same service under its German name
    "dogpile.com",  # meta-search; filter is a user preference
    "webcrawler.com",  # meta-search from the same family
    "metacrawler.com",  # meta-search from the same family
    "ask.com",  # no lockable filter
    "search.aol.com",  # not rewritten by Schoolgate (only the Yahoo hosts get vm=r)
    "search.yahoo.co.jp",  # Yahoo! JAPAN is a separate service, not rewritten by Schoolgate
    "yandex.com",  # family filter is a user setting; Yandex image search is a known bypass
    "yandex.ru",  # the same, Russian domain (also covers Yandex's other services there)
    "ya.ru",  # Yandex's short domain, which serves the same search
    "baidu.com",  # no adult-content filter a user or school can turn on
    "gibiru.com",  # sells itself as uncensored search
)
"""Search engines blocked by default because they offer no safe mode the gateway can lock; a
technician can add or remove entries in the config (see `unsafe_engine`)."""


# ---------------------------------------------------------------------------------------------
# Policy and result


@dataclass(frozen=True, slots=True)
class SafeSearchPolicy:
    """A group's safe-search settings. Raises `ValueError` naming the allowed values."""

    level: str = "strict"
    """`strict`, `moderate` or `off`, for Google, Bing, DuckDuckGo and Yahoo. Google has no
    moderate setting it lets a URL lock, so `moderate` gets `safe=active` there too."""
    youtube: str = "strict"
    """YouTube Restricted Mode: `strict`, `moderate` or `off` (no header)."""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(
                f"safe-search level {self.level!r} is not one of {', '.join(LEVELS)}"
            )
        if self.youtube not in YOUTUBE_MODES:
            raise ValueError(
                f"YouTube mode {self.youtube!r} is not one of {', '.join(YOUTUBE_MODES)}"
            )


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What to change in one search-engine request so that safe search holds."""

    engine: str
    """Which engine: one of `ENGINES` (a bounded metric label, never a host)."""
    path: str
    """The request path with query to send, such as `/search?q=cats&safe=active`; the same as
    the request's when only headers change or the request was already locked."""
    set_headers: tuple[tuple[str, str], ...] = ()
    """Headers to set, each replacing every field of that name the client sent."""
    form_params: tuple[tuple[str, str | None], ...] = ()
    """For a form POST (DuckDuckGo's no-JavaScript pages send the search in the body): the
    parameters to lock in the `application/x-www-form-urlencoded` body with `lock_form_body`
    once it has been read. A value of None means "remove". Empty for every other request."""
    changed: bool = False
    """True when the request differs after the rewrite (new path, or a header value the client
    did not send); False when it already carried exactly the locked settings."""


# ---------------------------------------------------------------------------------------------
# Query locking

_Params = tuple[tuple[str, str | None], ...]
"""Parameters to lock, as `lock_query` takes them: (name, value), a value of None removes."""


@dataclass(frozen=True, slots=True)
class _Lock:
    """A compiled set of locked parameters (see `lock_query`)."""

    names: frozenset[str]
    """Lowercase names of every parameter the lock owns (set or removed)."""
    exact: frozenset[str]
    """The `name=value` segments that already satisfy the lock, as sent."""
    append: str
    """The segments to append, such as `kp=1&p=1`."""


@functools.lru_cache(maxsize=64)
def _compile(params: _Params) -> _Lock:
    for name, _ in params:
        if not name or not name.isascii() or any(c in name for c in "&=#?% +"):
            raise ValueError(f"{name!r} is not a plain query parameter name")
    pairs = [f"{name}={value}" for name, value in params if value is not None]
    return _Lock(
        names=frozenset(name.lower() for name, _ in params),
        exact=frozenset(pairs),
        append="&".join(pairs),
    )


def lock_query(query: str, params: Iterable[tuple[str, str | None]]) -> str:
    """`query` (without its `?`) with `params` locked: every parameter whose name is one of
    theirs is removed, then each `(name, value)` is appended in order; a value of None only
    removes. Everything else is kept byte for byte and in order (`+` and `%20` stay as sent).

    Names match ASCII-case-insensitively and after percent-decoding, so `SAFE=off` and
    `s%61fe=off` go as well as `safe=off` and `safe=images`: Google reads names case-sensitively,
    but Bing (ASP.NET) does not, and dropping a variant an engine would ignore costs nothing.
    Only `&` separates parameters (`;` does not, for any of these engines: `q=a;safe=off` is a
    search for "a;safe=off"). A query that already carries each locked parameter exactly once,
    as locked, and nothing else of theirs, is returned unchanged; when it is rebuilt, empty
    segments (`&&`, a trailing `&`) are dropped, as they carry nothing.
    """
    return _lock(query, _compile(tuple(params)))


def _lock(query: str, lock: _Lock) -> str:
    if not query:
        return lock.append
    kept: list[str] = []
    seen: set[str] = set()
    clean = True
    names = lock.names
    for segment in query.split("&"):
        eq = segment.find("=")
        name = segment if eq < 0 else segment[:eq]
        if "%" in name:
            name = unquote(name, errors="replace")
        # isascii first: str.lower maps some non-ASCII letters (the Kelvin sign) onto ASCII ones.
        if name.isascii() and name.lower() in names:
            if segment in lock.exact and segment not in seen:
                seen.add(segment)
            else:
                clean = False
            continue
        if segment:
            kept.append(segment)
    if clean and len(seen) == len(lock.exact):
        return query
    if lock.append:
        kept.append(lock.append)
    return "&".join(kept)


def lock_form_body(body: bytes, params: Iterable[tuple[str, str | None]]) -> bytes:
    """An `application/x-www-form-urlencoded` body with `params` locked as `lock_query` does;
    every other byte is kept (the body is handled one character per byte)."""
    text = body.decode("latin-1")
    locked = lock_query(text, params)
    return body if locked is text else locked.encode("latin-1")


# ---------------------------------------------------------------------------------------------
# Engines


@dataclass(frozen=True, slots=True)
class _Surface:
    """One kind of search request on an engine's hosts: which paths, which parameters."""

    engine: str
    exact: frozenset[str]
    """Lowercase paths (before `?`) handled as they are."""
    prefixes: tuple[str, ...]
    """Lowercase path prefixes handled (`str.startswith` takes the tuple at once)."""
    params: Mapping[str, _Params]
    """Level (`strict`, `moderate`) -> the parameters locked, as `lock_query` takes them."""
    locks: Mapping[str, _Lock]
    """The same, compiled."""
    form: bool = False
    """POSTs here carry the search in a form body, which is locked with the same parameters."""

    def handles(self, route: str) -> bool:
        return route in self.exact or route.startswith(self.prefixes)


def _surface(
    engine: str,
    exact: Iterable[str],
    prefixes: tuple[str, ...],
    strict: _Params,
    moderate: _Params,
    form: bool = False,
) -> _Surface:
    params = {"strict": strict, "moderate": moderate}
    locks = {level: _compile(p) for level, p in params.items()}
    return _Surface(engine, frozenset(exact), prefixes, params, locks, form)


_GOOGLE = _surface(
    "google",
    # Web, image and video search, the home pages (a search can start there), image result
    # pages, and autocomplete, which would otherwise suggest what the results hide.
    exact=(
        *("/", "/search", "/webhp", "/images", "/imghp", "/imgres", "/videohp"),
        "/complete/search",
    ),
    prefixes=("/async/",),  # result fragments loaded by the page as you scroll
    # Google has no moderate value a URL can lock (its "Blur" setting is a user preference,
    # not a parameter), so moderate gets the filter too: never weaker than the policy asks.
    strict=(("safe", "active"),),
    moderate=(("safe", "active"),),
)
_BING = _surface(
    "bing",
    exact=("/search", "/as/suggestions"),
    prefixes=("/images/", "/videos/", "/news/"),  # /images/search, /images/async, /videos/search
    strict=(("adlt", "strict"),),
    moderate=(("adlt", "moderate"),),
)
_DDG_PAGES = _surface(
    "duckduckgo",
    # The JavaScript site (/), the no-JavaScript site (html.) and the lite site (lite.).
    exact=("/", "/html", "/html/", "/lite", "/lite/"),
    prefixes=("/ac/",),  # autocomplete
    # kp is DuckDuckGo's documented URL setting: 1 strict, -1 moderate, -2 off.
    strict=(("kp", "1"),),
    moderate=(("kp", "-1"),),
    form=True,
)
_DDG_API = _surface(
    "duckduckgo",
    # The page loads its results from these (web, images, videos, news). They are undocumented:
    # they carry the setting as `p` (1 strict; -1 and -2 relax it) and `ex` (-1 moderate, -2
    # off), so strict pins p=1 and drops ex, moderate drops both (DuckDuckGo's default is
    # moderate), and kp is locked as on the pages.
    exact=("/d.js", "/i.js", "/v.js", "/news.js"),
    prefixes=(),
    strict=(("kp", "1"), ("p", "1"), ("ex", None)),
    moderate=(("kp", "-1"), ("p", None), ("ex", None)),
)
_YAHOO = _surface(
    "yahoo",
    exact=(),
    # /search also covers /search;_ylt=... (Yahoo puts tracking in the path), /search/images
    # and /search/video; /yhs/search is the partner (toolbar) form, /sugg/ autocomplete.
    prefixes=("/search", "/yhs/search", "/mobile/s", "/sugg/"),
    strict=(("vm", "r"),),  # r strict, i moderate, p off
    moderate=(("vm", "i"),),
)


def google_hosts() -> frozenset[str]:
    """Every Google search host Schoolgate rewrites: `google.<tld>`, `www.google.<tld>` and
    `images.google.<tld>` for each Google country domain."""
    return frozenset(
        f"{prefix}google.{tld}" for tld in _GOOGLE_TLDS for prefix in ("", "www.", "images.")
    )


def _host_table() -> dict[str, tuple[_Surface, ...]]:
    table: dict[str, tuple[_Surface, ...]] = {host: (_GOOGLE,) for host in google_hosts()}
    for host in ("www.bing.com", "bing.com", "cn.bing.com"):
        table[host] = (_BING,)
    for host in (
        "duckduckgo.com",
        "www.duckduckgo.com",
        "html.duckduckgo.com",
        "lite.duckduckgo.com",
        "links.duckduckgo.com",  # where the page fetches d.js
        "safe.duckduckgo.com",  # the DNS safe-search name, reachable by name too
        "start.duckduckgo.com",
        "noai.duckduckgo.com",
    ):
        table[host] = (_DDG_PAGES, _DDG_API)
    for host in ("search.yahoo.com", "uk.search.yahoo.com", "images.search.yahoo.com",
                 "video.search.yahoo.com"):
        table[host] = (_YAHOO,)
    return table


# One dict lookup decides for almost every request: the cheap guard before any parsing.
_HOSTS = _host_table()
_YAHOO_ONLY = (_YAHOO,)
_YOUTUBE_VALUES = {"strict": "Strict", "moderate": "Moderate"}


# ---------------------------------------------------------------------------------------------
# The decision


def enforce(
    method: str, host: str, path: str, headers: Mapping[str, str], policy: SafeSearchPolicy
) -> Rewrite | None:
    """How to rewrite this request so the group's safe search holds, or None when it is not a
    request this module handles (another host, a path that is not a search, a CONNECT) or the
    policy turns that part off.

    `host` is the request host without port (case and one trailing dot do not matter); `path` is
    the path with query exactly as on the wire (`/search?q=a+b&safe=off`); `headers` is any
    mapping of the request headers, looked up case-insensitively.

    Search engines get their parameter locked in the URL (see `lock_query`): Google `safe=active`,
    Bing `adlt=strict|moderate`, DuckDuckGo `kp=1|-1`, Yahoo `vm=r|i`. YouTube hosts get the
    header `YouTube-Restrict: Strict|Moderate` on every request and method, API POSTs included.

    This works on decrypted traffic only. The school's DNS is the complement for devices that
    are not decrypted: answer www.google.<tld> with a CNAME to forcesafesearch.google.com,
    www.bing.com to strict.bing.com, duckduckgo.com to safe.duckduckgo.com, and the YouTube
    hosts to restrict.youtube.com (or restrictmoderate.youtube.com).
    """
    if method == "CONNECT":  # its "path" is the authority; the tunnelled requests come later
        return None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]  # "www.google.com." is the same host, and a known way round filters
    surfaces = _HOSTS.get(host)
    if surfaces is None:
        if host in YOUTUBE_HOSTS:
            return _youtube(path, headers, policy)
        if host.endswith(".search.yahoo.com"):  # fr., de., es., uk.images. and the rest
            surfaces = _YAHOO_ONLY
        else:
            return None
    if policy.level == "off":
        return None

    qmark = path.find("?")
    route = (path if qmark < 0 else path[:qmark]).lower()
    for surface in surfaces:
        if surface.handles(route):
            break
    else:
        return None
    lock = surface.locks[policy.level]
    if qmark < 0:
        locked = _lock("", lock)
        new_path = f"{path}?{locked}" if locked else path
    else:
        query = path[qmark + 1 :]
        locked = _lock(query, lock)
        new_path = path if locked is query else f"{path[:qmark]}?{locked}"
    form: _Params = ()
    if surface.form and method == "POST" and _is_form(headers):
        form = surface.params[policy.level]
    return Rewrite(
        engine=surface.engine,
        path=new_path,
        form_params=form,
        changed=new_path != path,
    )


def enforced_engine(host: str, policy: SafeSearchPolicy) -> str | None:
    """The engine (one of `ENGINES`) whose safe search or Restricted Mode `enforce` locks on
    normalised `host` under `policy`, or None: the hosts that must be decrypted for it to hold."""
    if host in YOUTUBE_HOSTS:
        return "youtube" if policy.youtube != "off" else None
    surfaces = _HOSTS.get(host) or (_YAHOO_ONLY if host.endswith(".search.yahoo.com") else None)
    if surfaces is None or policy.level == "off":
        return None
    return surfaces[0].engine


def _youtube(path: str, headers: Mapping[str, str], policy: SafeSearchPolicy) -> Rewrite | None:
    value = _YOUTUBE_VALUES.get(policy.youtube)
    if value is None:
        return None
    sent = header_value(headers, "youtube-restrict")
    return Rewrite(
        engine="youtube",
        path=path,
        set_headers=((YOUTUBE_HEADER, value),),
        changed=sent != value,
    )


def _is_form(headers: Mapping[str, str]) -> bool:
    ctype = header_value(headers, "content-type")
    if ctype is None:
        return True  # a POST with no type is still read as a form by most servers
    return ctype.partition(";")[0].strip().lower() == "application/x-www-form-urlencoded"


# ---------------------------------------------------------------------------------------------
# Engines with no safe mode


def engine_suffixes(entries: Iterable[str]) -> frozenset[str]:
    """Normalise a list of search-engine entries for `unsafe_engine`: lowercase, without a
    leading `*.` or `.` or a trailing `.`. Raises `ValueError` naming an entry that is empty or
    is not a host name (has a scheme, path, port or space)."""
    out: set[str] = set()
    for raw in entries:
        entry = raw.strip().lower()
        if entry.startswith("*."):
            entry = entry[2:]
        entry = entry.strip(".")
        if not entry or any(c in entry for c in "/:@?# \t") or ".." in entry:
            raise ValueError(
                f"search engine {raw!r} is not a host name such as 'startpage.com'"
            )
        out.add(entry)
    return frozenset(out)


_cached_suffixes = functools.lru_cache(maxsize=16)(engine_suffixes)


def unsafe_engine(host: str, blocked: Iterable[str] = NO_SAFE_MODE_ENGINES) -> str | None:
    """The entry of `blocked` that covers `host`, or None. Entries match by label suffix:
    `example.com` covers `example.com` and `www.example.com`, never `badexample.com`.

    `blocked` is normalised as `engine_suffixes` does; a tuple or frozenset is normalised once
    and remembered, so pass the same one on every request.
    """
    if isinstance(blocked, (tuple, frozenset)):
        entries = _cached_suffixes(blocked)
    else:
        entries = engine_suffixes(blocked)
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    # At most one lookup per label of the host.
    return next((suffix for suffix in parent_domains(name) if suffix in entries), None)
