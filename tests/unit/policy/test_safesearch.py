"""Safe search, enforced and locked: request shapes as browsers send them to Google, Bing,
DuckDuckGo, Yahoo and YouTube, and the exact path (or header) that must leave the gateway. Expected
paths are written out by hand; a property test checks the rewrite on random parameter lists.
"""

from __future__ import annotations

import random

import pytest

from schoolgate.policy.safesearch import (
    ENGINES,
    LEVELS,
    NO_SAFE_MODE_ENGINES,
    YOUTUBE_MODES,
    Rewrite,
    SafeSearchPolicy,
    enforce,
    engine_suffixes,
    google_hosts,
    lock_form_body,
    lock_query,
    unsafe_engine,
)

STRICT = SafeSearchPolicy()
MODERATE = SafeSearchPolicy(level="moderate", youtube="moderate")
OFF = SafeSearchPolicy(level="off", youtube="off")

# Long opaque values as Google and Bing send them, so rows look like the real thing.
GWS = (
    "sca_esv=5f2d1e0a7b3c4d11&source=hp&ei=Zk1xZ4mYJvGBhbIPq4-1wQk&iflsig=AL9hbdgAAAAAZ3Fbdq"
    "&uact=5&oq=cats&gs_lp=Egdnd3Mtd2l6IgRjYXRzMgsQABiABBixAxiDATIFEAAYgAQ&sclient=gws-wiz"
)
CVID = "0A1B2C3D4E5F60718293A4B5C6D7E8F9"
VQD = "4-211484759826735426485637843838294946363"


# ---------------------------------------------------------------------------------------------
# Policy


def test_policy_defaults_to_strict_everywhere():
    assert (STRICT.level, STRICT.youtube) == ("strict", "strict")
    assert LEVELS == YOUTUBE_MODES == ("strict", "moderate", "off")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": "Strict"}, "safe-search level 'Strict' is not one of strict, moderate, off"),
        ({"level": "on"}, "safe-search level 'on' is not one of strict, moderate, off"),
        ({"youtube": "on"}, "YouTube mode 'on' is not one of strict, moderate, off"),
        ({"youtube": ""}, "YouTube mode '' is not one of strict, moderate, off"),
    ],
)
def test_policy_rejects_unknown_values_naming_the_allowed_ones(kwargs, message):
    with pytest.raises(ValueError) as e:
        SafeSearchPolicy(**kwargs)
    assert str(e.value) == message


def test_policy_is_frozen():
    with pytest.raises(AttributeError):
        STRICT.level = "off"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Search engines: (host, method, path sent, path that must leave the gateway) under STRICT

SEARCH_ROWS = [
    # Google web search typed on the home page, as Chrome sends it: safe=active is appended,
    # every other parameter keeps its place and its bytes.
    ("www.google.co.uk", f"/search?q=cats&{GWS}", f"/search?q=cats&{GWS}&safe=active"),
    ("www.google.com", "/search?q=cats&sourceid=chrome&ie=UTF-8",
     "/search?q=cats&sourceid=chrome&ie=UTF-8&safe=active"),
    # ... the user's own setting, wherever it is and however it is spelt, is replaced.
    ("www.google.co.uk", f"/search?q=cats&safe=off&{GWS}", f"/search?q=cats&{GWS}&safe=active"),
    ("www.google.co.uk", "/search?q=cats&safe=images", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/search?safe=off&q=cats&safe=off", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/search?q=cats&SAFE=off&Safe=off", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/search?q=cats&s%61fe=off", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/search?q=cats&%73%61%66%65=off", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/search?q=cats&safe", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/search?q=cats&safe=", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/search?q=cats&safe=Active", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/search?q=cats&safe=active&safe=off", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/search?q=cats&safe=active&safe=active", "/search?q=cats&safe=active"),
    # ... already locked, wherever it sits: left exactly as sent.
    ("www.google.co.uk", "/search?q=cats&safe=active", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/search?safe=active&q=cats&oq=a", "/search?safe=active&q=cats&oq=a"),
    # ... names that only look alike are someone else's parameters and stay.
    ("www.google.co.uk", "/search?q=cats&safesearch=off&xsafe=1&safe_=2",
     "/search?q=cats&safesearch=off&xsafe=1&safe_=2&safe=active"),
    # ... encodings stay as sent: + and %20 and %2B are not re-encoded.
    ("www.google.co.uk", "/search?q=a+b%20c%2Bd&safe=off&oq=a+b",
     "/search?q=a+b%20c%2Bd&oq=a+b&safe=active"),
    ("www.google.co.uk", "/search?q=%E7%8C%AB&hl=ja", "/search?q=%E7%8C%AB&hl=ja&safe=active"),
    # ... ';' separates nothing for Google: this is a search for "a;safe=off".
    ("www.google.co.uk", "/search?q=a;safe=off", "/search?q=a;safe=off&safe=active"),
    # ... no query, an empty query, empty segments.
    ("www.google.co.uk", "/search", "/search?safe=active"),
    ("www.google.co.uk", "/search?", "/search?safe=active"),
    ("www.google.co.uk", "/search?q=cats&&safe=off&", "/search?q=cats&safe=active"),
    # Google image search: the old tbm=isch form, the new udm=2 form, the image viewer.
    ("www.google.co.uk", "/search?q=cats&tbm=isch&ved=2ahUKEwj&bih=969&biw=1920&hl=en-GB",
     "/search?q=cats&tbm=isch&ved=2ahUKEwj&bih=969&biw=1920&hl=en-GB&safe=active"),
    ("www.google.co.uk", "/search?q=cats&udm=2&safe=off", "/search?q=cats&udm=2&safe=active"),
    ("www.google.co.uk", "/imgres?imgurl=https%3A%2F%2Fexample.org%2Fcat.jpg&tbnid=AbC&docid=XyZ",
     "/imgres?imgurl=https%3A%2F%2Fexample.org%2Fcat.jpg&tbnid=AbC&docid=XyZ&safe=active"),
    ("images.google.com", "/images?q=cats", "/images?q=cats&safe=active"),
    # Google home pages, autocomplete and the result fragments loaded while scrolling.
    ("www.google.co.uk", "/", "/?safe=active"),
    ("www.google.co.uk", "/webhp?hl=en&sa=X", "/webhp?hl=en&sa=X&safe=active"),
    ("www.google.co.uk", "/complete/search?q=cat&cp=3&client=gws-wiz&xssi=t&hl=en-GB&authuser=0",
     "/complete/search?q=cat&cp=3&client=gws-wiz&xssi=t&hl=en-GB&authuser=0&safe=active"),
    ("www.google.co.uk", "/async/bgasy?ei=Zk1x&yv=3&cs=0&async=_fmt:jspb",
     "/async/bgasy?ei=Zk1x&yv=3&cs=0&async=_fmt:jspb&safe=active"),
    # Google country domains, bare and www., and host spelling the browser may send.
    ("google.co.uk", "/search?q=cats", "/search?q=cats&safe=active"),
    ("www.google.com.au", "/search?q=cats", "/search?q=cats&safe=active"),
    ("www.google.de", "/search?q=katzen", "/search?q=katzen&safe=active"),
    ("www.google.com.br", "/search?q=gatos", "/search?q=gatos&safe=active"),
    ("www.google.co.jp", "/search?q=%E7%8C%AB", "/search?q=%E7%8C%AB&safe=active"),
    ("www.google.cat", "/search?q=gats", "/search?q=gats&safe=active"),
    ("images.google.fr", "/images?q=chats", "/images?q=chats&safe=active"),
    ("WWW.Google.CO.UK", "/search?q=cats", "/search?q=cats&safe=active"),
    ("www.google.com.", "/search?q=cats", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/SEARCH?q=cats", "/SEARCH?q=cats&safe=active"),
    # Bing web search from the home page box; adlt replaced however it is spelt (ASP.NET reads
    # names without regard to case).
    ("www.bing.com",
     f"/search?q=cats&form=QBLH&sp=-1&ghc=1&lq=0&pq=cats&sc=10-4&qs=n&sk=&cvid={CVID}&ghsh=0",
     f"/search?q=cats&form=QBLH&sp=-1&ghc=1&lq=0&pq=cats&sc=10-4&qs=n&sk=&cvid={CVID}&ghsh=0"
     "&adlt=strict"),
    ("www.bing.com", "/search?q=cats&adlt=off&form=QBLH", "/search?q=cats&form=QBLH&adlt=strict"),
    ("www.bing.com", "/search?q=cats&ADLT=off&Adlt=moderate", "/search?q=cats&adlt=strict"),
    ("www.bing.com", "/search?q=cats&adlt=strict", "/search?q=cats&adlt=strict"),
    # ... Bing images, image infinite scroll, videos, news and autocomplete; other hosts.
    ("www.bing.com", "/images/search?q=cats&form=HDRSC3&first=1",
     "/images/search?q=cats&form=HDRSC3&first=1&adlt=strict"),
    ("www.bing.com", "/images/async?q=cats&first=36&count=35&mmasync=1",
     "/images/async?q=cats&first=36&count=35&mmasync=1&adlt=strict"),
    ("www.bing.com", "/videos/search?q=cats&FORM=HDRSC4",
     "/videos/search?q=cats&FORM=HDRSC4&adlt=strict"),
    ("www.bing.com", "/news/search?q=cats&FORM=HDRSC6",
     "/news/search?q=cats&FORM=HDRSC6&adlt=strict"),
    ("www.bing.com", f"/AS/Suggestions?pt=page.home&mkt=en-gb&qry=cats&cp=4&cvid={CVID}",
     f"/AS/Suggestions?pt=page.home&mkt=en-gb&qry=cats&cp=4&cvid={CVID}&adlt=strict"),
    ("bing.com", "/search?q=cats", "/search?q=cats&adlt=strict"),
    ("cn.bing.com", "/search?q=cats", "/search?q=cats&adlt=strict"),
    # DuckDuckGo: the JavaScript site, its image tab, the no-JavaScript and lite sites (GET).
    ("duckduckgo.com", "/?q=cats&t=h_&ia=web", "/?q=cats&t=h_&ia=web&kp=1"),
    ("duckduckgo.com", "/?q=cats&kp=-2&t=h_&ia=web", "/?q=cats&t=h_&ia=web&kp=1"),
    ("duckduckgo.com", "/?q=cats&KP=-2&kp=-1", "/?q=cats&kp=1"),
    ("duckduckgo.com", "/?q=cats&t=h_&iar=images&iax=images&ia=images",
     "/?q=cats&t=h_&iar=images&iax=images&ia=images&kp=1"),
    ("duckduckgo.com", "/?q=cats&kp=1&t=h_", "/?q=cats&kp=1&t=h_"),
    ("html.duckduckgo.com", "/html/?q=cats", "/html/?q=cats&kp=1"),
    ("lite.duckduckgo.com", "/lite/?q=cats&kp=-2", "/lite/?q=cats&kp=1"),
    ("duckduckgo.com", "/ac/?q=cats&kl=wt-wt", "/ac/?q=cats&kl=wt-wt&kp=1"),
    # ... the result APIs the page calls: the relaxing p= and ex= go, p=1 and kp=1 are pinned.
    ("links.duckduckgo.com",
     f"/d.js?q=cats&kl=wt-wt&l=wt-wt&p=&s=0&df=&vqd={VQD}&bing_market=en-GB&ex=-2&sp=0",
     f"/d.js?q=cats&kl=wt-wt&l=wt-wt&s=0&df=&vqd={VQD}&bing_market=en-GB&sp=0&kp=1&p=1"),
    ("duckduckgo.com", f"/i.js?l=wt-wt&o=json&q=cats&vqd={VQD}&f=,,,,,&p=-1",
     f"/i.js?l=wt-wt&o=json&q=cats&vqd={VQD}&f=,,,,,&kp=1&p=1"),
    ("duckduckgo.com", f"/v.js?l=wt-wt&o=json&q=cats&vqd={VQD}&f=,,,&p=-2",
     f"/v.js?l=wt-wt&o=json&q=cats&vqd={VQD}&f=,,,&kp=1&p=1"),
    ("duckduckgo.com", f"/news.js?l=wt-wt&o=json&noamp=1&q=cats&vqd={VQD}&p=1&kp=1",
     f"/news.js?l=wt-wt&o=json&noamp=1&q=cats&vqd={VQD}&p=1&kp=1"),
    # Yahoo: web, with its tracking in the path (;_ylt=...), images, video, regional hosts.
    ("search.yahoo.com", "/search?p=cats&fr=yfp-t&fr2=p%3Afp%2Cm%3Asb&ei=UTF-8&fp=1",
     "/search?p=cats&fr=yfp-t&fr2=p%3Afp%2Cm%3Asb&ei=UTF-8&fp=1&vm=r"),
    ("uk.search.yahoo.com", "/search;_ylt=AwrFGxMNZnVlKQQAhBJLBQx.;_ylu=Y29sbwNpcjI-?p=cats&vm=p",
     "/search;_ylt=AwrFGxMNZnVlKQQAhBJLBQx.;_ylu=Y29sbwNpcjI-?p=cats&vm=r"),
    ("images.search.yahoo.com", "/search/images?p=cats&fr=yfp-t&ei=UTF-8&VM=p",
     "/search/images?p=cats&fr=yfp-t&ei=UTF-8&vm=r"),
    ("video.search.yahoo.com", "/search/video?p=cats&fr=yfp-t",
     "/search/video?p=cats&fr=yfp-t&vm=r"),
    ("fr.search.yahoo.com", "/search?p=chats", "/search?p=chats&vm=r"),
    ("uk.images.search.yahoo.com", "/search/images?p=cats", "/search/images?p=cats&vm=r"),
    ("search.yahoo.com", "/yhs/search?hspart=adk&p=cats", "/yhs/search?hspart=adk&p=cats&vm=r"),
]

ENGINE_OF = {
    "google": "google",
    "bing": "bing",
    "duckduckgo": "duckduckgo",
    "yahoo": "yahoo",
}


def _engine_for(host: str) -> str:
    for word, engine in ENGINE_OF.items():
        if word in host.lower():
            return engine
    raise AssertionError(host)


@pytest.mark.parametrize(("host", "path", "expected"), SEARCH_ROWS)
def test_search_requests_leave_with_safe_search_locked(host, path, expected):
    rewrite = enforce("GET", host, path, {}, STRICT)
    assert rewrite == Rewrite(engine=_engine_for(host), path=expected, changed=expected != path)


@pytest.mark.parametrize(("host", "path", "expected"), SEARCH_ROWS)
def test_a_locked_request_is_left_alone(host, path, expected):
    # What leaves the gateway, seen again (a retry, a second proxy): nothing more to change.
    again = enforce("GET", host, expected, {}, STRICT)
    assert again is not None
    assert (again.path, again.changed) == (expected, False)


# Moderate, where the engine has one; Google has none a URL can lock, so it stays filtered.
MODERATE_ROWS = [
    ("www.google.co.uk", "/search?q=cats&safe=off", "/search?q=cats&safe=active"),
    ("www.google.co.uk", "/search?q=cats&safe=images", "/search?q=cats&safe=active"),
    ("www.bing.com", "/search?q=cats&adlt=off", "/search?q=cats&adlt=moderate"),
    ("www.bing.com", "/search?q=cats&adlt=strict", "/search?q=cats&adlt=moderate"),
    ("duckduckgo.com", "/?q=cats&kp=-2&t=h_", "/?q=cats&t=h_&kp=-1"),
    # ... the result APIs lose p= and ex= altogether (DuckDuckGo's default is moderate).
    ("links.duckduckgo.com", f"/d.js?q=cats&p=1&s=0&vqd={VQD}&ex=-2",
     f"/d.js?q=cats&s=0&vqd={VQD}&kp=-1"),
    ("duckduckgo.com", f"/i.js?o=json&q=cats&vqd={VQD}&p=-2",
     f"/i.js?o=json&q=cats&vqd={VQD}&kp=-1"),
    ("search.yahoo.com", "/search?p=cats&vm=p", "/search?p=cats&vm=i"),
    ("search.yahoo.com", "/search?p=cats&vm=r", "/search?p=cats&vm=i"),
]


@pytest.mark.parametrize(("host", "path", "expected"), MODERATE_ROWS)
def test_moderate_locks_each_engines_moderate_setting(host, path, expected):
    rewrite = enforce("GET", host, path, {}, MODERATE)
    assert rewrite is not None
    assert (rewrite.engine, rewrite.path, rewrite.changed) == (_engine_for(host), expected, True)


# Requests this module must leave alone (None): other hosts that only look like search engines,
# paths on a search host that are not a search, tunnels.
IGNORED_ROWS = [
    ("GET", "www.google.com", "/maps?q=cats"),
    ("GET", "www.google.com", "/url?q=https://example.org/&sa=U"),
    ("POST", "www.google.com", "/gen_204?atyp=csi&ei=Zk1x"),
    ("GET", "www.google.com", "/xjs/_/js/k=xjs.s.en_GB.abc/m=cdos,hsm/rt=j"),
    ("GET", "mail.google.com", "/search?q=cats"),
    ("GET", "google.evil.com", "/search?q=cats"),
    ("GET", "www.google.com.evil.net", "/search?q=cats"),
    ("GET", "notgoogle.com", "/search?q=cats"),
    ("GET", "www.google.example", "/search?q=cats"),
    ("GET", "www.bing.com", "/maps?q=cats"),
    ("POST", "www.bing.com", "/fd/ls/GLinkPing.aspx?IG=ABC&ID=SERP,5093.1"),
    ("GET", "www.bing.com", "/sa/simg/favicon-trans-bg-blue-mg.ico"),
    ("GET", "duckduckgo.com", "/dist/wpm.main.3b4d1e8d.js"),
    ("GET", "duckduckgo.com", "/settings"),
    ("GET", "duck.com", "/?q=cats"),
    ("GET", "www.yahoo.com", "/search?p=cats"),
    ("GET", "notsearch.yahoo.com", "/search?p=cats"),
    ("GET", "search.yahoo.com.evil.net", "/search?p=cats"),
    ("GET", "search.yahoo.com", "/preferences/preferences?pref_done=1"),
    ("GET", "music.youtube.com", "/search?q=cats"),
    ("GET", "www.youtube.com.evil.net", "/results?search_query=cats"),
    ("GET", "example.org", "/search?q=cats&safe=off"),
    ("CONNECT", "www.google.com", "www.google.com:443"),
    ("CONNECT", "www.youtube.com", "www.youtube.com:443"),
]


@pytest.mark.parametrize(("method", "host", "path"), IGNORED_ROWS)
def test_other_requests_are_not_touched(method, host, path):
    assert enforce(method, host, path, {}, STRICT) is None


@pytest.mark.parametrize(("host", "path", "_expected"), SEARCH_ROWS[::7])
def test_level_off_leaves_search_alone(host, path, _expected):
    assert enforce("GET", host, path, {}, SafeSearchPolicy(level="off", youtube="strict")) is None


def test_youtube_off_does_not_turn_search_off():
    policy = SafeSearchPolicy(level="strict", youtube="off")
    rewrite = enforce("GET", "www.google.co.uk", "/search?q=cats", {}, policy)
    assert rewrite is not None and rewrite.path == "/search?q=cats&safe=active"


@pytest.mark.parametrize(
    "host",
    # Independent spot checks on Google's own country list (google.com/supported_domains).
    ["google.com", "www.google.co.uk", "images.google.co.uk", "www.google.ie",
     "www.google.com.au", "www.google.co.nz", "www.google.ca", "www.google.co.in",
     "www.google.com.sg", "www.google.co.za", "www.google.fr", "www.google.es", "www.google.it",
     "www.google.nl", "www.google.pl", "www.google.com.mx", "www.google.com.tr", "www.google.ru",
     "www.google.com.hk", "www.google.cn"],
)
def test_google_country_domains_are_covered(host):
    assert host in google_hosts()
    rewrite = enforce("GET", host, "/search?q=cats&safe=off", {}, STRICT)
    assert rewrite is not None and rewrite.path == "/search?q=cats&safe=active"


def test_every_engine_label_is_bounded():
    assert ENGINES == ("google", "bing", "duckduckgo", "yahoo", "youtube")
    rewrites = [enforce("GET", host, path, {}, STRICT) for host, path, _ in SEARCH_ROWS]
    labels = {r.engine for r in rewrites if r is not None}
    assert labels == {"google", "bing", "duckduckgo", "yahoo"}


# ---------------------------------------------------------------------------------------------
# DuckDuckGo's no-JavaScript sites POST the search in a form body

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("host", "path", "headers", "expected_path", "expected_form"),
    [
        # The html. and lite. sites, as a browser submits their forms: kp goes in the URL and
        # the addon is told to lock the body too.
        ("html.duckduckgo.com", "/html/", FORM, "/html/?kp=1", (("kp", "1"),)),
        ("lite.duckduckgo.com", "/lite/", FORM, "/lite/?kp=1", (("kp", "1"),)),
        ("html.duckduckgo.com", "/html/",
         {"content-type": "application/x-www-form-urlencoded; charset=UTF-8"}, "/html/?kp=1",
         (("kp", "1"),)),
        ("html.duckduckgo.com", "/html/", {"CONTENT-TYPE": "Application/X-WWW-Form-Urlencoded"},
         "/html/?kp=1", (("kp", "1"),)),
        # ... a POST with no type is still read as a form by the server.
        ("html.duckduckgo.com", "/html/", {}, "/html/?kp=1", (("kp", "1"),)),
        # ... a body that is not a form has nothing to lock in it.
        ("html.duckduckgo.com", "/html/", {"Content-Type": "application/json"}, "/html/?kp=1", ()),
        # ... the result APIs and other engines never get form locking.
        ("links.duckduckgo.com", "/d.js?q=cats", FORM, "/d.js?q=cats&kp=1&p=1", ()),
        ("www.bing.com", "/search?q=cats", FORM, "/search?q=cats&adlt=strict", ()),
    ],
)
def test_form_posts_lock_the_body_too(host, path, headers, expected_path, expected_form):
    rewrite = enforce("POST", host, path, headers, STRICT)
    assert rewrite is not None
    assert (rewrite.path, rewrite.form_params) == (expected_path, expected_form)


def test_moderate_form_posts_lock_kp_minus_one():
    rewrite = enforce("POST", "html.duckduckgo.com", "/html/", FORM, MODERATE)
    assert rewrite is not None
    assert (rewrite.path, rewrite.form_params) == ("/html/?kp=-1", (("kp", "-1"),))


def test_get_requests_have_no_form_to_lock():
    rewrite = enforce("GET", "html.duckduckgo.com", "/html/?q=cats", FORM, STRICT)
    assert rewrite is not None and rewrite.form_params == ()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # The html. form as a browser submits it, with the user's own choice in it.
        (b"q=cats&b=&kl=&df=&kp=-2", b"q=cats&b=&kl=&df=&kp=1"),
        (b"q=cats&b=&kl=&df=", b"q=cats&b=&kl=&df=&kp=1"),
        (b"q=cats&kp=1", b"q=cats&kp=1"),
        (b"", b"kp=1"),
        # ... bytes that are not ASCII (a browser that did not escape them) come through as sent.
        (b"q=caf\xc3\xa9+au+lait&kp=-2", b"q=caf\xc3\xa9+au+lait&kp=1"),
        (b"q=\xff\xfe&KP=-1", b"q=\xff\xfe&kp=1"),
    ],
)
def test_lock_form_body(body, expected):
    assert lock_form_body(body, (("kp", "1"),)) == expected


# ---------------------------------------------------------------------------------------------
# YouTube: a header, on every host Google lists and every method


@pytest.mark.parametrize(
    ("method", "host", "path"),
    [
        # Pages and searches in the browser.
        ("GET", "www.youtube.com", "/results?search_query=cats"),
        ("GET", "www.youtube.com", "/watch?v=dQw4w9WgXcQ"),
        ("GET", "m.youtube.com", "/results?search_query=cats"),
        ("GET", "www.youtube-nocookie.com", "/embed/dQw4w9WgXcQ?rel=0"),
        ("GET", "youtube.com", "/"),
        # The page's own API calls (search as you scroll, the player) and the apps' API hosts.
        ("POST", "www.youtube.com", "/youtubei/v1/search?prettyPrint=false"),
        ("POST", "www.youtube.com", "/youtubei/v1/player?prettyPrint=false"),
        ("POST", "youtubei.googleapis.com", "/youtubei/v1/browse?key=AIzaSyA&prettyPrint=false"),
        ("GET", "youtube.googleapis.com", "/youtube/v3/search?part=snippet&q=cats"),
        ("GET", "WWW.YOUTUBE.COM.", "/results?search_query=cats"),
    ],
)
def test_youtube_gets_the_restrict_header(method, host, path):
    headers = {"Content-Type": "application/json"} if method == "POST" else {}
    assert enforce(method, host, path, headers, STRICT) == Rewrite(
        engine="youtube", path=path, set_headers=(("YouTube-Restrict", "Strict"),), changed=True
    )
    assert enforce(method, host, path, headers, MODERATE) == Rewrite(
        engine="youtube", path=path, set_headers=(("YouTube-Restrict", "Moderate"),), changed=True
    )
    assert enforce(method, host, path, headers, SafeSearchPolicy(youtube="off")) is None


@pytest.mark.parametrize(
    ("sent", "changed"),
    [
        # The same value already there (another filter in front of us set it): nothing changes.
        ({"YouTube-Restrict": "Strict"}, False),
        ({"youtube-restrict": "Strict"}, False),
        # A weaker or made-up value the client sent is replaced.
        ({"YouTube-Restrict": "Moderate"}, True),
        ({"youtube-restrict": "Off"}, True),
        ({}, True),
    ],
)
def test_youtube_header_replaces_what_the_client_sent(sent, changed):
    rewrite = enforce("GET", "www.youtube.com", "/results?search_query=cats", sent, STRICT)
    assert rewrite is not None
    assert (rewrite.set_headers, rewrite.changed) == ((("YouTube-Restrict", "Strict"),), changed)


def test_youtube_ignores_the_search_level():
    policy = SafeSearchPolicy(level="off", youtube="strict")
    rewrite = enforce("GET", "www.youtube.com", "/results?search_query=cats", {}, policy)
    assert rewrite is not None and rewrite.set_headers == (("YouTube-Restrict", "Strict"),)


# ---------------------------------------------------------------------------------------------
# lock_query on its own


@pytest.mark.parametrize(
    ("query", "params", "expected"),
    [
        # Several locked names: removed wherever they are, appended in the given order.
        ("q=cats&p=-1&ex=-2&kp=-2", (("kp", "1"), ("p", "1"), ("ex", None)), "q=cats&kp=1&p=1"),
        ("q=cats&kp=1&p=1", (("kp", "1"), ("p", "1"), ("ex", None)), "q=cats&kp=1&p=1"),
        ("p=1&q=cats&kp=1", (("kp", "1"), ("p", "1"), ("ex", None)), "p=1&q=cats&kp=1"),
        # ... a removal-only name present means a rebuild, even with the rest in place.
        ("q=cats&kp=1&p=1&ex=-1", (("kp", "1"), ("p", "1"), ("ex", None)), "q=cats&kp=1&p=1"),
        # ... only removals: nothing to append.
        ("q=cats&ex=-2", (("ex", None),), "q=cats"),
        ("q=cats", (("ex", None),), "q=cats"),
        ("", (("ex", None),), ""),
        # A name that is not ASCII but lowercases to one (the Kelvin sign before p) is not kp.
        ("%E2%84%AAp=-2&q=cats", (("kp", "1"),), "%E2%84%AAp=-2&q=cats&kp=1"),
        # A '=' inside a value, a name with no value, a stray '%' in a name: all kept.
        ("q=a=b&flag&x%zz=1", (("safe", "active"),), "q=a=b&flag&x%zz=1&safe=active"),
    ],
)
def test_lock_query(query, params, expected):
    assert lock_query(query, params) == expected


@pytest.mark.parametrize("name", ["", "a&b", "a=b", "sa fe", "s%61fe", "ſafe"])
def test_lock_query_rejects_names_that_are_not_plain(name):
    with pytest.raises(ValueError, match="is not a plain query parameter name"):
        lock_query("q=cats", ((name, "1"),))


# Spellings a server decodes to the locked name, and names that must never be mistaken for it.
LOCKED_SPELLINGS = {
    "safe": ["safe", "SAFE", "Safe", "sAfE", "s%61fe", "%73afe", "%73%61%66%65", "saf%45"],
    "kp": ["kp", "KP", "Kp", "k%70", "%6B%70"],
}
OTHER_NAMES = {
    "safe": ["q", "oq", "ei", "sca_esv", "tbm", "udm", "safesearch", "xsafe", "safe_", "saf", "afe",
             "s", "safe%20", "safe+", "%E2%84%AAp", "sa%66", "source"],
    "kp": ["q", "t", "ia", "iax", "kpp", "xkp", "k", "p", "kl", "%E2%84%AAp", "k+p", "vqd"],
}
VALUE_ALPHABET = "abcXYZ019+-._~=;,:/!*'()%20"


@pytest.mark.parametrize(("name", "value"), [("safe", "active"), ("kp", "1")])
def test_property_other_parameters_survive_in_order_and_the_lock_appears_once(name, value):
    locked = f"{name}={value}"
    for seed in range(1500):
        rng = random.Random(seed)
        segments: list[str] = []
        others: list[str] = []
        locked_segments: list[str] = []
        for _ in range(rng.randrange(0, 14)):
            roll = rng.random()
            if roll < 0.08:
                segments.append("")  # a stray '&'
                continue
            value_text = "".join(rng.choice(VALUE_ALPHABET) for _ in range(rng.randrange(0, 8)))
            if roll < 0.35:
                spelling = rng.choice(LOCKED_SPELLINGS[name])
                seg = locked if rng.random() < 0.3 else f"{spelling}={value_text}"
                if rng.random() < 0.05:
                    seg = spelling  # a bare name
                segments.append(seg)
                locked_segments.append(seg)
            else:
                seg = f"{rng.choice(OTHER_NAMES[name])}={value_text}"
                if rng.random() < 0.1:
                    seg = rng.choice(OTHER_NAMES[name])
                segments.append(seg)
                others.append(seg)
        query = "&".join(segments)
        out = lock_query(query, ((name, value),))
        parts = out.split("&")
        context = f"seed {seed}: {query!r} -> {out!r}"
        assert parts.count(locked) == 1, context
        assert [p for p in parts if p and p != locked] == others, context
        if locked_segments == [locked]:
            assert out == query, context  # already locked: not one byte changes
        else:
            assert parts[-1] == locked, context


# ---------------------------------------------------------------------------------------------
# Search engines without a lockable safe mode


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        # Label-suffix matching: the entry and its subdomains, never a longer name.
        ("startpage.com", "startpage.com"),
        ("www.startpage.com", "startpage.com"),
        ("eu.startpage.com", "startpage.com"),
        ("badstartpage.com", None),
        ("startpage.com.evil.net", None),
        ("www.ecosia.org", "ecosia.org"),
        ("search.brave.com", "search.brave.com"),
        ("brave.com", None),
        ("yandex.ru", "yandex.ru"),
        ("images.yandex.com", "yandex.com"),
        ("www.baidu.com", "baidu.com"),
        ("image.baidu.com", "baidu.com"),
        # Host spelling the browser may send.
        ("WWW.STARTPAGE.COM", "startpage.com"),
        ("www.startpage.com.", "startpage.com"),
        # The engines whose safe search is locked are never on the list, nor is swisscows
        # (always filtered).
        ("www.google.co.uk", None),
        ("www.bing.com", None),
        ("duckduckgo.com", None),
        ("html.duckduckgo.com", None),
        ("search.yahoo.com", None),
        ("uk.search.yahoo.com", None),
        ("www.youtube.com", None),
        ("swisscows.com", None),
        ("", None),
    ],
)
def test_unsafe_engine_by_default(host, expected):
    assert unsafe_engine(host) == expected


@pytest.mark.parametrize(
    ("blocked", "host", "expected"),
    [
        # A school's own list, as typed into the config: case, "*." and dots are forgiven.
        (["*.Example.org", ".search.example.net."], "www.example.org", "example.org"),
        (["*.Example.org", ".search.example.net."], "search.example.net", "search.example.net"),
        (["*.Example.org", ".search.example.net."], "example.net", None),
        (("example.org",), "a.b.example.org", "example.org"),
        (frozenset({"example.org", "b.example.org"}), "a.b.example.org", "b.example.org"),
        ((), "www.startpage.com", None),
        (iter(["example.org"]), "example.org", "example.org"),
        (["searchbox"], "searchbox", "searchbox"),  # a single-label intranet name
    ],
)
def test_unsafe_engine_with_a_list(blocked, host, expected):
    assert unsafe_engine(host, blocked) == expected


@pytest.mark.parametrize("entry", ["", "  ", "*.", "https://startpage.com", "startpage.com/search",
                                   "startpage.com:443", "start page.com", "a..b"])
def test_engine_suffixes_rejects_what_is_not_a_host(entry):
    with pytest.raises(ValueError) as e:
        engine_suffixes(["startpage.com", entry])
    assert str(e.value) == f"search engine {entry!r} is not a host name such as 'startpage.com'"


def test_default_list_is_normalised_and_has_no_duplicates():
    assert len(set(NO_SAFE_MODE_ENGINES)) == len(NO_SAFE_MODE_ENGINES)
    assert engine_suffixes(NO_SAFE_MODE_ENGINES) == frozenset(NO_SAFE_MODE_ENGINES)
