"""Issue 5 end to end: a pupil's search for a high-severity phrase, through the running gateway,
is blocked with a page that offers help, stored as a search event with the engine, the term, the
phrase, the theme and the severity, and e-mailed to the DSL at once through a real SMTP server
(aiosmtpd on loopback). A staff member's concern goes to the headteacher instead."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

from .harness import ORIGIN_NAMES, ROOT, TIMEOUT, make_pki, wait_for_events, write_config
from .policy_harness import Browser, RecordingOrigin, only_trusting, start_gateway

pytestmark = pytest.mark.e2e

PUPIL, STAFF = "127.0.0.1", "127.0.0.2"
GOOGLE, BING = "www.google.com", "www.bing.com"


class Inbox:
    """Every message the test SMTP server accepts, parsed."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's API
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def wait_for(self, text: str, timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for rcpt, message in self.messages:
                    body = message.get_body(preferencelist=("plain",)).get_content()
                    if text in body:
                        return rcpt, message, body
            time.sleep(0.05)
        raise AssertionError(f"no mail containing {text!r} within {timeout}s; got "
                             f"{[m['Subject'] for _, m in self.messages]}")


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    import socket

    handler = Inbox()
    with socket.socket() as s:  # aiosmtpd's readiness check connects to the given port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def school(tmp_path_factory, inbox):
    _, smtp_port = inbox
    tmp = tmp_path_factory.mktemp("search-alerts")
    pki = make_pki(tmp / "pki", names=(*ORIGIN_NAMES, GOOGLE, BING))
    origin = RecordingOrigin(pki)
    routing = tmp / "routing.yaml"
    routing.write_text(f"""\
staff_groups: [staff]
templates: {ROOT / "templates" / "email"}
smtp: {{host: 127.0.0.1, port: {smtp_port}, from: "Schoolgate <schoolgate@school.test>",
        timeout: 10s}}
rules:
  - name: concerns about pupils to the DSL
    min_severity: medium
    recipients: [dsl@school.test]
fallback:
  pupils: {{recipients: [dsl@school.test]}}
  staff: {{recipients: [head@school.test]}}
""", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["keywords"] = {"library": str(ROOT / "keywords")}
        doc["alerts"] = {"routing": str(routing)}
        doc["groups"]["staff"]["subnets"] = ["127.0.0.2/32"]
        doc["groups"]["staff"]["keyword_threshold"] = 20  # staff: recorded and alerted, not blocked

    setup = write_config(tmp / "gateway", upstream_ca=pki.ca_cert, patch=patch)
    with start_gateway("search-alerts", setup.config, resolve=(GOOGLE, BING)) as gw:
        yield setup, gw, origin
    origin.close()


def test_high_severity_search_is_blocked_stored_and_mailed_to_the_dsl(school, inbox):
    setup, gw, origin = school
    handler, _ = inbox
    browser = Browser(gw.proxy_port, only_trusting(setup.schoolgate_ca), source=PUPIL)
    url = origin.url("https", GOOGLE, "/search?q=how+to+k1ll+mys3lf&oq=how+to&sourceid=chrome")

    reply = browser.get(url)
    assert reply.status == 403
    assert "Childline: 0800 1111" in reply.text
    assert "k1ll" not in reply.text  # the page never repeats the words
    assert origin.requests_with("mys3lf") == []  # the search never reached Google
    reference = reply.headers["X-Schoolgate-Reference"]

    (row,) = wait_for_events(setup.database, "reference = ?", [reference], gateway=gw)
    assert {k: row[k] for k in ("action", "group_name", "engine", "search_term",
                                "search_normalised", "theme", "severity", "reason")} == {
        "action": "block", "group_name": "pupils", "engine": "google",
        "search_term": "how to k1ll mys3lf", "search_normalised": "how to kill myself",
        "theme": "suicide_selfharm", "severity": "high", "reason": "keywords",
    }
    assert row["matched_phrase"]

    rcpt, message, body = handler.wait_for(reference)
    assert rcpt == ["dsl@school.test"]
    for fact in ("127.0.0.1", "pupils", "google", "how to k1ll mys3lf", "suicide_selfharm",
                 "high", f"schoolgate report context --reference {reference}"):
        assert fact in body, f"the alert does not say {fact!r}:\n{body}"
    assert "k1ll" not in message["Subject"]  # subjects show on lock screens


def test_a_concern_about_staff_goes_to_the_headteacher(school, inbox):
    setup, gw, origin = school
    handler, _ = inbox
    browser = Browser(gw.proxy_port, only_trusting(setup.schoolgate_ca), source=STAFF)
    url = origin.url("https", BING, "/search?q=how+to+kill+myself&form=QBLH")

    reply = browser.get(url)
    assert reply.status == 200  # staff threshold 20: recorded and alerted, not blocked
    (request,) = origin.requests_with("kill+myself")
    assert "adlt=" in request.path  # safe search still locked (staff: strict by default)
    (row,) = wait_for_events(setup.database, "engine = 'bing' AND client_ip = ?", [STAFF],
                             gateway=gw)
    assert (row["action"], row["theme"], row["severity"]) == ("allow", "suicide_selfharm", "high")
    rcpt, _, body = handler.wait_for("how to kill myself")
    assert rcpt == ["head@school.test"]
    assert "staff" in body


def test_every_search_is_an_event_even_when_nothing_is_flagged(school):
    setup, gw, origin = school
    browser = Browser(gw.proxy_port, only_trusting(setup.schoolgate_ca), source=PUPIL)
    assert browser.get(origin.url("https", GOOGLE, "/search?q=volcano+facts+for+kids")).status == 200
    (row,) = wait_for_events(setup.database, "search_term = ?", ["volcano facts for kids"],
                             gateway=gw)
    assert (row["engine"], row["theme"], row["severity"], row["action"]) == (
        "google", None, None, "allow")


def test_the_search_is_a_row_in_that_days_report(school, tmp_path):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from .harness import run_cli

    setup, gw, origin = school
    browser = Browser(gw.proxy_port, only_trusting(setup.schoolgate_ca), source=PUPIL)
    reply = browser.get(origin.url("https", GOOGLE, "/search?q=i+want+to+unalive+myself"))
    reference = reply.headers["X-Schoolgate-Reference"]
    wait_for_events(setup.database, "reference = ?", [reference], gateway=gw)

    today = datetime.now(ZoneInfo("Europe/London")).date().isoformat()
    out = tmp_path / "reports"
    done = run_cli("report", "daily", "--date", today, "--out", str(out),
                   "--config", str(setup.config))
    assert done.returncode == 0, done.stderr
    html = (out / f"suspicious-searches-{today}.html").read_text(encoding="utf-8")
    csv_text = (out / f"suspicious-searches-{today}.csv").read_text(encoding="utf-8")
    for text in (html, csv_text):
        assert "i want to unalive myself" in text
        assert "127.0.0.1" in text  # the person: no login here, so the IP address
    assert "suicide" in html.lower()
