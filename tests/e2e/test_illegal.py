"""Illegal-content lists end to end: an IWF-style plain list and a CTIRU-style SHA-256 list block
for everyone with the "access denied" wording, over HTTP and inside HTTPS, without the origin ever
hearing of the request; a URL entry blocks only its page, a domain entry the whole domain. No
entry ever shows on the page, in the event store, in the gateway's output or in /metrics. No
allow entry can override a list, and one that names an entry stops the gateway from starting. A
list fetched over HTTP is refreshed with removals applied, keeps its last good copy when the
source fails (its age shows it), and the gateway never starts without the list.

Every `*.test` name resolves to 127.0.0.1 in these gateways (`resolving_script`), and the test
URLs carry the origin's port, so a request that leaked would reach the origin and be counted.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .harness import (
    REFERENCE_RE,
    GatewayClient,
    GatewayProcess,
    GatewaySetup,
    ListServer,
    Origin,
    Reply,
    closed_port_url,
    config_line,
    direct_get,
    read_events,
    resolving_script,
    run_cli,
    running_gateway,
    sample,
    scrape,
    wait_for,
    wait_for_events,
    write_config,
)

pytestmark = pytest.mark.e2e

IWF_DOMAIN = "iwf-dom.test"  # a domain entry
IWF_PAGE = "/pages/secret-iwf-page.html"  # on `localhost`, which resolves to the origin
IWF_URL_ENTRY = "localhost" + IWF_PAGE  # a URL entry
CTIRU_DOMAIN = "ctiru-dom.test"  # only its hash is in the CTIRU list
FEED_KEEP, FEED_GONE = "feed-keep.test", "feed-gone.test"  # the list served over HTTP

#: Text of the entries, none of which may appear in any output, page, event or metric.
ENTRY_TEXTS = ("iwf-dom", "secret-iwf-page", "ctiru-dom", "feed-keep", "feed-gone")

IWF_WORDING = ("may contain indecent images of children",
               "identified by the Internet Watch Foundation (IWF)")
CTIRU_WORDING = ("police Counter Terrorism Internet Referral Unit (CTIRU) list",)
WORDING = {"iwf": IWF_WORDING, "ctiru": CTIRU_WORDING}

REFRESH = 2.0  # seconds between fetches of the HTTP-served list


def marker() -> str:
    return uuid.uuid4().hex


def sha256_line(expression: str) -> str:
    """A line of a hashed list: the SHA-256 of a canonical lookup expression, in hex."""
    return hashlib.sha256(expression.encode("utf-8")).hexdigest()


def write_lists(directory: Path) -> tuple[Path, Path]:
    """The IWF list (plain, with the noise real files have) and the CTIRU list (hashed)."""
    directory.mkdir(parents=True, exist_ok=True)
    iwf = directory / "iwf.txt"
    iwf.write_bytes(
        f"# made-up IWF-style test list\r\n\r\n{IWF_DOMAIN}  \r\n{IWF_URL_ENTRY}\r\n".encode()
    )
    ctiru = directory / "ctiru.sha256"
    ctiru.write_text(f"# made-up CTIRU-style test list\n{sha256_line(CTIRU_DOMAIN + '/')}\n",
                     encoding="utf-8")
    return iwf, ctiru


def illegal_config(directory: Path, upstream_ca: Path, *, lists: dict,
                   allow: list[str] = ()) -> GatewaySetup:
    """The harness config plus `illegal_lists` and pupils' `allow` entries."""

    def patch(doc: dict) -> None:
        doc["illegal_lists"] = lists
        if allow:
            doc["groups"]["pupils"]["allow"] = [
                {"target": t, "reason": "Used in lessons"} for t in allow
            ]

    return write_config(directory, upstream_ca=upstream_ca, patch=patch)


def file_lists(directory: Path) -> dict:
    iwf, ctiru = write_lists(directory / "illegal-lists")
    return {
        "iwf": {"title": "IWF URL list", "kind": "iwf", "source": str(iwf), "form": "plain"},
        "ctiru": {"title": "CTIRU list", "kind": "ctiru", "source": str(ctiru), "form": "sha256"},
    }


def feed_body(*entries: str) -> str:
    return "# served over HTTP\n" + "".join(f"{e}\n" for e in entries)


def assert_no_entry_text(text: str, where: str) -> None:
    found = [e for e in ENTRY_TEXTS if e in text.lower()]
    assert not found, f"{where} contains list entry text {found}"


@dataclass
class Illegal:
    setup: GatewaySetup
    gateway: GatewayProcess
    client: GatewayClient
    feed: ListServer


@pytest.fixture(scope="module")
def feed() -> Iterator[ListServer]:
    server = ListServer(feed_body(FEED_KEEP, FEED_GONE))
    yield server
    server.close()


@pytest.fixture(scope="module")
def illegal(tmp_path_factory, pki, origin, feed) -> Iterator[Illegal]:
    """One gateway with the IWF and CTIRU lists from files and an IWF-kind list served over HTTP
    (`feed`, refreshed every 2 s). Pupils allow `localhost`, the parent domain of the IWF URL
    entry (and otherwise blocked as games)."""
    directory = tmp_path_factory.mktemp("illegal")
    lists = file_lists(directory)
    lists["feed"] = {"kind": "iwf", "source": feed.url, "form": "plain", "refresh": "2s"}
    setup = illegal_config(directory, pki.ca_cert, lists=lists, allow=["localhost"])
    with running_gateway("illegal", setup.config, script=resolving_script(directory)) as gw:
        yield Illegal(setup, gw, GatewayClient(gw.proxy_port, setup.schoolgate_ca), feed)
    # Everything the gateway printed from start to shutdown, after every test of the module.
    assert_no_entry_text(gw.output(), "the gateway's output")


def url(origin: Origin, scheme: str, host: str, path: str, m: str) -> str:
    return origin.url(scheme, f"{path}?m={m}", host=host)


def assert_access_denied(reply: Reply, kind: str, *hidden: str) -> str:
    """The illegal-content page: 403, the list kind's wording, nothing about the request."""
    assert reply.status == 403, reply
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    assert reply.headers["Cache-Control"] == "no-store"
    reference = reply.headers["X-Schoolgate-Reference"]
    assert reference and REFERENCE_RE.match(reference), reference
    page = reply.text
    assert "<h1>Access denied</h1>" in page, page
    for words in WORDING[kind]:
        assert words in page, (words, page)
    for other_kind, words in WORDING.items():
        if other_kind != kind:
            assert not any(w in page for w in words), f"{kind} page shows {other_kind} wording"
    assert "This page is blocked" not in page
    assert f'<dd class="ref">{reference}</dd>' in page
    for text in hidden:
        assert text.lower() not in page.lower(), f"the page shows {text!r}"
    assert_no_entry_text(page, "the page")
    return reference


# ---------------------------------------------------------------------------------------------
# Blocking


BLOCKED = [
    # scheme, host, path, list kind
    ("http", IWF_DOMAIN, "/pages/a.html", "iwf"),  # domain entry
    ("https", IWF_DOMAIN, "/pages/a.html", "iwf"),
    ("http", "www." + IWF_DOMAIN, "/", "iwf"),  # ... covers subdomains
    ("https", "www." + IWF_DOMAIN, "/pages/deep/b.html", "iwf"),
    ("http", "WWW.IWF-Dom.TEST", "/pages/c.html", "iwf"),  # host case does not matter
    ("http", "localhost", IWF_PAGE, "iwf"),  # URL entry
    ("https", "localhost", IWF_PAGE, "iwf"),
    ("http", "localhost", "/pages/%73ecret-iwf-page.html", "iwf"),  # escaped: same canonical URL
    ("http", "localhost", "/pages/x/../secret-iwf-page.html", "iwf"),
    ("http", CTIRU_DOMAIN, "/pages/a.html", "ctiru"),  # hashed domain entry
    ("https", "www." + CTIRU_DOMAIN, "/", "ctiru"),
]


@pytest.mark.parametrize(("scheme", "host", "path", "kind"), BLOCKED,
                         ids=[f"{s}-{h}{p}" for s, h, p, _ in BLOCKED])
def test_listed_request_gets_access_denied_and_never_reaches_the_origin(
    illegal, origin, scheme, host, path, kind
):
    m = marker()
    before = len(origin.requests)

    reply = illegal.client.get(url(origin, scheme, host, path, m))

    hidden = [host, m, "localhost", str(origin.http_port), str(origin.https_port)]
    assert_access_denied(reply, kind, *hidden, *([path] if path != "/" else []))
    assert origin.requests_with(m) == []
    assert len(origin.requests) == before, "a blocked request reached the origin"


SIBLINGS = ["/pages/sibling.html", "/pages/secret-iwf-page.html.bak", "/pages/secret-iwf-page.htm",
            "/pages/", "/pages/secret-iwf-page.html/more"]


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("path", SIBLINGS)
def test_url_entry_blocks_only_its_own_page(illegal, origin, scheme, path):
    """Other pages on the URL entry's host pass and arrive byte-identical."""
    m = marker()
    reply = illegal.client.get(url(origin, scheme, "localhost", path, m))

    assert reply.status == 200, reply.text[:500]
    assert reply.body == origin.body
    assert [(r.scheme, r.path) for r in origin.requests_with(m)] == [(scheme, f"{path}?m={m}")]


def test_allowing_a_parent_domain_does_not_override_a_url_entry(illegal, origin):
    """Pupils allow `localhost` (otherwise blocked as games): the allow decides the host's other
    pages, but the IWF URL entry on it is still blocked, by the list and not by the override."""
    m = marker()
    allowed = illegal.client.get(url(origin, "http", "localhost", "/pages/other.html", m))
    denied = illegal.client.get(url(origin, "http", "localhost", IWF_PAGE, m))

    assert allowed.status == 200 and allowed.body == origin.body
    reference = assert_access_denied(denied, "iwf")
    db = illegal.setup.database
    (allow_row,) = wait_for_events(db, "url LIKE ?", [f"%/pages/other.html?m={m}"],
                                   gateway=illegal.gateway)
    assert allow_row["action"] == "allow"
    assert allow_row["matched_rule"].startswith("group pupils allows localhost (local override")
    (block_row,) = wait_for_events(db, "reference = ?", [reference], gateway=illegal.gateway)
    assert block_row["action"] == "block"
    assert block_row["matched_rule"].startswith("illegal-content list iwf")
    assert [(r.path) for r in origin.requests_with(m)] == [f"/pages/other.html?m={m}"]


# ---------------------------------------------------------------------------------------------
# Confidentiality: events, output, metrics


def test_event_records_the_host_and_list_name_only(illegal, origin):
    m = marker()
    cases = [  # scheme, host, path, list name
        ("http", "localhost", IWF_PAGE, "iwf"),
        ("https", "www." + IWF_DOMAIN, "/pages/e.html", "iwf"),
        ("http", CTIRU_DOMAIN, "/pages/e.html", "ctiru"),
    ]
    references = {}
    for scheme, host, path, name in cases:
        reply = illegal.client.get(url(origin, scheme, host, path, m))
        references[name, host] = assert_access_denied(reply, "iwf" if name == "iwf" else "ctiru")

    for (scheme, host, _path, name), reference in zip(cases, references.values(), strict=True):
        (row,) = wait_for_events(illegal.setup.database, "reference = ?", [reference],
                                 gateway=illegal.gateway)
        assert row["url"] is None
        assert row["host"] == host
        assert row["scheme"] == scheme
        assert row["action"] == "block"
        assert row["severity"] == "high"
        assert row["group_name"] == "pupils"
        assert row["client_ip"] == "127.0.0.1"
        assert row["matched_rule"] == (
            f"illegal-content list {name} (applies to everyone, cannot be overridden)"
        )
    # Nothing in the store holds a path or query of these requests (only allowed pages have a
    # URL, such as the URL entry's siblings).
    for row in read_events(illegal.setup.database):
        for column, value in row.items():
            if isinstance(value, str):
                assert m not in value and IWF_PAGE + "?" not in value, (column, row)
    output = illegal.gateway.output()
    assert "secret-iwf-page" not in output and m not in output


def test_metrics_count_illegal_blocks_and_show_list_health_without_entries(illegal, origin):
    def illegal_blocks() -> float:
        return sample(scrape(illegal.gateway.metrics_url), "schoolgate_requests_total",
                      action="block", category="illegal", group="pupils")

    before = illegal_blocks()
    m = marker()
    assert illegal.client.get(url(origin, "http", IWF_DOMAIN, "/", m)).status == 403
    assert illegal.client.get(url(origin, "https", "localhost", IWF_PAGE, m)).status == 403
    assert illegal.client.get(url(origin, "http", CTIRU_DOMAIN, "/", m)).status == 403
    assert illegal_blocks() - before == 3

    samples = scrape(illegal.gateway.metrics_url)
    assert sample(samples, "schoolgate_list_entries", list="iwf") == 2
    assert sample(samples, "schoolgate_list_entries", list="ctiru") == 1
    for name in ("iwf", "ctiru"):
        age = sample(samples, "schoolgate_list_age_seconds", list=name)
        assert 0 <= age < 120, (name, age)
    text = direct_get(illegal.gateway.metrics_url).decode("utf-8")
    assert_no_entry_text(text, "/metrics")
    assert "localhost" not in text and m not in text


# ---------------------------------------------------------------------------------------------
# Refresh


def test_refresh_applies_removals_and_keeps_the_last_good_list_when_the_source_fails(
    illegal, origin
):
    client, feed, gw = illegal.client, illegal.feed, illegal.gateway

    def get(host: str) -> Reply:
        return client.get(url(origin, "http", host, "/pages/feed.html", marker()))

    def entries_and_age() -> tuple[float, float]:
        s = scrape(gw.metrics_url)
        return (sample(s, "schoolgate_list_entries", list="feed"),
                sample(s, "schoolgate_list_age_seconds", list="feed"))

    assert_access_denied(get(FEED_KEEP), "iwf")
    assert_access_denied(get(FEED_GONE), "iwf")

    # A removal: the next refresh lets the page through.
    feed.set(body=feed_body(FEED_KEEP))
    reply = wait_for(lambda: (r := get(FEED_GONE)).status == 200 and r,
                     f"{FEED_GONE} to be allowed after its removal", on_timeout=gw.tail)
    assert reply.body == origin.body
    assert_access_denied(get(FEED_KEEP), "iwf")
    assert entries_and_age()[0] == 1

    # The source fails: the last good list stays, and its age keeps growing past the interval.
    feed.set(status=500)
    gw.wait_for_output(r"illegal list feed refresh failed: .*HTTP Error 500.*"
                       r"keeping the last good list \(1 entry\)")
    entries, age = wait_for(lambda: (ea := entries_and_age())[1] > 2 * REFRESH + 1 and ea,
                            "the feed's age to grow past two refresh intervals",
                            on_timeout=gw.tail)
    assert entries == 1
    assert not math.isinf(age)
    assert feed.served(500) >= 2
    assert_access_denied(get(FEED_KEEP), "iwf")
    assert get(FEED_GONE).status == 200
    later = entries_and_age()
    assert later[0] == 1 and later[1] > age


def _lists_from(source: str) -> dict:
    return {"iwf": {"kind": "iwf", "source": source, "form": "plain", "refresh": "2s"}}


def test_start_up_uses_the_last_good_copy_when_the_source_is_down(tmp_path, pki, origin):
    server = ListServer(feed_body(IWF_DOMAIN, IWF_URL_ENTRY))
    try:
        setup = illegal_config(tmp_path, pki.ca_cert, lists=_lists_from(server.url))
        script = resolving_script(tmp_path)
        with running_gateway("illegal-first", setup.config, script=script) as first:
            client = GatewayClient(first.proxy_port, setup.schoolgate_ca)
            assert_access_denied(client.get(url(origin, "http", IWF_DOMAIN, "/", marker())), "iwf")
    finally:
        server.close()  # from now on, fetching the list is refused

    copies = list((setup.data_dir / "illegal").iterdir())
    assert copies, "the first run left no last good copy"
    for copy in copies:
        assert_no_entry_text(copy.read_bytes().decode("latin-1"), f"the last good copy {copy}")

    with running_gateway("illegal-restored", setup.config, script=script) as second:
        second.wait_for_output(r"illegal list iwf refresh failed: cannot read "
                               r".*keeping the last good list \(2 entries\)")
        client = GatewayClient(second.proxy_port, setup.schoolgate_ca)
        m = marker()
        assert_access_denied(client.get(url(origin, "http", IWF_DOMAIN, "/", m)), "iwf")
        assert_access_denied(client.get(url(origin, "https", "localhost", IWF_PAGE, m)), "iwf")
        assert origin.requests_with(m) == []
        samples = scrape(second.metrics_url)
        assert sample(samples, "schoolgate_list_entries", list="iwf") == 2
        assert 0 <= sample(samples, "schoolgate_list_age_seconds", list="iwf") < 120
    assert_no_entry_text(first.output() + second.output(), "the gateway's output")


@pytest.mark.parametrize("source", ["refused", "error", "empty"])
def test_start_up_without_the_list_or_a_last_good_copy_fails(tmp_path, pki, source):
    server = None
    if source == "refused":
        list_url = closed_port_url()
    else:
        server = ListServer("# no entries yet\n")
        server.set(status=500 if source == "error" else 200)
        list_url = server.url
    try:
        setup = illegal_config(tmp_path, pki.ca_cert, lists=_lists_from(list_url))
        done = run_cli("run", "--config", str(setup.config),
                       "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
    finally:
        if server is not None:
            server.close()

    assert done.returncode not in (0, None), done
    assert "Traceback" not in done.stdout + done.stderr
    assert "proxy listening" not in done.stdout, "the gateway started without its illegal list"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("schoolgate: illegal list iwf: "), done.stderr
    assert "no last good copy" in last, last
    assert not (setup.data_dir / "illegal" / "iwf.digests").exists()


# ---------------------------------------------------------------------------------------------
# Overrides that try to allow a listed entry are refused


REFUSED = [
    # id, the allow target the administrator typed
    ("domain-entry", IWF_DOMAIN),
    ("under-a-domain-entry", "deep.sub." + IWF_DOMAIN),
    ("url-entry", IWF_URL_ENTRY),
    ("hashed-entry", CTIRU_DOMAIN),
]


@pytest.mark.parametrize("target", [t for _, t in REFUSED], ids=[i for i, _ in REFUSED])
def test_allow_naming_an_illegal_entry_stops_the_gateway(tmp_path_factory, pki, target):
    directory = tmp_path_factory.mktemp("refused")
    setup = illegal_config(directory, pki.ca_cert, lists=file_lists(directory),
                           allow=["example.org", target])
    line = config_line(setup.config, f"target: {target}")

    done = run_cli("run", "--config", str(setup.config),
                   "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0")

    assert done.returncode == 2, done
    assert "Traceback" not in done.stdout + done.stderr
    assert "proxy listening" not in done.stdout
    prefix = f"schoolgate: {setup.config}:{line}: groups.pupils.allow[1]: refused: "
    refused = [ln for ln in done.stderr.splitlines() if ln.startswith(prefix)]
    assert len(refused) == 1, done.stderr
    assert f"'{target}'" in refused[0] and "illegal-content list" in refused[0], refused[0]
    assert "example.org" not in done.stderr  # the allowed entry is fine
    # Nothing beyond what the administrator typed: no entry, no matched expression.
    assert_no_entry_text((done.stdout + done.stderr).replace(target, "<target>"), "the output")
