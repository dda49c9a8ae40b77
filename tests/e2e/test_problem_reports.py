"""Problem reports end to end, through the running gateway: a pupil's block page carries a "this
should not be blocked" form; sending it with the page's own fields (over HTTP, and inside
intercepted HTTPS) stores a request with who sent it, which `schoolgate requests list` shows.
`schoolgate requests approve N` allows the page for the pupil's group within 5 seconds, without a
restart, with an audit row; `deny` leaves it blocked, with its audit row. The "this should be
blocked" form works the same way. A page on an illegal-content list has no form, and a forged
report for one is refused and stores nothing.

Clients stand in for machines in different groups by their loopback address (127.0.0.1 pupils,
127.0.0.2 staff, 127.0.0.3 sixth form, which blocks gambling too). Every `*.test` name resolves
to the recording origin (`policy_gateway.py`), so a report that leaked would be seen there.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest

from schoolgate.policy.blockpage import REPORT_PATH, REPORT_SITE_PATH, open_url, seal_url

from .harness import (
    ORIGIN_NAMES,
    GatewayProcess,
    GatewaySetup,
    Reply,
    make_pki,
    run_cli,
    wait_for,
    wait_for_events,
    write_config,
)
from .policy_harness import (
    Browser,
    RecordingOrigin,
    only_trusting,
    sources_available,
    start_gateway,
)

pytestmark = pytest.mark.e2e

PUPILS, STAFF, SIXTH = "127.0.0.1", "127.0.0.2", "127.0.0.3"

#: The bound the feature promises: in force this long after the command is given.
EFFECT_WITHIN = 5.0

#: Blocked for pupils and the sixth form (gambling); each test has its own.
REPORTED = ("approve-http.test", "approve-https.test", "deny-me.test")
LISTED = "listed-site.test"  # a domain entry of the IWF test list
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NUMBER_RE = re.compile(r'Your request number is <strong class="ref">(\d+)</strong>')


def marker() -> str:
    return uuid.uuid4().hex


class _Forms(HTMLParser):
    """The forms on a page, as a browser would send them: action and named fields."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "fields": {}})
        elif tag in ("input", "textarea") and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


def page_forms(text: str) -> list[dict]:
    parser = _Forms()
    parser.feed(text)
    return parser.forms


@dataclass
class Env:
    setup: GatewaySetup
    gateway: GatewayProcess
    origin: RecordingOrigin

    def browser(self, source: str = PUPILS) -> Browser:
        assert self.gateway.proxy_port is not None
        return Browser(self.gateway.proxy_port, only_trusting(self.setup.schoolgate_ca),
                       source=source)

    def status(self, source: str, scheme: str, host: str, path: str = "/hello") -> int:
        """The status `source` gets for the page now (a fresh marker each time)."""
        reply = self.browser(source).get(self.origin.url(scheme, host, f"{path}?m={marker()}"))
        assert reply.status in (200, 403), reply
        return reply.status

    def send_form(self, source: str, page_url: str, form: dict, **fields: str) -> Reply:
        """Send `form` as a browser would from the page at `page_url`: to its action on the
        page's own host, with the page's fields and `fields` filled in."""
        body = urllib.parse.urlencode({**form["fields"], **fields}).encode()
        action = urllib.parse.urljoin(page_url, form["action"])
        origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(page_url))
        return self.browser(source).request(
            "POST", action, body=body,
            headers={**FORM, "Origin": origin, "Sec-Fetch-Site": "same-origin"})

    def report_key(self) -> bytes:
        return bytes.fromhex((self.setup.data_dir / "report-key").read_text().strip())

    def cli(self, *args: str):
        return run_cli(*args, "--config", str(self.setup.config))

    def requests(self, status: str = "all") -> dict[int, dict]:
        done = self.cli("requests", "list", "--status", status, "--json")
        assert done.returncode == 0, done.stderr
        return {r["number"]: r for r in map(json.loads, done.stdout.splitlines())}

    def audit(self) -> list[dict]:
        done = self.cli("audit", "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    def stored_text(self) -> str:
        """Every problem report row, as one text, to search for what must never be stored."""
        conn = sqlite3.connect(f"file:{self.setup.database}?mode=ro", uri=True, timeout=5)
        try:
            return repr(conn.execute("SELECT * FROM problem_reports").fetchall())
        finally:
            conn.close()

    def assert_no_report_reached_the_origin(self) -> None:
        assert self.origin.requests_with("/.well-known/") == []


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    sources_available(PUPILS, STAFF, SIXTH)
    directory = tmp_path_factory.mktemp("reports")
    names = [*REPORTED, "news.test", "bad-site.test", LISTED]
    pki = make_pki(directory / "pki", (*ORIGIN_NAMES, *names))
    origin = RecordingOrigin(pki)
    (directory / "reported").write_text("".join(f"{h}\n" for h in REPORTED), encoding="utf-8")
    (directory / "iwf.txt").write_text(f"# made-up IWF-style list\n{LISTED}\n", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["categories"]["gambling"]["lists"].append(str(directory / "reported"))
        doc["groups"] = {
            "pupils": {"subnets": ["127.0.0.0/8"], "blocked_categories": ["gambling"]},
            "staff": {"subnets": [f"{STAFF}/32"], "blocked_categories": []},
            "sixth": {"subnets": [f"{SIXTH}/32"], "blocked_categories": ["gambling"]},
        }
        doc["illegal_lists"] = {"iwf": {"title": "IWF URL list", "kind": "iwf",
                                        "source": str(directory / "iwf.txt"), "form": "plain"}}

    setup = write_config(directory, upstream_ca=pki.ca_cert, patch=patch)
    try:
        with start_gateway("reports", setup.config) as gw:
            yield Env(setup, gw, origin)
    finally:
        origin.close()


def report_from_block_page(env: Env, scheme: str, host: str, reason: str) -> tuple[int, str]:
    """A pupil meets the block page for `host` and sends its form; returns the request number
    and the blocked URL."""
    url = env.origin.url(scheme, host, f"/hello?m={marker()}")
    page = env.browser(PUPILS).get(url)
    assert page.status == 403 and "This page is blocked" in page.text, page
    (form,) = page_forms(page.text)
    assert form["action"] == REPORT_PATH
    fields = form["fields"]
    assert fields["ref"] == page.headers["X-Schoolgate-Reference"]
    # The URL is in the form sealed with the gateway's key, never in clear.
    assert open_url(env.report_key(), fields["ref"], fields["t"], fields["u"]) == url
    assert "/hello?m=" not in page.text

    reply = env.send_form(PUPILS, url, form, reason=reason)
    assert reply.status == 200, reply.text
    m = NUMBER_RE.search(reply.text)
    assert m, reply.text
    env.assert_no_report_reached_the_origin()
    return int(m[1]), url


def wait_until(env: Env, status: int, host: str, deadline: float, sources=(PUPILS,),
               path: str = "/hello") -> None:
    """Poll until every client in `sources` gets `status` over HTTP and HTTPS, failing at
    `deadline` (a time.monotonic() value)."""
    def done() -> bool:
        return all(env.status(s, scheme, host, path) == status
                   for s in sources for scheme in ("http", "https"))

    wait_for(done, f"{host}{path} to answer {status} for {', '.join(sources)}",
             timeout=max(deadline - time.monotonic(), 0.0), on_timeout=env.gateway.tail)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_pupils_report_approved_unblocks_the_page_for_their_group_within_5_seconds(env,
                                                                                  scheme):
    host = f"approve-{scheme}.test"
    pid = env.gateway.pid
    reason = "We need this site for the Year 9 statistics homework"
    number, url = report_from_block_page(env, scheme, host, reason)

    # The technician sees it, with who sent it.
    row = env.requests("open")[number]
    assert (row["kind"], row["url"], row["host"], row["reason"], row["status"]) == (
        "unblock", url, host, reason, "open")
    assert (row["client_ip"], row["group_name"], row["user"]) == (PUPILS, "pupils", None)
    listing = env.cli("requests", "list")
    assert listing.returncode == 0, listing.stderr
    assert re.search(rf"^\s*{number}  .* unblock  {re.escape(PUPILS)} \(pupils\)  "
                     rf"{re.escape(url)}$", listing.stdout, re.M), listing.stdout
    assert f"reason: {reason}" in listing.stdout

    given = time.monotonic()
    done = env.cli("requests", "approve", str(number), "--by", "it-tech")
    assert done.returncode == 0, done.stderr
    assert f"approved request {number}: allowed {host} for pupils" in done.stdout
    assert "in force in the running gateway" in done.stdout
    wait_until(env, 200, host, deadline=given + EFFECT_WITHIN)
    assert env.gateway.pid == pid and env.gateway.returncode is None

    # For the pupil's group only: the sixth form still has gambling blocked.
    assert env.status(SIXTH, scheme, host) == 403
    (entry,) = [a for a in env.audit() if (a["detail"] or {}).get("request") == number]
    assert (entry["actor"], entry["action"], entry["target"], entry["scope"], entry["reason"],
            entry["outcome"]) == ("it-tech", "allow", host, "pupils",
                                  f"request {number}: {reason}", "done")
    row = env.requests("approved")[number]
    assert (row["decided_by"], row["override_scope"]) == ("it-tech", "pupils")


def test_a_denied_report_leaves_the_page_blocked_and_is_audited(env):
    host = "deny-me.test"
    number, _ = report_from_block_page(env, "https", host, "It's only a game")

    done = env.cli("requests", "deny", str(number), "--by", "it-tech", "--note", "gambling")
    assert done.returncode == 0, done.stderr
    assert f"denied request {number}" in done.stdout
    # Still blocked, now and after the gateway has reloaded for any reason.
    assert env.cli("reload").returncode == 0
    for scheme in ("http", "https"):
        assert env.status(PUPILS, scheme, host) == 403
    (entry,) = [a for a in env.audit() if (a["detail"] or {}).get("request") == number]
    assert (entry["actor"], entry["action"], entry["scope"], entry["reason"]) == (
        "it-tech", "request-denied", "pupils", f"request {number}: It's only a game")
    assert entry["detail"]["note"] == "gambling"
    row = env.requests("denied")[number]
    assert (row["decided_by"], row["decision_note"]) == ("it-tech", "gambling")
    local = env.setup.data_dir / "local-policy.json"
    assert host not in (local.read_text() if local.exists() else "")


def test_a_should_be_blocked_report_approved_blocks_the_page_for_the_reporters_group(env):
    # Staff open the form from any page's host (here inside HTTPS), as the block page links it.
    page_url = env.origin.url("https", "news.test", REPORT_SITE_PATH)
    page = env.browser(STAFF).get(page_url)
    assert page.status == 200, page
    (form,) = page_forms(page.text)
    assert env.status(STAFF, "https", "bad-site.test", "/page") == 200

    reported = f"bad-site.test:{env.origin.https_port}/page"
    reply = env.send_form(STAFF, page_url, form, url=reported, reason="Violent videos")
    assert reply.status == 200, reply.text
    number = int(NUMBER_RE.search(reply.text)[1])
    env.assert_no_report_reached_the_origin()
    row = env.requests("open")[number]
    # Stored in canonical form, which leaves the port out as list entries do: approved, it
    # blocks the page wherever it is served.
    assert (row["kind"], row["url"], row["group_name"]) == (
        "block", "https://bad-site.test/page", "staff")

    given = time.monotonic()
    done = env.cli("requests", "approve", str(number), "--by", "dsl")
    assert done.returncode == 0, done.stderr
    wait_until(env, 403, "bad-site.test", deadline=given + EFFECT_WITHIN, sources=(STAFF,),
               path="/page")
    # The page, not the whole site.
    assert env.status(STAFF, "https", "bad-site.test", "/other") == 200
    (entry,) = [a for a in env.audit() if (a["detail"] or {}).get("request") == number]
    assert (entry["action"], entry["scope"], entry["reason"]) == (
        "block", "staff", f"request {number}: Violent videos")


def test_an_illegal_list_page_has_no_form_and_a_forged_report_stores_nothing(env):
    url = env.origin.url("http", LISTED, f"/gallery?m={marker()}")
    page = env.browser(PUPILS).get(url)
    assert page.status == 403 and "Access denied" in page.text
    assert page_forms(page.text) == [] and REPORT_SITE_PATH not in page.text
    reference = page.headers["X-Schoolgate-Reference"]

    # A made-up form: refused for its seal.
    issued = str(int(time.time()))
    forged = {"action": REPORT_PATH, "fields": {"ref": reference, "t": issued, "u": "A" * 80}}
    assert env.send_form(PUPILS, url, forged, reason="homework").status == 403
    # Even one sealed with the gateway's own key (as if the page had had a form) is refused.
    signed = {"action": REPORT_PATH, "fields": {
        "ref": reference, "t": issued, "u": seal_url(env.report_key(), reference, issued, url)}}
    for scheme in ("http", "https"):
        reply = env.send_form(PUPILS, env.origin.url(scheme, LISTED, "/gallery"), signed,
                              reason="homework")
        assert reply.status == 403 and "nobody can unblock it" in reply.text, reply
    # And the other form only says it is blocked already.
    site_url = env.origin.url("http", "news.test", REPORT_SITE_PATH)
    (form,) = page_forms(env.browser(PUPILS).get(site_url).text)
    reply = env.send_form(PUPILS, site_url, form, url=f"{LISTED}/gallery", reason="bad")
    assert reply.status == 200 and "already blocked for everyone" in reply.text

    assert LISTED not in env.stored_text()
    assert LISTED not in env.gateway.output()
    # Naming the page is an illegal-list event like visiting it (host and list name only), so
    # the form is no quiet way to test addresses against the list.
    rows = wait_for_events(env.setup.database, "matched_rule LIKE 'a problem report%'", count=3,
                           gateway=env.gateway)
    assert {(r["host"], r["url"], r["reason"], r["group_name"]) for r in rows} == {
        (LISTED, None, "illegal:iwf", "pupils")}
    assert env.origin.requests_with(LISTED) == []
    env.assert_no_report_reached_the_origin()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_bad_reports_are_refused_by_the_gateway_itself(env, scheme):
    url = env.origin.url(scheme, "news.test", REPORT_PATH)
    browser = env.browser(PUPILS)
    refusals = [
        # (what, method, headers, body) -> status
        ("a GET", "GET", {}, None, 405),
        ("too big", "POST", FORM, b"reason=" + b"x" * 9000, 413),
        ("not a form", "POST", {"Content-Type": "application/json"}, b"{}", 415),
        ("no length (chunked)", "POST", FORM, iter([b"reason=x"]), 411),
        ("another site's page", "POST", {**FORM, "Sec-Fetch-Site": "cross-site"}, b"reason=x",
         403),
        ("no signature", "POST", FORM, b"reason=x", 403),
    ]
    for what, method, headers, body, status in refusals:
        reply = browser.request(method, url, headers=headers, body=body)
        assert reply.status == status, (what, reply)
        assert reply.headers["Content-Type"] == "text/html; charset=utf-8", what
    env.assert_no_report_reached_the_origin()
