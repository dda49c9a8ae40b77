"""Search extraction: every engine's results pages and in-page searches as browsers send them, the
autocomplete, asset and look-alike requests that must give nothing, and the decoding of terms
(`+`, percent-escapes, bad bytes, emoji) before the classifier's normaliser."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from schoolgate.classify.keywords import normalise_text
from schoolgate.classify.search import (
    ENGINES,
    MAX_BODY,
    MAX_TERM,
    VERTICALS,
    VIAS,
    SearchQuery,
    extract_search,
    needs_body,
)

FORM = "application/x-www-form-urlencoded"

# ---------------------------------------------------------------------------------------------
# Results pages (GET), with the parameters browsers really send


@pytest.mark.parametrize(
    ("host", "path", "engine", "term", "vertical"),
    [
        # Google web search from the home page, and from Chrome's address bar.
        (
            "www.google.com",
            "/search?q=how+to+tie+a+tie&sca_esv=7f1b2c3d4e5f6a7b&source=hp"
            "&ei=Zk1pZ7-yNq2Ehbv1P5KX0AE&iflsig=AL9hbdgAAAAAZ2lbdpQm6m4Ii3Hh1s7nQ0Wk2r8gVvYw"
            "&ved=0ahUKEwi_y-3M5ZyKAxUtQkEAHb1LBBoQ4dUDCA8&uact=5&oq=how+to"
            "&gs_lp=Egdnd3Mtd2l6IgZob3cgdG8yBRAAGIAEMgUQABiABEirC1AAWKUFcAB4AJABAJgBVKAB7QKqAQE1"
            "&sclient=gws-wiz",
            "google", "how to tie a tie", "web",
        ),
        (
            "www.google.co.uk",
            "/search?q=self+harm+help&oq=self+harm+help"
            "&gs_lcrp=EgZjaHJvbWUyBggAEEUYOdIBCDMyMTFqMGo3qAIAsAIA&sourceid=chrome&ie=UTF-8",
            "google", "self harm help", "web",
        ),
        # Google's tabs: udm (current) and tbm (older links and bookmarks).
        (
            "www.google.co.uk",
            "/search?q=red+panda&sca_esv=1a2b3c&udm=2&fbs=AEQNm0Aa4sjWe7Rqy32pFwRj0UkW"
            "&sa=X&ved=2ahUKEwjL8&biw=1536&bih=730&dpr=1.25",
            "google", "red panda", "images",
        ),
        ("www.google.com", "/search?q=red+panda&tbm=isch&source=lnms&sa=X&ved=0ahUKEw", "google",
         "red panda", "images"),
        ("www.google.com", "/search?q=volcano+eruption&udm=7&sa=X", "google", "volcano eruption",
         "video"),
        ("www.google.com", "/search?q=volcano+eruption&tbm=vid", "google", "volcano eruption",
         "video"),
        ("www.google.com", "/search?q=general+election&tbm=nws&source=lnms", "google",
         "general election", "news"),
        ("www.google.com", "/search?q=cheap+trainers&tbm=shop", "google", "cheap trainers",
         "shopping"),
        ("www.google.com", "/search?q=cats&udm=14", "google", "cats", "web"),
        ("www.google.com", "/search?q=why+is+the+sky+blue&udm=50&aep=1", "google",
         "why is the sky blue", "ai"),
        ("www.google.com", "/search?q=cafes&tbm=lcl", "google", "cafes", "other"),
        ("www.google.com", "/search?q=cats&udm=999", "google", "cats", "other"),
        # udm wins over tbm when a link carries both.
        ("www.google.com", "/search?q=cats&tbm=isch&udm=7", "google", "cats", "video"),
        # /images?q= and /webhp?q=; a second results page is a page load too.
        ("www.google.com", "/images?q=puffins&hl=en", "google", "puffins", "images"),
        ("www.google.com", "/webhp?q=puffins&hl=en-GB", "google", "puffins", "web"),
        ("www.google.com", "/search?q=puffins&sca_esv=1&ei=x&start=10&sa=N", "google", "puffins",
         "web"),
        # The advanced-search form sends no q.
        ("www.google.com", "/search?as_q=river+pollution&as_epq=thames&as_oq=&as_eq=&lr=&cr=",
         "google", "river pollution thames", "web"),
        # Google ccTLDs, with and without www.
        ("google.co.uk", "/search?q=a", "google", "a", "web"),
        ("www.google.com.au", "/search?q=a", "google", "a", "web"),
        ("google.de", "/search?q=a", "google", "a", "web"),
        ("www.google.fr", "/search?q=a", "google", "a", "web"),
        ("www.google.com.br", "/search?q=a", "google", "a", "web"),
        ("www.google.co.in", "/search?q=a", "google", "a", "web"),
        ("www.google.co.jp", "/search?q=a", "google", "a", "web"),
        ("www.google.pl", "/search?q=a", "google", "a", "web"),
        ("google.ro", "/search?q=a", "google", "a", "web"),
        ("www.google.es", "/search?q=a", "google", "a", "web"),
        ("www.google.com.pk", "/search?q=a", "google", "a", "web"),
        ("www.google.ae", "/search?q=a", "google", "a", "web"),
        ("www.google.ie", "/search?q=a", "google", "a", "web"),
        ("www.google.co.za", "/search?q=a", "google", "a", "web"),
        ("www.google.com.tr", "/search?q=a", "google", "a", "web"),
        ("www.google.cat", "/search?q=a", "google", "a", "web"),
        ("images.google.co.uk", "/images?q=puffins", "google", "puffins", "images"),
        # Bing: the home page's box, and its tabs.
        (
            "www.bing.com",
            "/search?q=vaping+side+effects&form=QBLH&sp=-1&ghc=1&lq=0&pq=vaping+side+effec"
            "&sc=10-17&qs=n&sk=&cvid=9F2C1E0B8A7D4E6F9A1B2C3D4E5F6A7B&ghsh=0&ghacc=0&ghpl=",
            "bing", "vaping side effects", "web",
        ),
        ("www.bing.com", "/images/search?q=red+panda&form=HDRSC2&first=1&cw=1177&ch=759", "bing",
         "red panda", "images"),
        ("www.bing.com", "/videos/search?q=volcano&FORM=HDRSC4", "bing", "volcano", "video"),
        ("www.bing.com", "/news/search?q=general+election&FORM=HDRSC7", "bing",
         "general election", "news"),
        ("cn.bing.com", "/search?q=%E7%86%8A%E7%8C%AB&form=ANNTH1", "bing", "熊猫", "web"),
        ("bing.com", "/search?q=cats", "bing", "cats", "web"),
        # Bing is served by IIS, which ignores the path's case.
        ("www.bing.com", "/Search?q=cats", "bing", "cats", "web"),
        # DuckDuckGo: the main page and its tabs, and the html and lite front ends by GET.
        ("duckduckgo.com", "/?q=knife+crime+statistics&t=h_&ia=web", "duckduckgo",
         "knife crime statistics", "web"),
        ("duckduckgo.com", "/?q=red+panda&t=h_&iax=images&ia=images", "duckduckgo", "red panda",
         "images"),
        ("duckduckgo.com", "/?q=volcano&t=h_&iax=videos&ia=videos", "duckduckgo", "volcano",
         "video"),
        ("duckduckgo.com", "/?q=election&t=h_&iar=news&ia=news", "duckduckgo", "election",
         "news"),
        ("duckduckgo.com", "/?q=explain+photosynthesis&ia=chat", "duckduckgo",
         "explain photosynthesis", "ai"),
        ("duckduckgo.com", "/?q=100+gbp+in+euro&t=h_&ia=currency", "duckduckgo",
         "100 gbp in euro", "web"),
        ("safe.duckduckgo.com", "/?q=cats&kp=1", "duckduckgo", "cats", "web"),
        ("html.duckduckgo.com", "/html/?q=cats", "duckduckgo", "cats", "web"),
        ("lite.duckduckgo.com", "/lite/?q=cats&kl=uk-en", "duckduckgo", "cats", "web"),
        # Yahoo: tracking parameters after ";" in the path, country hosts, the image and video
        # hosts, Yahoo Hosted Search (what toolbars install), and `q` when there is no `p`.
        (
            "search.yahoo.com",
            "/search;_ylt=AwrFNUq7ZUBm5h0ANAhXNyoA;_ylc=X1MDMjc2NjY3OQRfcgMyBGZyA3lmcC10BGZyMgNz"
            "Yi10b3AEZ3ByaWQDBG5fcnNsdAMwBG5fc3VnZwMwBG9yaWdpbgNzZWFyY2gueWFob28uY29t"
            "?p=bomb+making&fr2=sb-top&fr=yfp-t&fp=1",
            "yahoo", "bomb making", "web",
        ),
        ("uk.search.yahoo.com", "/search?p=revision+tips&fr=yfp-t&fr2=p%3Afp%2Cm%3Asb&ei=UTF-8"
         "&fp=1", "yahoo", "revision tips", "web"),
        ("images.search.yahoo.com", "/search/images;_ylt=AwrjZ.9B;_ylu=Y29sbwNiZjEE?p=puffins"
         "&fr2=piv-web&fr=yfp-t", "yahoo", "puffins", "images"),
        ("uk.images.search.yahoo.com", "/search/images?p=puffins", "yahoo", "puffins", "images"),
        ("video.search.yahoo.com", "/search/video?p=volcano&fr2=piv-web", "yahoo", "volcano",
         "video"),
        ("news.search.yahoo.com", "/search?p=election&fr=uh3_news_web", "yahoo", "election",
         "news"),
        ("search.yahoo.com", "/yhs/search?hspart=iry&hsimp=yhs-fullyhosted_003&p=free+games",
         "yahoo", "free games", "web"),
        ("search.yahoo.com", "/search?q=free+games", "yahoo", "free games", "web"),
        # YouTube results pages (a direct load, a link, a reload), with a filter, and mobile.
        ("www.youtube.com", "/results?search_query=how+to+make+slime", "youtube",
         "how to make slime", "video"),
        ("www.youtube.com", "/results?search_query=minecraft&sp=EgIQAQ%253D%253D", "youtube",
         "minecraft", "video"),
        ("m.youtube.com", "/results?sp=mAEA&search_query=drill+music", "youtube", "drill music",
         "video"),
        ("music.youtube.com", "/search?q=lofi+beats", "youtube", "lofi beats", "music"),
        # Ecosia and Brave, every tab.
        ("www.ecosia.org", "/search?method=index&q=recycling+facts", "ecosia", "recycling facts",
         "web"),
        ("www.ecosia.org", "/images?q=puffins", "ecosia", "puffins", "images"),
        ("www.ecosia.org", "/videos?q=volcano", "ecosia", "volcano", "video"),
        ("www.ecosia.org", "/news?q=election", "ecosia", "election", "news"),
        ("search.brave.com", "/search?q=vpn+unblock+school&source=web", "brave",
         "vpn unblock school", "web"),
        ("search.brave.com", "/images?q=puffins&source=web", "brave", "puffins", "images"),
        ("search.brave.com", "/videos?q=volcano&source=web", "brave", "volcano", "video"),
        ("search.brave.com", "/news?q=election&source=web", "brave", "election", "news"),
        # Yandex: `text`, on yandex.com, yandex.ru and ya.ru, desktop and touch.
        ("yandex.com", "/search/?text=proxy+site&lr=10393&search_source=yacom_desktop_common",
         "yandex", "proxy site", "web"),
        ("yandex.ru", "/search/?text=%D0%BA%D0%BE%D1%88%D0%BA%D0%B8&lr=213", "yandex", "кошки",
         "web"),
        ("ya.ru", "/search/?text=cats&lr=213&search_source=yaru_desktop_common", "yandex", "cats",
         "web"),
        ("yandex.ru", "/search/touch/?text=cats&lr=213", "yandex", "cats", "web"),
        ("yandex.ru", "/search?text=cats", "yandex", "cats", "web"),
        ("yandex.ru", "/images/search?text=cats&from=tabbar", "yandex", "cats", "images"),
        ("yandex.com", "/video/search?text=cats&from=tabbar", "yandex", "cats", "video"),
        # Baidu: `wd` on the desktop site (UTF-8 and the older GBK escapes), `word` on mobile.
        (
            "www.baidu.com",
            "/s?ie=utf-8&f=8&rsv_bp=1&tn=baidu&wd=%E5%A6%82%E4%BD%95%E5%AD%A6%E4%B9%A0&oq=&rsv_pq="
            "e1a2b3c4&rsv_t=5b6aXo&rqlang=cn&rsv_enter=1&rsv_dl=tb&rsv_sug3=4",
            "baidu", "如何学习", "web",
        ),
        ("www.baidu.com", "/s?wd=%B0%D9%B6%C8&ie=gbk", "baidu", "百度", "web"),
        ("www.baidu.com", "/s?wd=%B0%D9%B6%C8", "baidu", "百度", "web"),
        ("www.baidu.com", "/baidu?tn=monline_dg&wd=cats", "baidu", "cats", "web"),
        ("m.baidu.com", "/s?from=1086k&word=%E7%86%8A%E7%8C%AB", "baidu", "熊猫", "web"),
        ("m.baidu.com", "/from=844b/s?word=cats&ts=0", "baidu", "cats", "web"),
        ("image.baidu.com",
         "/search/index?tn=baiduimage&ipn=r&ct=201326592&word=%E7%86%8A%E7%8C%AB",
         "baidu", "熊猫", "images"),
        # Wikipedia in any language, desktop and mobile: the search box's submission, the
        # Special:Search page with a parameter or a subpage, and the REST full-text search.
        ("en.wikipedia.org", "/w/index.php?search=anorexia+tips&title=Special%3ASearch&ns0=1",
         "wikipedia", "anorexia tips", "web"),
        ("en.wikipedia.org", "/w/index.php?search=Battle+of+Hastings&title=Special:Search&go=Go",
         "wikipedia", "Battle of Hastings", "web"),
        ("en.m.wikipedia.org", "/w/index.php?search=puffin&title=Special%3ASearch"
         "&profile=default&fulltext=1", "wikipedia", "puffin", "web"),
        ("fr.m.wikipedia.org", "/w/index.php?search=puffin", "wikipedia", "puffin", "web"),
        ("zh-yue.wikipedia.org", "/w/index.php?search=puffin", "wikipedia", "puffin", "web"),
        ("de.wikipedia.org", "/w/index.php?search=Selbstverletzung&title=Spezial%3ASuche&ns0=1",
         "wikipedia", "Selbstverletzung", "web"),
        ("simple.wikipedia.org", "/wiki/Special:Search?search=photosynthesis&go=Go", "wikipedia",
         "photosynthesis", "web"),
        ("en.wikipedia.org", "/wiki/Special:Search/Battle_of_Hastings", "wikipedia",
         "Battle of Hastings", "web"),
        ("en.wikipedia.org", "/wiki/special:search/c%2B%2B_templates", "wikipedia",
         "c++ templates", "web"),
        # In a path "+" is a plus, not a space.
        ("en.wikipedia.org", "/wiki/Special:Search/1+1", "wikipedia", "1+1", "web"),
        ("en.wikipedia.org", "/wiki/Special%3ASearch?search=cats", "wikipedia", "cats", "web"),
        # TikTok results pages (the Top tab, users, videos) on a direct load.
        ("www.tiktok.com", "/search?q=blackout+challenge&t=1715494076123", "tiktok",
         "blackout challenge", "video"),
        ("www.tiktok.com", "/search/user?q=cats&t=1715494076123", "tiktok", "cats", "people"),
        ("www.tiktok.com", "/search/video?q=cats&t=1715494076123", "tiktok", "cats", "video"),
        # Pinterest results pages on .com, its country subdomains and its country domains.
        ("www.pinterest.com", "/search/pins/?q=thinspo&rs=typed", "pinterest", "thinspo",
         "images"),
        ("uk.pinterest.com", "/search/pins/?q=cake+ideas&rs=typed", "pinterest", "cake ideas",
         "images"),
        ("www.pinterest.co.uk", "/search/boards/?q=cake+ideas&rs=filter", "pinterest",
         "cake ideas", "images"),
        ("www.pinterest.de", "/search/users/?q=baker&rs=filter", "pinterest", "baker", "people"),
        ("pinterest.fr", "/search/pins/?q=g%C3%A2teau", "pinterest", "gâteau", "images"),
    ],
)
def test_results_pages(host, path, engine, term, vertical):
    found = extract_search("GET", host, path)
    assert found == SearchQuery(engine, term, normalise_text(term), vertical, "page")


# ---------------------------------------------------------------------------------------------
# Searches whose term is in a body (POST)

# A search from the box on a YouTube page, as Chrome sends it (shortened, same shape).
YOUTUBE_CONTEXT = {
    "client": {
        "hl": "en-GB",
        "gl": "GB",
        "remoteHost": "203.0.113.7",
        "deviceMake": "",
        "deviceModel": "",
        "visitorData": "CgtYVnRmZ0pPT3ZvRSiU6IuyBjIKCgJHQhIEGgAgKA%3D%3D",
        "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/124.0.0.0 Safari/537.36,gzip(gfe)",
        "clientName": "WEB",
        "clientVersion": "2.20240508.01.00",
        "osName": "Windows",
        "osVersion": "10.0",
        "originalUrl": "https://www.youtube.com/",
        "platform": "DESKTOP",
        "clientFormFactor": "UNKNOWN_FORM_FACTOR",
        "userInterfaceTheme": "USER_INTERFACE_THEME_LIGHT",
        "browserName": "Chrome",
        "browserVersion": "124.0.0.0",
        "acceptHeader": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "screenWidthPoints": 1536,
        "screenHeightPoints": 730,
        "utcOffsetMinutes": 60,
        "mainAppWebInfo": {
            "graftUrl": "/",
            "webDisplayMode": "WEB_DISPLAY_MODE_BROWSER",
            "isWebNativeShareAvailable": True,
        },
        "timeZone": "Europe/London",
    },
    "user": {"lockedSafetyMode": False},
    "request": {"useSsl": True, "internalExperimentFlags": [], "consistencyTokenJars": []},
    "clickTracking": {"clickTrackingParams": "CBQQ7VAiEwjEtuH5xZ6GAxWwRUEAHeYTB6U="},
    "adSignalsInfo": {"params": [{"key": "dt", "value": "1715494076123"}]},
}
YOUTUBE_PATH = "/youtubei/v1/search?prettyPrint=false"


def youtube_body(**fields: object) -> bytes:
    return json.dumps({"context": YOUTUBE_CONTEXT, **fields}).encode()


@pytest.mark.parametrize(
    ("host", "path", "body", "content_type", "engine", "term", "vertical"),
    [
        # YouTube's in-page search, desktop, mobile and YouTube Music; the app's API host.
        (
            "www.youtube.com", YOUTUBE_PATH,
            youtube_body(query="minecraft speedrun", webSearchboxStatsUrl="/search?oq=minecraft "
                         "speedrun&gs_l=youtube.12...0.0.0", params="EgIQAQ%3D%3D"),
            "application/json", "youtube", "minecraft speedrun", "video",
        ),
        ("m.youtube.com", YOUTUBE_PATH, youtube_body(query="k1ll mys3lf"), "application/json",
         "youtube", "k1ll mys3lf", "video"),
        ("music.youtube.com", "/youtubei/v1/search?prettyPrint=false", youtube_body(query="lofi"),
         "application/json", "youtube", "lofi", "music"),
        ("youtubei.googleapis.com", "/youtubei/v1/search?key=AIzaSyA8eiZmM1FaDVjRy-df2KTyQ_vz",
         youtube_body(query="cats"), "application/json", "youtube", "cats", "video"),
        # JSON escapes and emoji in the body are the JSON's own.
        ("www.youtube.com", YOUTUBE_PATH, b'{"context":{},"query":"\\u00e9cole \\ud83d\\udd2a"}',
         "application/json", "youtube", "école 🔪", "video"),
    ],
)
def test_youtube_in_page_search(host, path, body, content_type, engine, term, vertical):
    assert needs_body("POST", host, path)
    found = extract_search("POST", host, path, body, content_type)
    assert found == SearchQuery(engine, term, normalise_text(term), vertical, "api")


@pytest.mark.parametrize(
    ("host", "path", "body", "content_type", "term"),
    [
        # The html and lite front ends POST their form; later pages POST more fields.
        ("html.duckduckgo.com", "/html/", b"q=how+to+hack+wifi&b=", FORM, "how to hack wifi"),
        ("html.duckduckgo.com", "/html/",
         b"q=how+to+hack+wifi&s=30&nextParams=&v=l&o=json&dc=31&api=d.js"
         b"&vqd=4-123456789012345678901234567890&kl=wt-wt", FORM, "how to hack wifi"),
        ("lite.duckduckgo.com", "/lite/", b"q=cats&kl=uk-en&df=", f"{FORM}; charset=UTF-8",
         "cats"),
        # The main site with its "POST requests" setting on.
        ("duckduckgo.com", "/", b"q=cats&kp=-1&kl=uk-en&kg=p", FORM, "cats"),
        # No Content-Type at all is read as a form.
        ("lite.duckduckgo.com", "/lite/", b"q=caf%C3%A9", None, "café"),
    ],
)
def test_duckduckgo_forms(host, path, body, content_type, term):
    assert needs_body("POST", host, path)
    found = extract_search("POST", host, path, body, content_type)
    assert found == SearchQuery("duckduckgo", term, normalise_text(term), "web", "page")


@pytest.mark.parametrize(
    ("host", "path", "body", "content_type"),
    [
        # A YouTube continuation (scrolling for more results) carries no query.
        ("www.youtube.com", YOUTUBE_PATH, youtube_body(continuation="EqcDEgVjYXRzGpoDU0JTQ"),
         "application/json"),
        ("www.youtube.com", YOUTUBE_PATH,
         youtube_body(query="cats", continuation="EqcDEgVjYXRzGpoDU0JTQ"), "application/json"),
        # Bodies that are not what YouTube sends: empty, not JSON, not an object, a query that
        # is not text or is blank, not UTF-8, nested too deep to parse, a huge number, too long.
        ("www.youtube.com", YOUTUBE_PATH, None, None),
        ("www.youtube.com", YOUTUBE_PATH, b"", "application/json"),
        ("www.youtube.com", YOUTUBE_PATH, b'{"query": "cats"', "application/json"),
        ("www.youtube.com", YOUTUBE_PATH, b'["query", "cats"]', "application/json"),
        ("www.youtube.com", YOUTUBE_PATH, youtube_body(query=42), "application/json"),
        ("www.youtube.com", YOUTUBE_PATH, youtube_body(query={"text": "cats"}), "application/json"),
        ("www.youtube.com", YOUTUBE_PATH, youtube_body(query=" \t "), "application/json"),
        ("www.youtube.com", YOUTUBE_PATH, b'{"query": "caf\xe9"}', "application/json"),
        ("www.youtube.com", YOUTUBE_PATH, b"[" * 50_000, "application/json"),
        ("www.youtube.com", YOUTUBE_PATH, b'{"query": "cats", "n": ' + b"9" * 5000 + b"}",
         "application/json"),
        ("www.youtube.com", YOUTUBE_PATH,
         youtube_body(query="cats", padding="x" * MAX_BODY), "application/json"),
        # A DuckDuckGo form body over the limit, in another encoding, or without q.
        ("html.duckduckgo.com", "/html/", b"q=cats&pad=" + b"x" * MAX_BODY, FORM),
        ("html.duckduckgo.com", "/html/", b"--x\r\nContent-Disposition: form-data; name=\"q\""
         b"\r\n\r\ncats\r\n--x--", "multipart/form-data; boundary=x"),
        ("html.duckduckgo.com", "/html/", b'{"q": "cats"}', "application/json"),
        ("html.duckduckgo.com", "/html/", b"b=&kl=wt-wt", FORM),
        ("html.duckduckgo.com", "/html/", None, FORM),
    ],
)
def test_post_bodies_that_are_not_searches(host, path, body, content_type):
    assert extract_search("POST", host, path, body, content_type) is None


def test_a_body_just_under_the_limit_is_read():
    body = youtube_body(query="cats", padding="")
    body = youtube_body(query="cats", padding="x" * (MAX_BODY - len(body)))
    assert len(body) == MAX_BODY
    found = extract_search("POST", "www.youtube.com", YOUTUBE_PATH, body, "application/json")
    assert found is not None and found.term == "cats"


# ---------------------------------------------------------------------------------------------
# Background result fetches that single-page apps make instead of loading a results page

PINTEREST_DATA = (
    "%7B%22options%22%3A%7B%22applied_filters%22%3Anull%2C%22appliedProductFilters%22%3A%22---"
    "%22%2C%22article%22%3Anull%2C%22auto_correction_disabled%22%3Afalse%2C%22corpus%22%3Anull"
    "%2C%22customized_rerank_type%22%3Anull%2C%22filters%22%3Anull%2C%22query%22%3A%22{query}"
    "%22%2C%22query_pin_sigs%22%3Anull%2C%22redux_normalize_feed%22%3Atrue%2C%22rs%22%3A%22typed"
    "%22%2C%22scope%22%3A%22{scope}%22%2C%22source_id%22%3Anull%2C%22bookmarks%22%3A%5B%22"
    "{bookmark}%22%5D%7D%2C%22context%22%3A%7B%7D%7D"
)


def pinterest_path(query: str, scope: str = "pins", bookmark: str = "") -> str:
    data = PINTEREST_DATA.format(query=query, scope=scope, bookmark=bookmark)
    return (
        "/resource/BaseSearchResource/get/?source_url=%2Fsearch%2Fpins%2F%3Fq%3Dcats%26rs%3Dtyped"
        f"&data={data}&_=1715494076123"
    )


TIKTOK_API_QUERY = (
    "?WebIdLastTime=1715494000&aid=1988&app_language=en&app_name=tiktok_web"
    "&browser_language=en-GB&browser_name=Mozilla&browser_online=true&browser_platform=Win32"
    "&channel=tiktok_web&cookie_enabled=true&device_platform=web_pc&focus_state=true"
    "&from_page=search&history_len=4&is_fullscreen=false&is_page_visible=true&os=windows"
    "&priority_region=&referer=&region=GB&screen_height=864&screen_width=1536&tz_name=Europe"
    "%2FLondon&webcast_language=en&keyword={keyword}&{paging}&search_id=&web_search_code="
    "%7B%22tiktok%22%3A%7B%22client_params_x%22%3A%7B%22search_engine%22%3A%7B%22ies_mt_user_live"
    "_video_card_use_libra%22%3A1%7D%7D%7D%7D&msToken=abc&X-Bogus=DFSzswVu&_signature=_02B4Z6w"
)


@pytest.mark.parametrize(
    ("host", "path", "engine", "term", "vertical"),
    [
        # TikTok's result fetches: Top, videos, users, first page only.
        ("www.tiktok.com",
         "/api/search/general/full/" + TIKTOK_API_QUERY.format(keyword="blackout+challenge",
                                                               paging="offset=0"),
         "tiktok", "blackout challenge", "video"),
        ("www.tiktok.com",
         "/api/search/item/full/" + TIKTOK_API_QUERY.format(keyword="cats", paging="offset=0"),
         "tiktok", "cats", "video"),
        ("www.tiktok.com",
         "/api/search/user/full/" + TIKTOK_API_QUERY.format(keyword="cats", paging="cursor=0"),
         "tiktok", "cats", "people"),
        # Pinterest's result fetch: pins, boards and people scopes; a country domain.
        ("www.pinterest.com", pinterest_path("thinspo"), "pinterest", "thinspo", "images"),
        ("www.pinterest.co.uk", pinterest_path("cake%20ideas", "boards"), "pinterest",
         "cake ideas", "images"),
        ("uk.pinterest.com", pinterest_path("baker", "users"), "pinterest", "baker", "people"),
        # Wikipedia's REST full-text search.
        ("en.wikipedia.org", "/w/rest.php/v1/search/page?q=earth+science&limit=10", "wikipedia",
         "earth science", "web"),
    ],
)
def test_background_result_fetches(host, path, engine, term, vertical):
    found = extract_search("GET", host, path)
    assert found == SearchQuery(engine, term, normalise_text(term), vertical, "api")


# ---------------------------------------------------------------------------------------------
# Requests that are not searches


@pytest.mark.parametrize(
    ("method", "host", "path"),
    [
        # Google: autocomplete, logging, scripts, assets, result links, Maps, background
        # fragments of a page already counted, an empty or missing q, POST.
        ("GET", "www.google.com", "/complete/search?q=how+to&cp=6&client=gws-wiz&xssi=t"
         "&gs_pcrt=undefined&hl=en-GB&authuser=0&psi=Zk1pZ7-yNq2Ehbv1P5KX0AE.1715494076123"),
        ("GET", "www.google.com", "/async/bgasy?ei=Zk1pZ7-yNq2Ehbv1P5KX0AE&opi=89978449&yv=3"),
        ("GET", "www.google.com", "/gen_204?atyp=i&ei=Zk1pZ7&ct=slh&v=t1&im=M&pv=0.9&me=1:171"),
        ("GET", "www.google.com", "/xjs/_/js/k=xjs.hd.en_GB.abc.O/am=AAAA/d=1/ed=1/rs=ACT90oG"),
        ("GET", "www.google.com", "/s?q=cats&gs_ri=psy-ab"),
        ("GET", "www.google.com", "/images/branding/googlelogo/2x/googlelogo_color_272x92dp.png"),
        ("GET", "www.google.com", "/url?q=https://www.bbc.co.uk/news&sa=U&ved=2ahUKEwj"),
        ("GET", "www.google.com", "/maps?q=pizza+near+me"),
        ("GET", "www.google.com", "/maps/search/pizza/@51.5,-0.12,14z"),
        ("GET", "maps.google.com", "/?q=pizza"),
        ("GET", "www.google.com", "/search?q=red+panda&tbm=isch&ijn=1&start=100"
         "&asearch=ichunk&async=_id:rg_s,_pms:s,_fmt:pc"),
        ("GET", "www.google.com",
         "/search?q=cats&start=10&async=arc_id:srp_1,use_ac:true,_fmt:prog"),
        ("GET", "www.google.com", "/search?q=&sca_esv=1&source=hp"),
        ("GET", "www.google.com", "/search?q=+++&sca_esv=1"),
        ("GET", "www.google.com", "/search"),
        ("GET", "www.google.com", "/search/about"),
        ("GET", "www.google.com", "/"),
        ("GET", "www.google.com", "/webhp?hl=en&sa=X&ved=0ahUKEwi"),
        ("POST", "www.google.com", "/search?q=cats"),
        ("GET", "suggestqueries.google.com", "/complete/search?client=firefox&q=how+to"),
        ("GET", "mail.google.com", "/mail/u/0/?q=cats"),
        ("GET", "scholar.google.com", "/scholar?q=cats"),
        # Look-alike hosts.
        ("GET", "google.com.evil.example", "/search?q=cats"),
        ("GET", "notgoogle.com", "/search?q=cats"),
        ("GET", "www.google.example", "/search?q=cats"),
        ("GET", "google", "/search?q=cats"),
        ("GET", "wikipedia.org.evil.example", "/w/index.php?search=cats"),
        ("GET", "en.wikipedia.org.evil.example", "/w/index.php?search=cats"),
        ("GET", "evil-pinterest.com", "/search/pins/?q=cats"),
        ("GET", "a.b.pinterest.com", "/search/pins/?q=cats"),
        ("GET", "search.yahoo.com.evil.example", "/search?p=cats"),
        # Bing: autocomplete, logging, more results while scrolling, assets.
        ("GET", "www.bing.com", "/AS/Suggestions?pt=page.home&mkt=en-gb&qry=vap&cp=3"
         "&cvid=9F2C1E0B8A7D4E6F9A1B2C3D4E5F6A7B"),
        ("GET", "www.bing.com", "/qsonhs.aspx?FORM=ASAPIH&q=vap"),
        ("GET", "www.bing.com", "/fd/ls/l?IG=9F2C1E0B&Type=Event.CPT&DATA={%22pp%22:{}}"),
        ("GET", "www.bing.com", "/images/async?q=red+panda&first=36&count=35&mmasync=1"),
        ("GET", "www.bing.com", "/sa/simg/favicon-trans-bg-blue-mg.ico"),
        ("GET", "www.bing.com", "/search?form=QBLH"),
        # DuckDuckGo: autocomplete, the result fetches the page makes, the home page, assets.
        ("GET", "duckduckgo.com", "/ac/?q=knife&kl=wt-wt"),
        ("GET", "links.duckduckgo.com", "/d.js?q=knife+crime&l=uk-en&dl=en&ct=GB"
         "&vqd=4-123456789012345678901234567890&sp=1&bpa=1&biaexp=b&msvrtexp=b"),
        ("GET", "duckduckgo.com", "/i.js?l=uk-en&o=json&q=red+panda&vqd=4-1234&f=,,,,,&p=1"),
        ("GET", "duckduckgo.com", "/?t=h_"),
        ("GET", "duckduckgo.com", "/dist/wpm.main.758b58e5295173a9d89c.js"),
        ("GET", "improving.duckduckgo.com", "/t/page_home_searchbox_submit?q=cats"),
        ("PUT", "html.duckduckgo.com", "/html/?q=cats"),
        # Yahoo: autocomplete, and the portal, which is not the search host.
        ("GET", "search.yahoo.com", "/sugg/gossip/gossip-us-fastbreak?pq=&command=bom"
         "&callback=YAHOO.SA.apps[0].cb.sa_JSONP&output=sd1&nresults=10"),
        ("GET", "search.yahoo.com", "/sugg/ff?output=fxjson&appid=ffd&command=bom"),
        ("GET", "www.yahoo.com", "/search?p=cats"),
        ("GET", "uk.yahoo.com", "/?p=cats"),
        # YouTube: autocomplete hosts, a video page, a GET of the search endpoint.
        ("GET", "suggestqueries-clients6.youtube.com", "/complete/search?client=youtube"
         "&hl=en-gb&gl=gb&gs_rn=64&gs_ri=youtube&ds=yt&cp=6&gs_id=2&q=how+to"),
        ("GET", "www.youtube.com", "/watch?v=dQw4w9WgXcQ&search_query=cats"),
        ("GET", "www.youtube.com", "/youtubei/v1/search?query=cats"),
        ("GET", "www.youtube.com", "/results"),
        ("GET", "youtubei.googleapis.com", "/results?search_query=cats"),
        ("GET", "www.youtube.com", "/search?q=cats"),
        # Ecosia, Brave, Yandex, Baidu: autocomplete and other paths.
        ("GET", "ac.ecosia.org", "/autocomplete?q=recyc&type=list"),
        ("GET", "www.ecosia.org", "/"),
        ("GET", "search.brave.com", "/api/suggest?q=vpn&rich=true&source=web"),
        ("GET", "suggest.yandex.ru", "/suggest-ya.cgi?part=prox&uil=ru&v=4"),
        ("GET", "yandex.ru", "/suggest/suggest-ya.cgi?part=prox&v=4"),
        ("GET", "yandex.ru", "/maps/?text=cafe"),
        ("GET", "www.baidu.com", "/sugrec?prod=pc&wd=%E5%A6%82%E4%BD%95&cb=jQuery1102"),
        ("GET", "sp0.baidu.com", "/5a1Fazu8AA54nxGko9WTAnF6hhy/su?wd=%E5%A6%82&cb=jQuery1102"),
        ("GET", "www.baidu.com", "/img/flexible/logo/pc/result.png"),
        ("GET", "image.baidu.com", "/search/acjson?tn=resultjson_com&word=cats&pn=30"),
        ("GET", "www.baidu.com", "/s?ie=utf-8&wd="),
        # Wikipedia: the search box's suggestions, articles, an empty search, the portal's
        # redirect, another special page, an API search the apps make while you type.
        ("GET", "en.wikipedia.org", "/w/api.php?action=opensearch&format=json&formatversion=2"
         "&search=anor&namespace=0&limit=10"),
        ("GET", "en.wikipedia.org", "/w/api.php?action=query&list=search&srsearch=anorexia"),
        ("GET", "en.wikipedia.org", "/w/rest.php/v1/search/title?q=anor&limit=10"),
        ("GET", "en.wikipedia.org", "/wiki/Anorexia_nervosa"),
        ("GET", "en.wikipedia.org", "/wiki/Special:Search"),
        ("GET", "en.wikipedia.org", "/wiki/Special:Search/"),
        ("GET", "en.wikipedia.org", "/wiki/Special:Search?search=&fulltext=1"),
        ("GET", "en.wikipedia.org", "/wiki/Special:SearchWiki?search=cats"),
        ("GET", "en.wikipedia.org", "/wiki/Special:RecentChanges?search=cats"),
        ("GET", "www.wikipedia.org", "/search-redirect.php?family=wikipedia&language=en"
         "&search=cats&language=en&go=Go"),
        ("POST", "en.wikipedia.org", "/w/index.php?search=cats"),
        # TikTok: suggestions, later pages of a search, a video page.
        ("GET", "www.tiktok.com", "/api/search/general/preview/"
         + TIKTOK_API_QUERY.format(keyword="black", paging="offset=0")),
        ("GET", "www.tiktok.com", "/api/search/suggest/?keyword=black&aid=1988"),
        ("GET", "www.tiktok.com", "/api/search/general/full/"
         + TIKTOK_API_QUERY.format(keyword="cats", paging="offset=12")),
        ("GET", "www.tiktok.com", "/api/search/user/full/"
         + TIKTOK_API_QUERY.format(keyword="cats", paging="cursor=10")),
        ("GET", "www.tiktok.com", "/@someone/video/7367483729384729384?q=cats"),
        # Pinterest: typeahead, a later page of a search, a pin.
        ("GET", "www.pinterest.com", "/resource/AdvancedTypeaheadResource/get/?source_url=%2F"
         "&data=%7B%22options%22%3A%7B%22pin_scope%22%3A%22pins%22%2C%22count%22%3A5%2C%22term"
         "%22%3A%22thin%22%7D%2C%22context%22%3A%7B%7D%7D&_=1715494076123"),
        ("GET", "www.pinterest.com", pinterest_path("thinspo", bookmark="Y2JVSG81V2sxcmNHRkdiR1")),
        ("GET", "www.pinterest.com", "/resource/BaseSearchResource/get/?data=not+json"),
        ("GET", "www.pinterest.com", "/resource/BaseSearchResource/get/?data=%7B%22options%22"
         "%3A%5B%5D%7D"),
        ("GET", "www.pinterest.com", "/resource/BaseSearchResource/get/?data=%7B%22options%22"
         "%3A%7B%22query%22%3A7%7D%7D"),
        ("GET", "www.pinterest.com", "/pin/123456789012345678/"),
        ("GET", "i.pinimg.com", "/236x/ab/cd/ef/abcdef.jpg"),
        # Unrelated hosts, and paths that are not origin-form.
        ("GET", "www.bbc.co.uk", "/search?q=cats"),
        ("GET", "example.com", "/search?q=cats"),
        ("OPTIONS", "www.google.com", "*"),
        ("GET", "", "/search?q=cats"),
    ],
)
def test_not_searches(method, host, path):
    assert extract_search(method, host, path) is None


# ---------------------------------------------------------------------------------------------
# Decoding the term


@pytest.mark.parametrize(
    ("path", "term"),
    [
        # "+" is a space; "%2B" is a plus; percent-escapes are decoded once only.
        ("/search?q=how+to+tie+a+tie", "how to tie a tie"),
        ("/search?q=how%20to%20tie", "how to tie"),
        ("/search?q=c%2B%2B+tutorial", "c++ tutorial"),
        ("/search?q=100%25+sure", "100% sure"),
        ("/search?q=%2541", "%41"),
        # UTF-8, emoji, and escapes that are not UTF-8 (a Latin-1 é) become U+FFFD.
        ("/search?q=caf%C3%A9", "café"),
        ("/search?q=knife+%F0%9F%94%AA", "knife 🔪"),
        ("/search?q=caf%E9", "caf\ufffd"),
        ("/search?q=%FF%FE%FD", "\ufffd\ufffd\ufffd"),
        ("/search?q=%F0%9F%94", "\ufffd"),
        # Raw UTF-8 in the request line (curl sends it), and bytes mitmproxy could not decode
        # (it hands them over as lone surrogates).
        ("/search?q=école", "école"),
        ("/search?q=caf\udce9", "caf\ufffd"),
        # Whitespace trimmed and collapsed, Unicode spaces included; controls removed.
        ("/search?q=++cats++and%09%0Adogs%20%20", "cats and dogs"),
        ("/search?q=cats%C2%A0dogs%E3%80%80birds", "cats dogs birds"),
        ("/search?q=ca%00ts%7F%C2%85x", "ca ts x"),
        # A fragment never reaches a proxy; if a client sends one, it is not the term.
        ("/search?q=cats#q=dogs", "cats"),
        # A repeated q: Google reads the first.
        ("/search?q=cats&q=dogs", "cats"),
        # A parameter name sent escaped is still that parameter.
        ("/search?%71=cats", "cats"),
    ],
)
def test_decoding(path, term):
    found = extract_search("GET", "www.google.com", path)
    assert found is not None
    assert found.term == term


def test_a_blank_first_q_is_an_empty_search_even_when_a_later_one_is_not():
    assert extract_search("GET", "www.google.com", "/search?q=&q=cats") is None


def test_wikipedia_reads_the_last_of_a_repeated_parameter_as_php_does():
    found = extract_search("GET", "en.wikipedia.org", "/w/index.php?search=cats&search=dogs")
    assert found is not None and found.term == "dogs"


def test_the_search_parameter_wins_over_the_special_search_subpage():
    found = extract_search("GET", "en.wikipedia.org", "/wiki/Special:Search/cats?search=dogs")
    assert found is not None and found.term == "dogs"


def test_terms_are_cut_to_the_longest_google_takes():
    found = extract_search("GET", "www.google.com", "/search?q=" + "abc+" * 1000)
    assert found is not None
    # 512 times "abc " is 2048 characters; the space it ends with is trimmed.
    assert found.term == ("abc " * 512).rstrip()
    assert len(found.term) == MAX_TERM - 1


def test_hosts_are_matched_whatever_their_case_or_final_dot():
    assert extract_search("GET", "WWW.Google.CO.UK.", "/search?q=cats") == SearchQuery(
        "google", "cats", "cats", "web", "page"
    )
    assert extract_search("get", "En.Wikipedia.Org", "/w/index.php?search=cats") is not None


# ---------------------------------------------------------------------------------------------
# The normalised term is the classifier's normal form


@pytest.mark.parametrize(
    ("path", "normalised"),
    [
        # Leetspeak, spelt out, full-width, accents, separators, held-down letters.
        ("/search?q=k1ll+mys3lf", "kill myself"),
        ("/search?q=h0w+t0+m4ke+a+b0mb", "how to make a bomb"),
        ("/search?q=S+U+I+C+I+D+E", "suicide"),
        ("/search?q=%EF%BC%B3%EF%BC%B5%EF%BC%A9%EF%BC%A3%EF%BC%A9%EF%BC%A4%EF%BC%A5", "suicide"),
        ("/search?q=s%C3%B9%C3%AFc%C3%AC%C3%B0%C3%A9", "suicide"),
        ("/search?q=self-harm.methods", "self harm methods"),
        ("/search?q=suiiiiiicide", "suiiicide"),
        # Only symbols and emoji: a search, with nothing for the keyword libraries.
        ("/search?q=%F0%9F%94%AA%F0%9F%A9%B8", ""),
    ],
)
def test_normalised_terms(path, normalised):
    found = extract_search("GET", "www.google.com", path)
    assert found is not None
    assert found.normalised == normalised
    assert found.normalised == normalise_text(found.term)


def test_the_normalised_term_matches_the_plain_phrase():
    found = extract_search("GET", "www.bing.com", "/search?q=k1ll+mys3lf&form=QBLH")
    assert found is not None
    assert found.term == "k1ll mys3lf"
    assert found.normalised == normalise_text("kill myself")


# ---------------------------------------------------------------------------------------------
# needs_body


@pytest.mark.parametrize(
    ("method", "host", "path", "expected"),
    [
        # The POST searches.
        ("POST", "www.youtube.com", "/youtubei/v1/search?prettyPrint=false", True),
        ("POST", "m.youtube.com", "/youtubei/v1/search?key=AIza", True),
        ("POST", "music.youtube.com", "/youtubei/v1/search", True),
        ("POST", "youtubei.googleapis.com", "/youtubei/v1/search", True),
        ("post", "WWW.YOUTUBE.COM.", "/youtubei/v1/search", True),
        ("POST", "html.duckduckgo.com", "/html/", True),
        ("POST", "html.duckduckgo.com", "/html", True),
        ("POST", "lite.duckduckgo.com", "/lite/", True),
        ("POST", "duckduckgo.com", "/", True),
        # Other YouTube API calls (watch-page data, logging), GET, other hosts: no body needed.
        ("POST", "www.youtube.com", "/youtubei/v1/next?prettyPrint=false", False),
        ("POST", "www.youtube.com", "/youtubei/v1/browse?prettyPrint=false", False),
        ("POST", "www.youtube.com", "/youtubei/v1/log_event?alt=json", False),
        ("GET", "www.youtube.com", "/youtubei/v1/search", False),
        ("GET", "html.duckduckgo.com", "/html/?q=cats", False),
        ("POST", "duckduckgo.com", "/ac/", False),
        ("POST", "links.duckduckgo.com", "/d.js", False),
        ("POST", "www.google.com", "/search", False),
        ("POST", "www.google.com", "/youtubei/v1/search", False),
        ("POST", "example.com", "/", False),
    ],
)
def test_needs_body(method, host, path, expected):
    assert needs_body(method, host, path) is expected


# ---------------------------------------------------------------------------------------------
# The public surface


def test_engine_labels_are_the_bounded_set_the_metrics_use():
    assert ENGINES == (
        "google", "bing", "duckduckgo", "yahoo", "youtube", "ecosia", "brave", "yandex", "baidu",
        "wikipedia", "tiktok", "pinterest",
    )
    assert len(set(VERTICALS)) == len(VERTICALS) and "web" in VERTICALS
    assert VIAS == ("page", "api")


def test_search_queries_are_frozen():
    found = extract_search("GET", "www.google.com", "/search?q=cats")
    assert found is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.term = "dogs"  # type: ignore[misc]


# Each engine's search path and term parameter, so that the generated requests reach the
# parsers; random noise is added around them.
_FUZZ_TARGETS = [
    ("www.google.com", "/search", "q"), ("www.bing.com", "/images/search", "q"),
    ("duckduckgo.com", "/", "q"), ("html.duckduckgo.com", "/html/", "q"),
    ("search.yahoo.com", "/search;_ylt=x", "p"), ("www.youtube.com", "/results", "search_query"),
    ("www.youtube.com", "/youtubei/v1/search", "query"), ("www.ecosia.org", "/search", "q"),
    ("search.brave.com", "/search", "q"), ("yandex.ru", "/search/", "text"),
    ("www.baidu.com", "/s", "wd"), ("image.baidu.com", "/search/index", "word"),
    ("en.wikipedia.org", "/w/index.php", "search"),
    ("en.wikipedia.org", "/wiki/Special:Search/%C3", "search"),
    ("en.wikipedia.org", "/w/rest.php/v1/search/page", "q"),
    ("www.tiktok.com", "/api/search/general/full/", "keyword"),
    ("www.pinterest.com", "/search/pins/", "q"),
    ("www.pinterest.com", "/resource/BaseSearchResource/get/", "data"),
]
_FUZZ_NAMES = ["q", "p", "wd", "tbm", "udm", "ia", "iax", "ie", "offset", "cursor", "as_q",
               "async", "search", "%71", "q%"]
_FUZZ_VALUES = ["%", "%e", "%ZZ", "%C3", "%F0%9F", "+", "", "=", "%00", "\udcff", "é", "a",
                "{", "%7B%22options%22%3A%7B%22query%22%3A", "%22", "%7D", "0", "12", "gbk",
                "isch", "2", "%B0%D9", "%5B", "%22bookmarks%22%3A"]


def _fuzz_value(rng: random.Random) -> str:
    return "".join(rng.choice(_FUZZ_VALUES) for _ in range(rng.randrange(1, 6)))


def test_no_request_a_client_can_send_makes_it_raise():
    rng = random.Random(20240512)
    seen = 0
    for _ in range(5000):
        host, path, name = rng.choice(_FUZZ_TARGETS)
        value = _fuzz_value(rng)
        if name == "data":  # Pinterest's JSON, with noise in the query and the bookmark
            value = PINTEREST_DATA.format(
                query=value, scope=rng.choice(["pins", "%22", "users"]),
                bookmark=rng.choice(["", value]),
            )
        pairs = [f"{name}={value}"] + [
            rng.choice(_FUZZ_NAMES) + rng.choice(["=", "", "=="]) + _fuzz_value(rng)
            for _ in range(rng.randrange(3))
        ]
        rng.shuffle(pairs)
        query = "&".join(pairs)
        body: bytes | None = query.encode("utf-8", "surrogateescape")
        if name == "query":  # YouTube's JSON body
            body = b'{"query": "' + body + b'"' + rng.choice([b"}", b"", b',"continuation":1}'])
        if rng.random() < 0.2:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        content_type = rng.choice([None, FORM, "application/json", "multipart/form-data"])
        method = "POST" if name == "query" or rng.random() < 0.2 else "GET"
        found = extract_search(method, host, f"{path}?{query}", body, content_type)
        if found is not None:
            seen += 1
            assert found.engine in ENGINES
            assert found.vertical in VERTICALS
            assert found.via in VIAS
            assert found.term and found.term == " ".join(found.term.split())
            assert len(found.term) <= MAX_TERM
            found.term.encode("utf-8")  # no lone surrogates left
            assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in found.term)
            assert found.normalised == normalise_text(found.term)
    assert seen > 1000  # the requests do reach the parsers, not only the early exits
