"""Search terms out of search-engine requests: which engine, the term as the person typed it and
normalised for the keyword libraries, and which kind of results, for the DSL's report and alerts.
Autocomplete and suggestion requests are left out: they carry half-typed words, not searches.

Pure code: no mitmproxy import and no I/O. `extract_search` runs on every request, so it looks
the host up in one dict before it parses anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote, unquote_plus, unquote_to_bytes

from .keywords import normalise_text

__all__ = [
    "ENGINES",
    "MAX_BODY",
    "MAX_TERM",
    "VERTICALS",
    "VIAS",
    "SearchQuery",
    "extract_search",
    "needs_body",
    "search_engine",
]

ENGINES: tuple[str, ...] = (
    "google", "bing", "duckduckgo", "yahoo", "youtube", "ecosia", "brave", "yandex", "baidu",
    "wikipedia", "tiktok", "pinterest",
)
"""Every value `SearchQuery.engine` takes: a bounded set, safe as a Prometheus label."""
VERTICALS: tuple[str, ...] = (
    "web", "images", "video", "news", "shopping", "books", "forums", "ai", "music", "people",
    "other",
)
"""Every value `SearchQuery.vertical` takes."""
VIAS: tuple[str, ...] = ("page", "api")
"""Every value `SearchQuery.via` takes."""
MAX_BODY = 64 * 1024
"""Request bodies (and Pinterest's JSON query parameter) longer than this many bytes are not
parsed. Real search bodies are a few KiB; this bounds the work a crafted request can cause."""
MAX_TERM = 2048
"""Terms are cut to this many characters (Google's own limit on a query)."""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One search a person made, as the search engine received it."""

    engine: str
    """Which engine: one of `ENGINES`."""
    term: str
    """The term as typed: `+` and percent-escapes decoded once, as UTF-8 with bad bytes shown as
    U+FFFD; control characters removed; whitespace trimmed and runs of it made one space; at most
    `MAX_TERM` characters. Never empty."""
    normalised: str
    """`normalise_text(term)`, what the keyword libraries match. Empty when the term holds no
    letter or digit (only emoji or punctuation)."""
    vertical: str
    """Which kind of results: one of `VERTICALS`; `web` when the engine does not say, `other`
    for a kind this module does not name (Google's places or finance tabs)."""
    via: str
    """`page` when the request is the results page itself (what the address bar shows), `api`
    when it is the request an engine's page makes in the background to fetch results: YouTube's
    in-page search, TikTok's and Pinterest's result fetches, Wikipedia's REST search. A browser
    that loads a TikTok or Pinterest results page directly may make both, so one search can be
    seen twice, a second apart: count repeats by person, engine and term over a short window."""


class _Request(NamedTuple):
    method: str
    host: str
    path: str
    """Without the query, lowercased: a path in another case is the same page (Bing runs on IIS)
    or no page at all, never another search."""
    raw_path: str
    """Without the query, as sent: Wikipedia reads a term from it."""
    query: str
    body: bytes | None
    content_type: str | None


_Engine = Callable[[_Request], "SearchQuery | None"]


def extract_search(
    method: str,
    host: str,
    path: str,
    body: bytes | None = None,
    content_type: str | None = None,
) -> SearchQuery | None:
    """The search a request makes, or None when it makes none.

    `host` is the request's host name without the port; `path` is the path with its query string
    as sent (`/search?q=a+b`). `body` and `content_type` matter only for the POST searches that
    `needs_body` names; pass the body with its Content-Encoding already undone (mitmproxy's
    `request.content`, not `raw_content`). Never raises for any input a client can send.
    """
    if host.endswith("."):
        host = host[:-1]  # "www.google.com." is the same name, fully qualified
    engine = _HOSTS.get(host)
    if engine is None:
        if not host.islower() and host.isascii():
            host = host.lower()
            engine = _HOSTS.get(host)
        if engine is None:
            # Hosts that have a language or country label in front: en.wikipedia.org,
            # uk.pinterest.com, uk.search.yahoo.com. Only names listed in _UNDER are matched this
            # way, never a suffix such as "com", so google.com.evil.example finds nothing.
            engine = _UNDER.get(host[host.find(".") + 1 :])
            if engine is None:
                return None
    raw_path, _, query = path.partition("?")
    if "#" in query:
        # Browsers never send a fragment (so Google's "/webhp#q=..." is invisible to a proxy);
        # a hand-made client might.
        query = query.partition("#")[0]
    return engine(
        _Request(method.upper(), host, raw_path.lower(), raw_path, query, body, content_type)
    )


def needs_body(method: str, host: str, path: str) -> bool:
    """Whether `extract_search` needs this request's body to find its search term, so the gateway
    must wait for the body (not stream it) before calling it.

    True only for POST searches: YouTube's in-page search (`/youtubei/v1/search`, a JSON body)
    and DuckDuckGo's forms (the html and lite front ends, and the main site when its "POST
    requests" setting is on), whose term is in a form body.
    """
    if method.upper() != "POST":
        return False
    host = host.rstrip(".").lower()
    p = path.partition("?")[0].lower()
    if host in _YOUTUBE_API_HOSTS:
        return p == "/youtubei/v1/search"
    if host in _DUCKDUCKGO_HOSTS:
        return p in _DUCKDUCKGO_PATHS
    return False


# ---------------------------------------------------------------------------------------------
# Decoding


# C0 and C1 controls (a NUL cannot be stored in a PostgreSQL text column) become spaces; lone
# surrogates, which is how mitmproxy hands over path bytes that are not UTF-8, become U+FFFD so
# the term can always be encoded.
_SANITISE = {cp: " " for cp in (*range(0x20), *range(0x7F, 0xA0))} | {
    cp: "\ufffd" for cp in range(0xD800, 0xE000)
}


def _params(query: str, names: frozenset[str], *, last: bool = False) -> dict[str, str]:
    """The raw (still escaped) value of each of `names` found in a query string or form body.

    A repeated name gives its first value, as Google reads it, or its last with `last=True`, as
    PHP (and so MediaWiki) reads it. A pair without "=" has the empty value.
    """
    found: dict[str, str] = {}
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name, errors="replace")
        if name in names and (last or name not in found):
            found[name] = value
    return found


def _decode(value: str, encoding: str = "utf-8") -> str:
    """A query-string or form value as text: "+" is a space, percent-escapes are decoded once
    (a typed "%41" arrives as "%2541" and stays "%41"), bad bytes become U+FFFD."""
    return unquote_plus(value, encoding=encoding, errors="replace")


def _found(engine: str, text: str, vertical: str, via: str = "page") -> SearchQuery | None:
    if not text.isprintable():
        text = text.translate(_SANITISE)
    term = " ".join(text.split())
    if len(term) > MAX_TERM:
        term = term[:MAX_TERM].rstrip()
    if not term:
        return None  # an empty search box: the engine shows its home page, nobody searched
    return SearchQuery(engine, term, normalise_text(term), vertical, via)


def _form(r: _Request) -> str | None:
    """A POST body that is an HTML form, as text ready for `_params`; None for any other body."""
    body = r.body
    if body is None or len(body) > MAX_BODY:
        return None
    if r.content_type is not None:
        media_type = r.content_type.partition(";")[0].strip().lower()
        if media_type != "application/x-www-form-urlencoded":
            return None  # multipart or JSON: not what the engine's own form sends
    # Browsers percent-escape every byte that is not ASCII, so this decoding matters only for
    # hand-made clients; bytes that are not UTF-8 come back as U+FFFD through _SANITISE.
    return body.decode("utf-8", "surrogateescape")


def _json_object(data: bytes | str) -> dict[str, object] | None:
    if len(data) > MAX_BODY:
        return None
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        # Not JSON, not UTF-8, an integer too long to convert, or nested too deep to parse.
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------------------------------------
# The engines. Each takes only the paths that are a search a person made, so every other
# request on the same host (autocomplete, assets, logging beacons, background result fetches
# that repeat a search already seen) gives None without a list of exclusions to keep up to date.
# Every engine reads the first of a repeated parameter except Wikipedia (PHP reads the last).

# Google's search domains, from https://www.google.com/supported_domains, plus four retired ones
# that still answer (the last line). safesearch.py rewrites the same hosts.
_GOOGLE_DOMAINS = """
    com ad ae com.af com.ag al am co.ao com.ar as at com.au az ba com.bd be bf bg com.bh bi bj
    com.bn com.bo com.br bs bt co.bw by com.bz ca cd cf cg ch ci co.ck cl cm cn com.co co.cr
    com.cu cv com.cy cz de dj dk dm com.do dz com.ec ee com.eg es com.et fi com.fj fm fr ga ge
    gg com.gh com.gi gl gm gr com.gt gy com.hk hn hr ht hu co.id ie co.il im co.in iq is it je
    com.jm jo co.jp co.ke com.kh ki kg co.kr com.kw kz la com.lb li lk co.ls lt lu lv com.ly
    co.ma md me mg mk ml com.mm mn com.mt mu mv mw com.mx com.my co.mz com.na com.ng com.ni ne
    nl no com.np nr nu co.nz com.om com.pa com.pe com.pg com.ph com.pk pl pn com.pr ps pt com.py
    com.qa ro ru rw com.sa com.sb sc se com.sg sh si sk com.sl sn so sm sr st com.sv td tg co.th
    com.tj tl tm tn to com.tr tt com.tw co.tz com.ua co.ug co.uk com.uy co.uz com.vc co.ve co.vi
    com.vn vu ws rs co.za co.zm co.zw cat
    ac com.ai ms vg
""".split()
_GOOGLE_PATHS = {"/search": "web", "/images": "images", "/webhp": "web"}
# Google does not document these; the values are the ones its own tabs link to. `udm` is the
# newer parameter and wins when both are present.
_GOOGLE_UDM = {
    "2": "images", "7": "video", "12": "news", "14": "web", "18": "forums", "28": "shopping",
    "36": "books", "39": "video", "50": "ai",
}
_GOOGLE_TBM = {"isch": "images", "vid": "video", "nws": "news", "shop": "shopping", "bks": "books"}
_GOOGLE_ADVANCED = ("as_q", "as_epq", "as_oq", "as_eq")
_GOOGLE_PARAMS = frozenset({"q", "udm", "tbm", "async", "asearch", *_GOOGLE_ADVANCED})


def _google(r: _Request) -> SearchQuery | None:
    # /search, /images?q= and /webhp?q= only: /complete/search (autocomplete), /url?q= (a result
    # link, whose q is a URL), /maps (place look-ups in an app, not web searches), /async/,
    # /gen_204 and /xjs are not searches. The fragment form /webhp#q=... never reaches a proxy.
    vertical = _GOOGLE_PATHS.get(r.path)
    if vertical is None or r.method != "GET":
        return None
    params = _params(r.query, _GOOGLE_PARAMS)
    if "async" in params or "asearch" in params:
        return None  # more results fetched while scrolling a page already counted
    text = _decode(params.get("q", ""))
    if not text.strip():
        # The advanced-search form ("all these words", "this exact phrase", ...) sends no q.
        text = " ".join(_decode(params[k]) for k in _GOOGLE_ADVANCED if k in params)
    if params.get("udm"):
        vertical = _GOOGLE_UDM.get(params["udm"], "other")
    elif params.get("tbm"):
        vertical = _GOOGLE_TBM.get(params["tbm"], "other")
    return _found("google", text, vertical)


_BING_PATHS = {
    "/search": "web", "/images/search": "images", "/videos/search": "video", "/news/search": "news",
}
_Q = frozenset({"q"})


def _bing(r: _Request) -> SearchQuery | None:
    # Not /AS/Suggestions or /qsonhs.aspx (autocomplete), /fd/ls (logging), /images/async and
    # /videos/asyncv2 (more results while scrolling).
    vertical = _BING_PATHS.get(r.path)
    if vertical is None or r.method != "GET":
        return None
    return _found("bing", _decode(_params(r.query, _Q).get("q", "")), vertical)


_DUCKDUCKGO_HOSTS = frozenset({
    "duckduckgo.com", "www.duckduckgo.com", "safe.duckduckgo.com", "start.duckduckgo.com",
    "html.duckduckgo.com", "lite.duckduckgo.com",
})
_DUCKDUCKGO_PATHS = frozenset({"/", "/html", "/html/", "/lite", "/lite/"})
_DUCKDUCKGO_PARAMS = frozenset({"q", "ia", "iax"})
_DUCKDUCKGO_IA = {
    "web": "web", "images": "images", "videos": "video", "news": "news", "shopping": "shopping",
    "chat": "ai", "maps": "other",
}


def _duckduckgo(r: _Request) -> SearchQuery | None:
    # The results page, GET or POST. Not links.duckduckgo.com/d.js and duckduckgo.com/i.js,
    # v.js, news.js: the main page fetches its results there after it loaded, so counting them
    # would count every search twice. Not /ac/ (autocomplete).
    if r.path not in _DUCKDUCKGO_PATHS:
        return None
    params = _params(r.query, _DUCKDUCKGO_PARAMS)
    if r.method == "POST":
        form = _form(r)
        if form is None:
            return None
        params |= _params(form, _DUCKDUCKGO_PARAMS)
    elif r.method != "GET":
        return None
    tab = params.get("iax") or params.get("ia", "")
    return _found("duckduckgo", _decode(params.get("q", "")), _DUCKDUCKGO_IA.get(tab, "web"))


# /search;_ylt=...;_ylc=...?p=: Yahoo puts tracking parameters in the path, after ";".
_YAHOO_PATHS = {
    "/search": None, "/search/": None, "/yhs/search": None, "/search/images": "images",
    "/search/video": "video",
}
_YAHOO_PARAMS = frozenset({"p", "q"})


def _yahoo(r: _Request) -> SearchQuery | None:
    # Not /sugg/gossip/... or /sugg/ff (autocomplete). The term is `p`; `q` is read when there
    # is no `p`, as Yahoo also answers it.
    path = r.path.partition(";")[0]
    if path not in _YAHOO_PATHS or r.method != "GET":
        return None
    vertical = _YAHOO_PATHS[path]
    if vertical is None:
        labels = r.host.split(".")
        vertical = (
            "images" if "images" in labels
            else "video" if "video" in labels
            else "news" if "news" in labels
            else "web"
        )
    params = _params(r.query, _YAHOO_PARAMS)
    return _found("yahoo", _decode(params.get("p") or params.get("q", "")), vertical)


_YOUTUBE_API_HOSTS = frozenset({
    "www.youtube.com", "m.youtube.com", "youtube.com", "music.youtube.com",
    "youtubei.googleapis.com",
})


def _youtube(r: _Request) -> SearchQuery | None:
    # Not suggestqueries-clients6.youtube.com or suggestqueries.google.com (autocomplete): those
    # hosts are not in the table at all.
    vertical = "music" if r.host == "music.youtube.com" else "video"
    if r.path == "/youtubei/v1/search":
        # Searching from the box on a YouTube page does not load /results: the page POSTs
        # {"context": {"client": {...}}, "query": "..."} here and rewrites the address bar.
        # Scrolling for more results POSTs {"context": ..., "continuation": "..."} instead.
        if r.method != "POST" or r.body is None:
            return None
        data = _json_object(r.body)
        if data is None or "continuation" in data:
            return None
        term = data.get("query")
        return _found("youtube", term, vertical, "api") if isinstance(term, str) else None
    if r.method != "GET" or r.host == "youtubei.googleapis.com":
        return None
    if r.path == "/results":
        name = "search_query"
    elif r.path == "/search" and r.host == "music.youtube.com":
        name = "q"
    else:
        return None
    return _found("youtube", _decode(_params(r.query, frozenset({name})).get(name, "")), vertical)


_ECOSIA_PATHS = {"/search": "web", "/images": "images", "/videos": "video", "/news": "news"}


def _ecosia(r: _Request) -> SearchQuery | None:
    # ac.ecosia.org (autocomplete) is not in the table.
    vertical = _ECOSIA_PATHS.get(r.path)
    if vertical is None or r.method != "GET":
        return None
    return _found("ecosia", _decode(_params(r.query, _Q).get("q", "")), vertical)


def _brave(r: _Request) -> SearchQuery | None:
    # Not /api/suggest (autocomplete). The same four tabs as Ecosia, under the same paths.
    vertical = _ECOSIA_PATHS.get(r.path)
    if vertical is None or r.method != "GET":
        return None
    return _found("brave", _decode(_params(r.query, _Q).get("q", "")), vertical)


_YANDEX_DOMAINS = (
    "ru com by kz uz com.tr ua az com.am com.ge co.il ee lt lv md tj tm eu fr".split()
)
_YANDEX_PATHS = {
    "/search": "web", "/search/": "web", "/search/touch": "web", "/search/touch/": "web",
    "/search/pad": "web", "/search/pad/": "web", "/images/search": "images",
    "/images/touch/search": "images", "/video/search": "video", "/video/touch/search": "video",
}
_TEXT = frozenset({"text"})


def _yandex(r: _Request) -> SearchQuery | None:
    # suggest.yandex.* (autocomplete) is not in the table; /suggest/ and /maps/?text= (place
    # look-ups) on the search hosts are not search paths.
    vertical = _YANDEX_PATHS.get(r.path)
    if vertical is None or r.method != "GET":
        return None
    return _found("yandex", _decode(_params(r.query, _TEXT).get("text", "")), vertical)


_BAIDU_PARAMS = frozenset({"wd", "word", "ie"})
_GB_CHARSETS = frozenset({"gbk", "gb2312", "gb18030"})


def _baidu(r: _Request) -> SearchQuery | None:
    # Not /sugrec or sp0.baidu.com/.../su (autocomplete), nor image.baidu.com/search/acjson (more
    # results while scrolling).
    if r.host == "image.baidu.com":
        if r.path != "/search/index":
            return None
        vertical = "images"
    elif r.path in ("/s", "/baidu") or (r.path.startswith("/from=") and r.path.endswith("/s")):
        vertical = "web"  # m.baidu.com also has "/from=844b/s?word=..."
    else:
        return None
    if r.method != "GET":
        return None
    params = _params(r.query, _BAIDU_PARAMS)
    raw = params.get("wd") or params.get("word", "")
    return _found("baidu", _decode_baidu(raw, params.get("ie", "").lower()), vertical)


def _decode_baidu(raw: str, ie: str) -> str:
    # Baidu still takes terms escaped as GBK (older forms, toolbars and links), saying so with
    # ie=gbk or not at all: decode as the `ie` says, else as UTF-8, else as GB18030 (a superset
    # of GBK), else as UTF-8 with U+FFFD for the bad bytes.
    if not raw.isascii():
        return _decode(raw)
    data = unquote_to_bytes(raw.replace("+", " "))
    for encoding in ("gb18030", "utf-8") if ie in _GB_CHARSETS else ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    return data.decode("utf-8", "replace")


_SEARCH = frozenset({"search"})
_SPECIAL_SEARCH = "special:search"


def _wikipedia(r: _Request) -> SearchQuery | None:
    # Any language, desktop and mobile. Not /w/api.php (action=opensearch is the search box's
    # suggestions; list=search is what the apps call while you type) and not
    # /w/rest.php/v1/search/title (the search box's suggestions). Not
    # www.wikipedia.org/search-redirect.php either: it only redirects to the language's own
    # /w/index.php?search=, which is counted.
    if r.method != "GET":
        return None
    if r.path == "/w/index.php":
        # The search box submits here, with title=Special:Search in the wiki's own language
        # (Spezial:Suche); MediaWiki treats any index.php request with `search` as a search.
        text = _decode(_params(r.query, _SEARCH, last=True).get("search", ""))
        return _found("wikipedia", text, "web")
    if r.path == "/w/rest.php/v1/search/page":
        # The REST API's full-text search: documented as a search, not a suggestion endpoint,
        # and no Wikipedia page calls it on load, so nothing is counted twice.
        text = _decode(_params(r.query, _Q, last=True).get("q", ""))
        return _found("wikipedia", text, "web", "api")
    if not r.path.startswith("/wiki/"):
        return None
    title = unquote(r.raw_path[6:], errors="replace")
    if title[: len(_SPECIAL_SEARCH)].lower() != _SPECIAL_SEARCH:
        return None
    subpage = title[len(_SPECIAL_SEARCH) :]
    if subpage and not subpage.startswith("/"):
        return None  # another special page whose name starts the same
    # As MediaWiki does: the `search` parameter wins, else /wiki/Special:Search/Some_term, where
    # "_" is a space (and "+" is a plus: it is a path, not a query).
    text = _decode(_params(r.query, _SEARCH, last=True).get("search", ""))
    if not text.strip():
        text = subpage[1:].replace("_", " ")
    return _found("wikipedia", text, "web")


_TIKTOK_PAGES = {
    "/search": "video", "/search/video": "video", "/search/user": "people",
    "/search/live": "video", "/search/photo": "images",
}
_TIKTOK_APIS = {
    "/api/search/general/full": "video", "/api/search/item/full": "video",
    "/api/search/user/full": "people", "/api/search/live/full": "video",
}
_TIKTOK_PARAMS = frozenset({"keyword", "offset", "cursor"})


def _tiktok(r: _Request) -> SearchQuery | None:
    # Searching from the box on a TikTok page loads no page: it rewrites the address bar and
    # fetches /api/search/<kind>/full/?keyword=..., so both are read. The API's later pages
    # (offset or cursor not 0) are the same search scrolled. Not /api/search/general/preview/ or
    # /api/search/suggest/ (suggestions).
    if r.method != "GET":
        return None
    path = r.path.rstrip("/")
    vertical = _TIKTOK_PAGES.get(path)
    if vertical is not None:
        return _found("tiktok", _decode(_params(r.query, _Q).get("q", "")), vertical)
    vertical = _TIKTOK_APIS.get(path)
    if vertical is None:
        return None
    params = _params(r.query, _TIKTOK_PARAMS)
    if params.get("offset", "0") not in ("", "0") or params.get("cursor", "0") not in ("", "0"):
        return None
    return _found("tiktok", _decode(params.get("keyword", "")), vertical, "api")


_PINTEREST_DOMAINS = (
    "com co.uk ie de fr es it pt at ch se dk ca com.au nz com.mx cl jp co.kr ph ru".split()
)
_PINTEREST_PAGES = {
    "/search/pins": "images", "/search/boards": "images", "/search/users": "people",
    "/search/videos": "video", "/search/my_pins": "images",
}
_PINTEREST_SCOPES = {"pins": "images", "boards": "images", "users": "people", "videos": "video"}
_DATA = frozenset({"data"})


def _pinterest(r: _Request) -> SearchQuery | None:
    # Not /resource/AdvancedTypeaheadResource/ (suggestions) or pin and board pages.
    if r.method != "GET":
        return None
    path = r.path.rstrip("/")
    vertical = _PINTEREST_PAGES.get(path)
    if vertical is not None:
        return _found("pinterest", _decode(_params(r.query, _Q).get("q", "")), vertical)
    if path != "/resource/basesearchresource/get":
        return None
    # Searching from the box on a Pinterest page loads no page: it fetches this with
    # data={"options": {"query": "...", "scope": "pins", "bookmarks": [""], ...}, "context": {}}.
    # A bookmark that is not empty asks for the next page of the same search.
    raw = _params(r.query, _DATA).get("data", "")
    if len(raw) > MAX_BODY:
        return None
    data = _json_object(_decode(raw))
    options = data.get("options") if data is not None else None
    if not isinstance(options, dict):
        return None
    bookmarks = options.get("bookmarks")
    if isinstance(bookmarks, list) and any(b for b in bookmarks if isinstance(b, str)):
        return None
    term = options.get("query")
    if not isinstance(term, str):
        return None
    scope = options.get("scope")
    vertical = _PINTEREST_SCOPES.get(scope, "images") if isinstance(scope, str) else "images"
    return _found("pinterest", term, vertical, "api")


# ---------------------------------------------------------------------------------------------
# The host table: one dict lookup per request, a second for names under a listed one.


def _hosts() -> dict[str, _Engine]:
    hosts: dict[str, _Engine] = {}
    for domain in _GOOGLE_DOMAINS:
        # images.google.<tld> mostly redirects to www, which then counts the search again: a
        # repeat a second apart, which is better than missing the searches it answers itself.
        for prefix in ("", "www.", "images."):
            hosts[f"{prefix}google.{domain}"] = _google
    for host in ("www.bing.com", "bing.com", "cn.bing.com", "strict.bing.com"):
        hosts[host] = _bing
    for host in _DUCKDUCKGO_HOSTS:
        hosts[host] = _duckduckgo
    for host in (
        "search.yahoo.com", "images.search.yahoo.com", "video.search.yahoo.com",
        "news.search.yahoo.com",
    ):
        hosts[host] = _yahoo
    for host in _YOUTUBE_API_HOSTS:
        hosts[host] = _youtube
    hosts["www.ecosia.org"] = hosts["ecosia.org"] = _ecosia
    hosts["search.brave.com"] = _brave
    for domain in _YANDEX_DOMAINS:
        hosts[f"yandex.{domain}"] = hosts[f"www.yandex.{domain}"] = _yandex
    hosts["ya.ru"] = hosts["www.ya.ru"] = _yandex
    for host in ("www.baidu.com", "baidu.com", "m.baidu.com", "image.baidu.com"):
        hosts[host] = _baidu
    hosts["www.tiktok.com"] = hosts["tiktok.com"] = hosts["m.tiktok.com"] = _tiktok
    for domain in _PINTEREST_DOMAINS:
        hosts[f"pinterest.{domain}"] = hosts[f"www.pinterest.{domain}"] = _pinterest
    return hosts


_HOSTS = _hosts()
# A name one label under one of these is that engine: <lang>.wikipedia.org,
# <lang>.m.wikipedia.org, <country>.pinterest.com, <country>.search.yahoo.com and so on.
_UNDER: dict[str, _Engine] = {
    "wikipedia.org": _wikipedia,
    "m.wikipedia.org": _wikipedia,
    "pinterest.com": _pinterest,
    "search.yahoo.com": _yahoo,
    "images.search.yahoo.com": _yahoo,
    "video.search.yahoo.com": _yahoo,
    "news.search.yahoo.com": _yahoo,
}


def search_engine(host: str) -> str | None:
    """The engine whose searches `extract_search` reads on normalised `host` (one of
    `ENGINES`), or None: the hosts whose traffic must be decrypted for searches to be seen."""
    engine = _HOSTS.get(host) or _UNDER.get(host[host.find(".") + 1 :])
    if engine is None:
        return None
    return engine.__name__.lstrip("_")
