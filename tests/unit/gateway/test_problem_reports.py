"""Problem reports: the block page's signed "this should not be blocked" form, the "this should be
blocked" form, the addon that answers both without ever classifying them or sending them to a
server (method, type, size, signature, rate limit, illegal lists), the stored rows, and
`schoolgate requests list|approve|deny`."""

from __future__ import annotations

import inspect
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow
from prometheus_client import CollectorRegistry

from sample_school import BASE_CONFIG
from schoolgate import cli
from schoolgate.config.loader import load_config
from schoolgate.config.model import Config
from schoolgate.gateway.addons import decision_of
from schoolgate.gateway.addons.problem_reports import MAX_REASON, ProblemReports, RateLimit
from schoolgate.gateway.bootstrap import ordered
from schoolgate.gateway.service import Gateway
from schoolgate.policy import Policy
from schoolgate.policy.blockpage import (
    REPORT_PATH,
    REPORT_SITE_PATH,
    BlockPage,
    open_url,
    report_token,
    seal_url,
)
from schoolgate.sources.localpolicy import load_local_policy, local_policy_path
from schoolgate.store import open_for_writing
from schoolgate.store.audit import read_audit
from schoolgate.store.problem_reports import NewReport, add_report, read_reports

ILLEGAL_HOST = "listed-site.test"  # a domain entry of the test IWF list
PUPIL = "10.20.1.2"  # secondary
BLOCKED = "http://www.bet365.com/casino?x=1"  # gambling: blocked for secondary


@pytest.fixture
def config_path(tmp_path: Path, write_config) -> Path:
    iwf = tmp_path / "iwf.txt"
    iwf.write_text(f"{ILLEGAL_HOST}\n", encoding="utf-8")
    text = BASE_CONFIG + (
        "illegal_lists:\n  iwf:\n    title: IWF URL list\n    kind: iwf\n"
        f"    source: {iwf}\n    form: plain\n"
    )
    return write_config(text)


@pytest.fixture
def config(config_path: Path) -> Config:
    c = load_config(config_path)
    open_for_writing(c.database_path)
    return c


@pytest.fixture
def gateway(config: Config) -> Gateway:
    gw = Gateway(config, registry=CollectorRegistry())
    gw.load_illegal_lists()
    return gw


@dataclass
class Proxy:
    gateway: Gateway
    addons: list

    @property
    def reports(self) -> ProblemReports:
        (addon,) = [a for a in self.addons if isinstance(a, ProblemReports)]
        return addon

    async def send(self, flow: http.HTTPFlow) -> http.HTTPFlow:
        """The hooks a request passes before mitmproxy would contact a server, in order, as
        mitmproxy runs them: a coroutine a hook returns is awaited before the next addon, and
        `request` is skipped when `requestheaders` answered."""
        for hook in ("requestheaders", "request"):
            if hook == "request" and flow.response is not None:
                break
            for addon in self.addons:
                fn = getattr(addon, hook, None)
                if fn is not None:
                    result = fn(flow)
                    if inspect.isawaitable(result):
                        await result
        return flow


@pytest.fixture
def proxy(gateway: Gateway) -> Iterator[Proxy]:
    addons = ordered(gateway)
    with taddons.context(*addons):
        yield Proxy(gateway, addons)


def flow_to(url: str, client: str = PUPIL, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> http.HTTPFlow:
    f = tflow.tflow()
    f.request.url = url
    f.request.method = method
    f.client_conn.peername = (client, 50123)
    f.request.timestamp_start = time.time()  # tflow's is in the year 2000
    if body is not None:
        f.request.content = body  # sets Content-Length, as a browser does
    else:
        f.request.content = b""
        del f.request.headers["content-length"]
    for name, value in (headers or {}).items():
        f.request.headers[name] = value
    return f


class _Forms(HTMLParser):
    """Every form on a page: its action and its named fields (textareas empty)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "method": a.get("method"), "fields": {}})
        elif tag in ("input", "textarea") and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""
        elif tag == "a":
            self.links.append(a.get("href", ""))


def forms(page: str) -> _Forms:
    parser = _Forms()
    parser.feed(page)
    return parser


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def block_page_form(proxy: Proxy, url: str = BLOCKED, client: str = PUPIL) -> dict:
    flow = await proxy.send(flow_to(url, client))
    assert flow.response.status_code == 403
    (form,) = forms(flow.response.text).forms
    return form


async def submit(proxy: Proxy, page_url: str, form: dict, client: str = PUPIL,
                 headers: dict[str, str] | None = None, **fields: str) -> http.HTTPFlow:
    """POST `form` (with `fields` filled in or changed) to its action on the page's host."""
    values = {**form["fields"], **fields}
    body = urllib.parse.urlencode(values).encode()
    action = urllib.parse.urljoin(page_url, form["action"])
    return await proxy.send(flow_to(action, client, "POST", body, {**FORM, **(headers or {})}))


def failed_closed(gateway: Gateway) -> float:
    """Requests the gateway failed closed, over every stage."""
    return sum(s.value for m in gateway.metrics.fail_closed.collect() for s in m.samples
               if s.name.endswith("_total"))


def stored(config: Config) -> list[dict]:
    return [r.as_dict() for r in read_reports(config.database_path, None)]


# ---------------------------------------------------------------------------------------------
# The block page's form


@pytest.mark.asyncio
async def test_block_page_has_a_report_form_sealed_for_its_reference_and_url(proxy, gateway):
    flow = await proxy.send(flow_to(BLOCKED))
    page = forms(flow.response.text)
    (form,) = page.forms
    fields = form["fields"]

    assert (form["action"], form["method"]) == (REPORT_PATH, "post")
    assert set(fields) == {"reason", "ref", "t", "u"}
    assert fields["ref"] == flow.response.headers["X-Schoolgate-Reference"]
    key = gateway.rules.block_page.report_key
    assert open_url(key, fields["ref"], fields["t"], fields["u"]) == BLOCKED
    # The page holds the URL sealed only: never the path or query (the words of a search).
    assert "casino" not in flow.response.text
    assert REPORT_SITE_PATH in page.links
    # The key is the gateway's own, kept owner-only in the data folder.
    key_file = gateway.config.data_dir / "report-key"
    assert bytes.fromhex(key_file.read_text()) == key and key_file.stat().st_mode & 0o077 == 0
    assert BlockPage(gateway.config).report_key == key  # the same after a reload


@pytest.mark.asyncio
async def test_illegal_list_and_error_pages_have_no_form(proxy, gateway):
    flow = await proxy.send(flow_to(f"http://{ILLEGAL_HOST}/page"))
    assert flow.response.status_code == 403 and "Access denied" in flow.response.text
    assert "<form" not in flow.response.text and REPORT_SITE_PATH not in flow.response.text

    from datetime import UTC, datetime

    error = gateway.rules.block_page.render(Policy.failed("guest", "classify"), "x.example",
                                      datetime.now(UTC), url="http://x.example/")
    assert error.status == 503 and b"<form" not in error.body


def test_block_page_without_a_usable_key_has_no_form(config, caplog):
    from datetime import UTC, datetime

    key_file = config.data_dir / "report-key"
    key_file.write_text("not hex\n")
    page = BlockPage(config)
    assert page.report_key is None
    assert "report-key" in caplog.text and "delete it" in caplog.text
    verdict = Policy(config).decide(
        page_identity("secondary"),
        Gateway(config, registry=CollectorRegistry()).rules.classifier.classify(BLOCKED))
    body = page.render(verdict, "www.bet365.com", datetime.now(UTC), url=BLOCKED).body
    assert b"<form" not in body and b"This page is blocked" in body


def page_identity(group: str):
    from schoolgate.identify import Identity

    return Identity(ip=PUPIL, group=group, source="subnet")


@pytest.mark.parametrize(
    ("url", "form"),
    [
        # Too long for a form: the page without its query is reported instead.
        ("http://www.bet365.com/casino?" + "q" * 3000, "http://www.bet365.com/casino"),
        # Too long even without the query: no form.
        ("http://www.bet365.com/" + "p" * 3000, None),
    ],
)
@pytest.mark.asyncio
async def test_long_addresses(proxy, url, form):
    flow = await proxy.send(flow_to(url))
    found = forms(flow.response.text).forms
    assert flow.response.status_code == 403
    key = proxy.gateway.rules.block_page.report_key
    assert (open_url(key, *(found[0]["fields"][k] for k in ("ref", "t", "u"))) if found
            else None) == form


# ---------------------------------------------------------------------------------------------
# Sending a report


@pytest.mark.asyncio
async def test_a_report_is_stored_with_who_sent_it_and_never_leaves_the_gateway(proxy, gateway,
                                                                               config):
    gateway.ip_users.set(PUPIL, "alice", 3600)
    form = await block_page_form(proxy)
    events_before = gateway.writer.depth

    flow = await submit(proxy, BLOCKED, form, reason="  I need it\tfor my\r\nhomework  ")

    assert flow.response.status_code == 200, flow.response.text
    assert 'Your request number is <strong class="ref">1</strong>' in flow.response.text
    assert flow.response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in flow.response.headers["Content-Security-Policy"]
    # Answered by the gateway: never classified, never decided, never recorded as browsing.
    assert decision_of(flow).own_page and decision_of(flow).verdict is None
    assert gateway.writer.depth == events_before
    assert failed_closed(gateway) == 0
    (row,) = stored(config)
    assert row["ts"].endswith("Z")
    del row["ts"]
    assert row == {
        "number": 1, "kind": "unblock", "url": BLOCKED, "host": "www.bet365.com",
        "reference": form["fields"]["ref"], "reason": "I need it for my homework",
        "user": "alice", "device": None, "client_ip": PUPIL, "group_name": "secondary",
        "status": "open", "decided_ts": None, "decided_by": None, "decision_note": None,
        "override_scope": None,
    }


@pytest.mark.asyncio
async def test_sending_the_same_page_twice_gives_the_same_number(proxy, config):
    form = await block_page_form(proxy)
    first = await submit(proxy, BLOCKED, form, reason="homework")
    again = await submit(proxy, BLOCKED, form, reason="homework, really")
    assert first.response.status_code == again.response.status_code == 200
    assert 'class="ref">1</strong>' in again.response.text
    assert len(stored(config)) == 1


@pytest.mark.asyncio
async def test_the_reason_is_cleaned_and_capped(proxy, config):
    form = await block_page_form(proxy)
    # Escape sequences and direction overrides would be printed in a technician's terminal.
    reason = "a\x1b[31mred\u202eevil\x00 " + "x" * 900
    flow = await submit(proxy, BLOCKED, form, reason=reason)
    assert flow.response.status_code == 200
    (row,) = stored(config)
    assert row["reason"].startswith("a [31mred evil x")
    assert len(row["reason"]) == MAX_REASON and row["reason"].isprintable()


def _changed(form: dict, **fields) -> dict:
    return {**form, "fields": {**form["fields"], **fields}}


REFUSALS = [
    # (what, change to the request) -> status. Nothing is stored for any of them.
    # Wrong method, type, encoding or size: refused from the headers, before the body is read.
    ("GET of the report path", dict(method="GET"), 405),
    ("PUT of the report-site path", dict(method="PUT", path=REPORT_SITE_PATH), 405),
    ("plain text", dict(headers={"Content-Type": "text/plain"}), 415),
    ("JSON", dict(headers={"Content-Type": "application/json"}), 415),
    ("gzip-encoded", dict(headers={"Content-Encoding": "gzip"}), 415),
    ("oversize", dict(reason="x" * 9000), 413),
    ("no length", dict(no_length=True), 411),
    ("another site's page", dict(headers={"Sec-Fetch-Site": "cross-site"}), 403),
    ("unknown path", dict(path="/.well-known/schoolgate/admin"), 404),
    # The signature: a form must come from a block page the gateway made, for that page.
    ("forged seal", dict(fields={"u": "A" * 80}), 403),
    ("no seal", dict(fields={"u": ""}), 403),
    ("another page's seal", dict(other_page=True), 403),
    ("another reference", dict(fields={"ref": "00000-00000"}), 403),
    ("another time", dict(fields={"t": "1"}), 403),
    ("too old", dict(age=25 * 3600), 403),
    # The form itself.
    ("no reason", dict(reason="  \r\n "), 400),
    ("a field twice", dict(raw_suffix="&reason=again"), 400),
    ("not a form", dict(raw=b"\xff\xfe"), 400),
]


@pytest.mark.parametrize(("what", "change", "status"), REFUSALS, ids=[r[0] for r in REFUSALS])
@pytest.mark.asyncio
async def test_refusals(proxy, gateway, config, what, change, status):
    form = await block_page_form(proxy)
    fields = {**form["fields"], "reason": change.get("reason", "homework"),
              **change.get("fields", {})}
    key = gateway.rules.block_page.report_key
    if "age" in change:
        fields["t"] = str(int(fields["t"]) - change["age"])
        fields["u"] = seal_url(key, fields["ref"], fields["t"], BLOCKED)
    if change.get("other_page"):
        fields["u"] = seal_url(key, "00000-00000", fields["t"], "http://www.bet365.com/other")
    body = change.get("raw") or (urllib.parse.urlencode(fields)
                                 + change.get("raw_suffix", "")).encode()
    url = "http://www.bet365.com" + change.get("path", REPORT_PATH)
    flow = flow_to(url, method=change.get("method", "POST"), body=body,
                   headers={**FORM, **change.get("headers", {})})
    if change.get("no_length"):
        del flow.request.headers["content-length"]

    await proxy.send(flow)

    assert flow.response.status_code == status, flow.response.text
    assert flow.response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert stored(config) == []
    assert decision_of(flow).verdict is None  # answered by the gateway, never sent on
    assert failed_closed(gateway) == 0


@pytest.mark.asyncio
async def test_reports_per_client_are_limited(proxy, config):
    now = [1000.0]
    proxy.reports.limit.clock = lambda: now[0]
    for n in range(10):
        form = await block_page_form(proxy, f"{BLOCKED}&n={n}")
        flow = await submit(proxy, BLOCKED, form, reason=f"number {n}")
        assert flow.response.status_code == 200
    form = await block_page_form(proxy, f"{BLOCKED}&n=10")
    flow = await submit(proxy, BLOCKED, form, reason="one more")
    assert flow.response.status_code == 429
    assert 1 <= int(flow.response.headers["Retry-After"]) <= 3600
    assert len(stored(config)) == 10
    # Another computer is not held up; an hour later this one may send again.
    other = await block_page_form(proxy, BLOCKED, client="10.20.1.3")
    assert (await submit(proxy, BLOCKED, other, client="10.20.1.3", reason="mine")
            ).response.status_code == 200
    now[0] += 3601
    assert (await submit(proxy, BLOCKED, form, reason="one more")).response.status_code == 200


def test_rate_limit_is_bounded_in_memory():
    now = [0.0]
    limit = RateLimit(2, window=60, clock=lambda: now[0], max_clients=3)
    assert all(limit.take(f"10.0.0.{i}") for i in range(3))
    assert not limit.take("10.0.0.9")  # full: a new address waits
    now[0] = 61
    assert limit.take("10.0.0.9")  # the old ones have left the window


@pytest.mark.asyncio
async def test_a_page_on_an_illegal_list_is_never_reported(proxy, gateway, config, caplog,
                                                           monkeypatch):
    events = []
    monkeypatch.setattr(gateway, "record", events.append)
    # A validly signed form for a listed page (as if a list gained it after the page was shown).
    key = gateway.rules.block_page.report_key
    url = f"https://www.{ILLEGAL_HOST}/a/page"
    fields = {"ref": "7KQ2M-9XDPA", "t": str(int(proxy.reports.clock())), "reason": "homework"}
    fields["u"] = seal_url(key, fields["ref"], fields["t"], url)
    flow = await submit(proxy, url, {"action": REPORT_PATH, "fields": fields})
    assert flow.response.status_code == 403
    assert "nobody can unblock it" in flow.response.text
    assert ILLEGAL_HOST not in flow.response.text

    # Nor through the "this should be blocked" form.
    site = await proxy.send(flow_to(f"http://example.org{REPORT_SITE_PATH}"))
    (form,) = forms(site.response.text).forms
    flow = await submit(proxy, "http://example.org/", form, url=f"{ILLEGAL_HOST}/x",
                        reason="bad")
    assert flow.response.status_code == 200 and "already blocked for everyone" in flow.response.text

    assert stored(config) == []
    assert ILLEGAL_HOST not in caplog.text
    # Each is an illegal-list event, as visiting the page would be: host and list name only.
    assert [(e.action, e.reason, e.host, e.url, e.user, e.group, e.severity) for e in events] == [
        ("block", "illegal:iwf", f"www.{ILLEGAL_HOST}", None, None, "secondary", "high"),
        ("block", "illegal:iwf", ILLEGAL_HOST, None, None, "secondary", "high"),
    ]
    assert all("problem report" in e.matched_rule for e in events)


@pytest.mark.asyncio
async def test_the_should_be_blocked_form(proxy, config):
    # Served by the gateway on any host, even a blocked one; never a block page, never an event.
    page = await proxy.send(flow_to(f"http://www.bet365.com{REPORT_SITE_PATH}"))
    assert page.response.status_code == 200 and decision_of(page).verdict is None
    (form,) = forms(page.response.text).forms
    assert form["action"] == REPORT_SITE_PATH and set(form["fields"]) == {
        "url", "reason", "t", "token"}
    key = proxy.gateway.rules.block_page.report_key
    assert form["fields"]["token"] == report_token(key, "report-site", form["fields"]["t"])
    forged = await submit(proxy, "http://www.bet365.com/", form, url="bad-site.example",
                          reason="x", token="0" * 32)
    assert forged.response.status_code == 403

    flow = await submit(proxy, "http://www.bet365.com/", form, url="Bad-Site.example/Page?id=3",
                        reason="nasty pictures")
    assert flow.response.status_code == 200
    assert "bad-site.example" in flow.response.text
    (row,) = stored(config)
    assert (row["kind"], row["url"], row["host"], row["reference"], row["group_name"]) == (
        "block", "https://bad-site.example/Page?id=3", "bad-site.example", None, "secondary")

    for typed in ("javascript:alert(1)", "", "ftp://x.example/"):
        bad = await submit(proxy, "http://www.bet365.com/", form, url=typed, reason="x")
        assert bad.response.status_code == 400, typed
    assert len(stored(config)) == 1


HOSTILE = '<script>alert("x")</script>'


@pytest.mark.parametrize("school", ["St Mary & <St John>", HOSTILE])
def test_the_report_pages_escape_every_value(write_config, school):
    # The pages are filled in by the template engine, which escapes every value it is given:
    # a host, a number, a message and the school's name are text, never markup.
    config = load_config(write_config(BASE_CONFIG.replace("name: Test Academy",
                                                          f"name: '{school}'", 1)))
    gw = Gateway(config, registry=CollectorRegistry())
    flow = flow_to(f"http://www.bet365.com{REPORT_SITE_PATH}")
    ProblemReports(gw)._answer(flow, 200, f"Thank you {HOSTILE}", f"then {HOSTILE}",
                               sent={"host": HOSTILE, "number": f"1{HOSTILE}"})
    text = flow.response.text
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    assert "<script" not in text
    assert f"<strong>{escaped}</strong>" in text and f'class="ref">1{escaped}</strong>' in text
    assert f"<p>then {escaped}</p>" in text and f"<h1>Thank you {escaped}</h1>" in text
    shown = school.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
        '"', "&quot;")
    assert f'<p class="school">{shown} web filter</p>' in text


@pytest.mark.asyncio
async def test_a_schools_copy_of_the_report_page_is_used(tmp_path, write_config):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "problem-report.html").write_text(
        "<h1>{{ heading }}</h1>{% if form %}<form action=\"{{ form.action }}\" method=\"post\">"
        "<input name=\"url\"><textarea name=\"reason\"></textarea>"
        "<input type=\"hidden\" name=\"t\" value=\"{{ form.issued }}\">"
        "<input type=\"hidden\" name=\"token\" value=\"{{ form.token }}\"></form>{% endif %}"
        "<p>Ask Mr Jones in IT. {{ message }}</p>\n", encoding="utf-8")
    config = load_config(write_config(BASE_CONFIG + "templates: templates\n"))
    open_for_writing(config.database_path)
    gw = Gateway(config, registry=CollectorRegistry())
    addons = ordered(gw)
    with taddons.context(*addons):
        proxy = Proxy(gw, addons)
        page = await proxy.send(flow_to(f"http://www.bet365.com{REPORT_SITE_PATH}"))
        assert page.response.status_code == 200
        assert "Ask Mr Jones in IT. If you have seen a page" in page.response.text
        (form,) = forms(page.response.text).forms
        flow = await submit(proxy, "http://www.bet365.com/", form, url="bad-site.example",
                            reason="nasty pictures")
    assert flow.response.status_code == 200, flow.response.text
    assert "<h1>Thank you</h1>" in flow.response.text and "Ask Mr Jones" in flow.response.text
    assert len(stored(config)) == 1


@pytest.mark.asyncio
async def test_a_store_failure_is_answered_never_let_through(proxy, config, monkeypatch):
    from schoolgate.gateway.addons import problem_reports
    from schoolgate.store import StoreError

    def broken(path, report):  # noqa: ANN001
        raise StoreError("disk full")

    monkeypatch.setattr(problem_reports, "add_report", broken)
    form = await block_page_form(proxy)
    flow = await submit(proxy, BLOCKED, form, reason="homework")
    assert flow.response.status_code == 503
    assert "could not be sent" in flow.response.text


@pytest.mark.asyncio
async def test_a_report_without_identity_fails_closed(gateway):
    # Identify never ran (a future code path): answered with 503, never sent on.
    addon = ProblemReports(gateway)
    flow = flow_to(f"http://x.example{REPORT_PATH}", method="POST", body=b"reason=x",
                   headers=FORM)
    addon.requestheaders(flow)
    assert flow.response.status_code == 503


# ---------------------------------------------------------------------------------------------
# schoolgate requests


def add(config: Config, kind: str = "unblock", url: str = BLOCKED, reason: str = "homework",
        group: str = "secondary", reference: str | None = "7KQ2M-9XDPA") -> int:
    host = urllib.parse.urlsplit(url).hostname
    number, _ = add_report(config.database_path, NewReport(
        kind=kind, url=url, host=host, reason=reason, client_ip=PUPIL, group=group,
        reference=reference if kind == "unblock" else None, user="alice"))
    return number


def run(capsys, config_path: Path, *args: str) -> tuple[int, str, str]:
    status = cli.main(["requests", *args, "--config", str(config_path)])
    out, err = capsys.readouterr()
    return status, out, err


def test_list_shows_open_requests_in_school_time(config, config_path, capsys):
    number = add(config, reason="for my \x1b[2Jproject")
    status, out, _ = run(capsys, config_path, "list")
    assert status == 0
    assert f"{number:>5}  " in out and "unblock" in out and "alice (secondary)" in out
    assert BLOCKED in out and "reason: for my ?[2Jproject" in out and "\x1b" not in out

    status, out, _ = run(capsys, config_path, "list", "--json")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert (row["number"], row["status"], row["reason"]) == (
        number, "open", "for my \x1b[2Jproject")

    assert run(capsys, config_path, "list", "--status", "approved")[1] == "no approved requests\n"


def test_approve_allows_the_site_for_the_reporters_group_with_an_audit_row(config, config_path,
                                                                          capsys):
    number = add(config)
    status, out, err = run(capsys, config_path, "approve", str(number), "--by", "tech",
                           "--note", "fine for homework")
    assert status == 0, err
    assert f"approved request {number}: allowed www.bet365.com for secondary" in out
    assert "no running gateway found" in out

    (entry,) = load_local_policy(local_policy_path(config))
    assert (entry.action, entry.target, entry.scope, entry.by) == (
        "allow", "www.bet365.com", "secondary", "tech")
    assert entry.reason == f"request {number}: homework"
    (audit,) = read_audit(config.database_path)
    assert (audit.actor, audit.action, audit.target, audit.scope, audit.reason, audit.outcome) == (
        "tech", "allow", "www.bet365.com", "secondary", f"request {number}: homework", "done")
    assert audit.detail["request"] == number and audit.detail["note"] == "fine for homework"
    (row,) = stored(config)
    assert (row["status"], row["decided_by"], row["decision_note"], row["override_scope"]) == (
        "approved", "tech", "fine for homework", "secondary")

    # Decided once only.
    status, _, err = run(capsys, config_path, "approve", str(number), "--by", "other")
    assert status == 1 and "already approved by tech" in err
    status, _, err = run(capsys, config_path, "deny", str(number), "--by", "other")
    assert status == 1 and "already approved" in err
    assert len(read_audit(config.database_path)) == 1


@pytest.mark.parametrize(
    ("args", "target", "scopes"),
    [
        # Other groups, every group, a narrower target.
        (["--group", "primary", "--group", "guest"], "www.bet365.com", {"primary", "guest"}),
        (["--all"], "www.bet365.com", {"*"}),
        (["--target", "https://www.bet365.com/casino"], "https://www.bet365.com/casino",
         {"secondary"}),
    ],
)
def test_approve_scope_and_target(config, config_path, capsys, args, target, scopes):
    number = add(config)
    status, _, err = run(capsys, config_path, "approve", str(number), "--by", "tech", *args)
    assert status == 0, err
    entries = load_local_policy(local_policy_path(config))
    assert {e.target for e in entries} == {target} and {e.scope for e in entries} == scopes


def test_approve_usage_problems_change_nothing(config, config_path, capsys):
    number = add(config, group="gone")
    status, _, err = run(capsys, config_path, "approve", str(number), "--by", "tech")
    assert status == 2 and "reporter's group 'gone' is no longer in the config" in err
    status, _, err = run(capsys, config_path, "approve", str(number), "--by", "tech",
                         "--group", "nope")
    assert status == 2 and "no group 'nope'" in err
    status, _, err = run(capsys, config_path, "approve", str(number), "--by", "tech",
                         "--group", "staff", "--until", "2001-01-01")
    assert status == 2 and "already past" in err
    status, _, err = run(capsys, config_path, "approve", "99", "--by", "tech")
    assert status == 1 and "no request 99" in err
    assert load_local_policy(local_policy_path(config)) == []
    assert stored(config)[0]["status"] == "open"


def test_approving_a_block_request_blocks_the_page(config, config_path, capsys):
    number = add(config, kind="block", url="https://bad-site.example/page?id=3", group="staff")
    status, out, err = run(capsys, config_path, "approve", str(number), "--by", "tech")
    assert status == 0, err
    (entry,) = load_local_policy(local_policy_path(config))
    assert (entry.action, entry.target, entry.scope) == (
        "block", "https://bad-site.example/page?id=3", "staff")


def test_approve_says_when_a_more_specific_entry_still_decides(config, config_path, capsys):
    status = cli.main(["block", "https://www.bet365.com/casino", "--group", "secondary",
                       "--reason", "casino pages", "--by", "dsl", "--config", str(config_path)])
    assert status == 0
    number = add(config)
    capsys.readouterr()
    status, _, err = run(capsys, config_path, "approve", str(number), "--by", "tech")
    assert status == 0
    assert ("note: for group secondary the page is still decided by the more specific block "
            "entry https://www.bet365.com/casino") in err


def test_deny_changes_nothing_and_is_audited(config, config_path, capsys):
    number = add(config, reason="need it")
    status, out, err = run(capsys, config_path, "deny", str(number), "--by", "tech",
                           "--note", "not for school")
    assert status == 0, err
    assert f"denied request {number}" in out
    assert load_local_policy(local_policy_path(config)) == []
    (audit,) = read_audit(config.database_path)
    assert (audit.actor, audit.action, audit.target, audit.scope, audit.reason) == (
        "tech", "request-denied", BLOCKED, "secondary", f"request {number}: need it")
    assert audit.detail == {"request": number, "kind": "unblock", "note": "not for school"}
    (row,) = stored(config)
    assert (row["status"], row["decided_by"], row["decision_note"]) == (
        "denied", "tech", "not for school")


@pytest.mark.parametrize("action", ["approve", "deny"])
def test_a_request_whose_page_joined_an_illegal_list_is_closed_and_forgotten(
        config, config_path, capsys, action):
    url = f"http://www.{ILLEGAL_HOST}/a/page"
    number = add(config, url=url)  # stored before the list gained it
    status, out, _ = run(capsys, config_path, "list")
    assert f"www.{ILLEGAL_HOST} (address hidden" in out and "/a/page" not in out
    status, out, _ = run(capsys, config_path, "list", "--json")
    assert json.loads(out)["url"] is None

    status, out, err = run(capsys, config_path, action, str(number), "--by", "tech")

    assert status == (2 if action == "approve" else 0), err
    assert load_local_policy(local_policy_path(config)) == []
    (row,) = stored(config)
    assert (row["status"], row["url"]) == ("denied", None)
    (audit,) = read_audit(config.database_path)
    assert audit.target == f"www.{ILLEGAL_HOST}"  # the host, never the address
    assert "/a/page" not in out + err + json.dumps([a.__repr__() for a in read_audit(
        config.database_path)])
    status, out, _ = run(capsys, config_path, "list", "--status", "all")
    assert "address hidden" in out and "/a/page" not in out


def test_an_allow_target_on_an_illegal_list_is_refused_and_the_request_stays_open(
        config, config_path, capsys):
    number = add(config)
    status, _, err = run(capsys, config_path, "approve", str(number), "--by", "tech",
                         "--target", ILLEGAL_HOST)
    assert status == 2 and "refused" in err
    (audit,) = read_audit(config.database_path)
    assert (audit.action, audit.outcome, audit.target) == ("allow", "refused", ILLEGAL_HOST)
    assert stored(config)[0]["status"] == "open"


def test_the_migration_makes_the_table(tmp_path):
    path = tmp_path / "s.sqlite3"
    open_for_writing(path)
    conn = sqlite3.connect(path)
    try:
        (name,) = conn.execute("SELECT name FROM schema_migrations WHERE number = 6").fetchone()
        columns = [r[1] for r in conn.execute("PRAGMA table_info(problem_reports)")]
    finally:
        conn.close()
    assert name == "problem reports"
    assert columns == ["id", "ts", "kind", "url", "host", "reference", "reason", "user", "device",
                       "client_ip", "group_name", "status", "decided_ts", "decided_by",
                       "decision_note", "override_scope"]


@pytest.mark.asyncio
async def test_new_reports_are_counted_by_kind_when_the_metric_exists(proxy, gateway):
    from prometheus_client import Counter

    registry = CollectorRegistry()
    counter = getattr(gateway.metrics, "problem_reports", None)
    if counter is None:  # metrics.py may not declare it: the addon counts only when it does
        counter = Counter("schoolgate_problem_reports", "Problem reports stored", ["kind"],
                          registry=registry)
        gateway.metrics.problem_reports = counter
    form = await block_page_form(proxy)
    await submit(proxy, BLOCKED, form, reason="homework")
    await submit(proxy, BLOCKED, form, reason="again")  # the same page: not counted twice
    assert counter.labels("unblock")._value.get() == 1
