"""Alert delivery with real parts: an aiosmtpd mail server on 127.0.0.1 (plain, STARTTLS with a
login, implicit TLS), a local HTTP server for webhooks (json, teams, slack), and the outbox in a
real SQLite store surviving a restart, retrying with backoff and giving up after its bound.

Retries are driven by `Deliverer.run_once()` and a fake clock: no test sleeps to wait for time.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import ipaddress
import json
import logging
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sample_school import REPO
from schoolgate.alerts import AlertEngine, Deliverer, Outbox, Round, SafeguardingAlerts, senders_for
from schoolgate.config.model import Routing
from schoolgate.config.routing import load_routing
from schoolgate.events import Event
from schoolgate.store import open_for_writing

ROOT = REPO
TEMPLATES = ROOT / "templates" / "email"
T0 = 1_700_000_000.0  # Tue 14 Nov 2023 22:13:20 UTC


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def pupil_search(**fields) -> Event:
    base = dict(
        ts=T0, client_ip="10.20.1.7", group="ks3", action="block", reference="ABCDE-12345",
        user="jsmith", device="LAPTOP-0042", method="GET", scheme="https", host="www.google.com",
        url="https://www.google.com/search?q=how+to+kil+myself", search_term="how to kil myself",
        search_normalised="how to kil myself", matched_phrase="kil myself",
        theme="suicide_selfharm", severity="high", engine="google", reason="keyword",
    )
    base.update(fields)
    return Event(**base)


def write_routing(tmp_path: Path, smtp: str, webhooks: str = "", extra: str = "") -> Routing:
    path = tmp_path / "routing.yaml"
    path.write_text(
        f"templates: {TEMPLATES}\n"
        f"smtp: {smtp}\n"
        + (f"webhooks:\n{webhooks}" if webhooks else "")
        + "rules:\n"
        "  - {min_severity: medium, recipients: [dsl@school.example, deputy@school.example]}\n"
        "fallback:\n"
        "  pupils: {recipients: [dsl@school.example]}\n"
        "  staff: {recipients: [head@school.example]}\n"
        + extra,
        encoding="utf-8",
    )
    return load_routing(path)


def free_port() -> int:
    """A port nothing listens on (the mail server that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# A real SMTP server (aiosmtpd) in the test's event loop


@dataclass
class Inbox:
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(
            email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        self.arrived.set()
        return "250 OK"


@contextlib.asynccontextmanager
async def smtp_server(
    port: int = 0,
    *,
    tls: ssl.SSLContext | None = None,
    implicit: bool = False,
    password: str | None = None,
) -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()

    def authenticate(server, session, envelope, mechanism, data):
        assert isinstance(data, LoginPassword)
        inbox.logins.append((data.login.decode(), data.password.decode()))
        # handled=False: aiosmtpd then answers 535 itself.
        return AuthResult(success=data.password.decode() == password, handled=False)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            inbox, hostname="mail.school.test",
            tls_context=None if implicit else tls,
            require_starttls=tls is not None and not implicit,
            authenticator=authenticate if password else None,
            auth_required=password is not None,
        ),
        "127.0.0.1", port, ssl=tls if implicit else None,
    )
    try:
        yield inbox, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Pki:
    ca_file: Path
    server: ssl.SSLContext


def make_pki(folder: Path) -> Pki:
    """A self-signed certificate for 127.0.0.1 and the server context that presents it."""
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.school.test")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "mail.pem", folder / "mail-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return Pki(cert_file, context)


def make(routing: Routing, db: Path, clock: Clock, outcomes: list | None = None):
    """An engine feeding a deliverer on the store at `db`, both on `clock`."""
    record = (lambda c, o: outcomes.append((c, o))) if outcomes is not None else (
        lambda c, o: None)
    deliverer = Deliverer(db, senders_for(routing), routing.delivery, clock=clock,
                          on_outcome=record)
    engine = AlertEngine(routing, deliverer.submit, clock=clock, school="Hillside Academy",
                         on_outcome=record)
    return engine, deliverer


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "schoolgate.sqlite3"
    open_for_writing(path)
    return path


def text_part(msg: email.message.EmailMessage) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


# ---------------------------------------------------------------------------------------------
# E-mail


@pytest.mark.asyncio
async def test_a_real_mail_server_receives_the_alert(tmp_path, db):
    async with smtp_server() as (inbox, port):
        routing = write_routing(
            tmp_path, f'{{host: 127.0.0.1, port: {port}, from: "Schoolgate <sg@school.example>"}}')
        outcomes: list = []
        engine, deliverer = make(routing, db, Clock(), outcomes)
        assert len(engine.consider(pupil_search())) == 1
        assert inbox.messages == []  # consider only queues
        result = await deliverer.run_once()
    assert (result.stored, result.sent) == (1, 1)
    (msg,) = inbox.messages
    assert inbox.envelopes == [("sg@school.example", ["dsl@school.example",
                                                       "deputy@school.example"])]
    # Python folds a long subject right after "Subject:"; unfolding leaves a space to trim.
    assert msg["Subject"].strip() == ("[Schoolgate] High concern: Suicide and self-harm (ks3) - "
                              "ref ABCDE-12345")
    assert msg["From"] == "Schoolgate <sg@school.example>"
    assert msg["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"  # when the alert was raised
    body = text_part(msg)
    for expected in ("jsmith", "LAPTOP-0042", "10.20.1.7", "ks3", "Tue 14 Nov 2023 22:13:20 GMT",
                     "2023-11-14 22:13:20 UTC", '"how to kil myself" on google', '"kil myself"',
                     "Suicide and self-harm", "blocked",
                     "schoolgate report context --reference ABCDE-12345"):
        assert expected in body, expected
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "<table" in html and "jsmith" in html
    (row,) = Outbox(db).rows()
    assert (row.status, row.attempts, row.sent_at, row.last_error) == ("sent", 1, T0, None)
    assert outcomes == [("email", "sent")]
    assert deliverer.outbox_depth() == 0


@pytest.mark.asyncio
async def test_starttls_and_login_with_a_password_file(tmp_path, db, caplog):
    pki = make_pki(tmp_path)
    password_file = tmp_path / "smtp-password"
    password_file.write_text("correct horse battery\n", encoding="utf-8")
    async with smtp_server(tls=pki.server, password="correct horse battery") as (inbox, port):
        routing = write_routing(
            tmp_path,
            f"{{host: 127.0.0.1, port: {port}, from: sg@school.example, starttls: true, "
            f"username: gateway, password_file: {password_file}, ca_file: {pki.ca_file}}}")
        engine, deliverer = make(routing, db, Clock())
        engine.consider(pupil_search())
        assert (await deliverer.run_once()).sent == 1
        # A wrong password is retried (the technician may fix the file), and never recorded.
        password_file.write_text("wrong password\n", encoding="utf-8")
        engine.consider(pupil_search(user="kpatel"))
        assert (await deliverer.run_once()).retried == 1
    # aiosmtplib tries each mechanism the server offers (PLAIN, then LOGIN) before giving up.
    assert inbox.logins[0] == ("gateway", "correct horse battery")
    assert set(inbox.logins[1:]) == {("gateway", "wrong password")}
    assert len(inbox.messages) == 1 and "jsmith" in text_part(inbox.messages[0])
    sent, pending = Outbox(db).rows()
    assert pending.status == "pending" and "login failed: 535" in pending.last_error
    recorded = repr(Outbox(db).rows()) + caplog.text
    assert "correct horse" not in recorded and "wrong password" not in recorded


@pytest.mark.asyncio
async def test_starttls_is_required_when_asked_for(tmp_path, db):
    # A server that offers no STARTTLS: the alert is not sent in clear text.
    async with smtp_server() as (inbox, port):
        routing = write_routing(
            tmp_path, f"{{host: 127.0.0.1, port: {port}, from: sg@school.example, "
                      "starttls: true}")
        engine, deliverer = make(routing, db, Clock())
        engine.consider(pupil_search())
        assert (await deliverer.run_once()).retried == 1
    assert inbox.messages == []
    assert "STARTTLS" in Outbox(db).rows()[0].last_error.upper()


@pytest.mark.asyncio
async def test_implicit_tls(tmp_path, db):
    pki = make_pki(tmp_path)
    async with smtp_server(tls=pki.server, implicit=True) as (inbox, port):
        routing = write_routing(
            tmp_path, f"{{host: 127.0.0.1, port: {port}, from: sg@school.example, "
                      f"implicit_tls: true, ca_file: {pki.ca_file}}}")
        engine, deliverer = make(routing, db, Clock())
        engine.consider(pupil_search())
        assert (await deliverer.run_once()).sent == 1
    assert len(inbox.messages) == 1


# ---------------------------------------------------------------------------------------------
# The outbox: restarts, backoff, giving up


@pytest.mark.asyncio
async def test_the_outbox_delivers_after_a_restart_once_the_mail_server_is_up(tmp_path, db):
    port = free_port()  # the mail server is down
    routing = write_routing(tmp_path, f"{{host: 127.0.0.1, port: {port}, from: sg@school.example}}")
    clock = Clock()
    outcomes: list = []
    engine, first = make(routing, db, clock, outcomes)
    engine.consider(pupil_search())
    assert (await first.run_once()).retried == 1
    (row,) = Outbox(db).rows()
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, T0 + 30)
    assert f"127.0.0.1:{port}" in row.last_error
    # A second alert is decided and the gateway stops before any round stores it.
    engine.consider(pupil_search(user="kpatel", reference="ZZZZZ-00001"))
    assert first.outbox_depth() == 2
    await first.stop()
    assert len(Outbox(db).rows("pending")) == 2

    # The gateway restarts (a new engine and deliverer on the same store), then mail comes up.
    _, second = make(routing, db, clock, outcomes)
    async with smtp_server(port) as (inbox, _):
        clock.advance(29)  # the first alert's retry is not due yet; the second one is
        assert (await second.run_once()).sent == 1
        clock.advance(1)
        assert (await second.run_once()).sent == 1
    assert sorted(m["Subject"].strip()[-11:] for m in inbox.messages) == ["ABCDE-12345", "ZZZZZ-00001"]
    rows = {r.payload["reference"]: r for r in Outbox(db).rows()}
    assert rows["ABCDE-12345"].attempts == 2 and rows["ABCDE-12345"].status == "sent"
    assert rows["ZZZZZ-00001"].attempts == 1 and rows["ZZZZZ-00001"].sent_at == T0 + 29
    assert outcomes == [("email", "retry"), ("email", "sent"), ("email", "sent")]


@pytest.mark.asyncio
async def test_backoff_doubles_and_giving_up_is_recorded(tmp_path, db):
    port = free_port()
    routing = write_routing(
        tmp_path, f"{{host: 127.0.0.1, port: {port}, from: sg@school.example}}",
        extra="delivery: {first_retry: 30s, longest_retry: 100s, max_attempts: 5}\n")
    clock = Clock()
    outcomes: list = []
    engine, deliverer = make(routing, db, clock, outcomes)
    engine.consider(pupil_search())
    waits = []
    for _ in range(4):
        assert (await deliverer.run_once()).retried == 1
        (row,) = Outbox(db).rows()
        waits.append(row.next_attempt_at - clock())
        clock.advance(1)
        assert (await deliverer.run_once()).retried == 0  # not due yet: nothing tried
        clock.t = row.next_attempt_at
    assert waits == [30, 60, 100, 100]
    assert (await deliverer.run_once()).failed == 1
    (row,) = Outbox(db).rows()
    assert row.status == "failed" and row.next_attempt_at is None and row.attempts == 5
    assert row.last_error.startswith("gave up after 5 attempts over 4.8 min: mail server "
                                     f"127.0.0.1:{port}")
    assert outcomes == [("email", "retry")] * 4 + [("email", "failed")]
    assert deliverer.outbox_depth() == 0
    # Nothing more is tried.
    clock.advance(86400)
    assert await deliverer.run_once() == Round(stored=0, sent=0, retried=0, failed=0)


@pytest.mark.asyncio
async def test_giving_up_after_the_time_bound(tmp_path, db):
    port = free_port()
    routing = write_routing(
        tmp_path, f"{{host: 127.0.0.1, port: {port}, from: sg@school.example}}",
        extra="delivery: {first_retry: 1h, longest_retry: 1h, give_up_after: 2h}\n")
    clock = Clock()
    engine, deliverer = make(routing, db, clock)
    engine.consider(pupil_search())
    assert (await deliverer.run_once()).retried == 1
    clock.advance(3600)
    assert (await deliverer.run_once()).retried == 1
    clock.advance(3600)
    assert (await deliverer.run_once()).failed == 1
    (row,) = Outbox(db).rows()
    assert row.status == "failed" and row.last_error.startswith("gave up after 3 attempts "
                                                                "over 2.0 h")


@pytest.mark.asyncio
async def test_a_refused_recipient_fails_at_once(tmp_path, db):
    class Refusing(Inbox):
        async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
            return "550 no such mailbox"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Refusing(), hostname="mail.school.test"),
                                      "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        routing = write_routing(tmp_path,
                                f"{{host: 127.0.0.1, port: {port}, from: sg@school.example}}")
        engine, deliverer = make(routing, db, Clock())
        engine.consider(pupil_search())
        assert (await deliverer.run_once()).failed == 1
    finally:
        server.close()
        await server.wait_closed()
    (row,) = Outbox(db).rows()
    assert row.status == "failed" and "550 no such mailbox" in row.last_error
    assert "retrying cannot help" in row.last_error


@pytest.mark.asyncio
async def test_held_alerts_are_recorded_not_sent(tmp_path, db):
    async with smtp_server() as (inbox, port):
        routing = write_routing(
            tmp_path, f"{{host: 127.0.0.1, port: {port}, from: sg@school.example}}",
            extra="limits: {max_alerts: 2, per: 10m}\n")
        engine, deliverer = make(routing, db, Clock())
        for i in range(4):
            engine.consider(pupil_search(user=f"pupil{i}"))
        assert (await deliverer.run_once()).sent == 3  # two alerts and the pause notice
    subjects = sorted(m["Subject"].strip() for m in inbox.messages)
    assert subjects[0] == "[Schoolgate] Alerts paused until 22:23"
    statuses = [(r.kind, r.status) for r in Outbox(db).rows()]
    assert statuses == [("alert", "sent"), ("alert", "sent"), ("paused", "sent"),
                        ("alert", "held"), ("alert", "held")]


@pytest.mark.asyncio
async def test_with_smtp_off_an_email_alert_is_recorded_and_logged_never_tried(
        tmp_path, db, webhook, caplog):
    # Issue #15: the example's `localhost:25` with no mail server there meant an alert logged
    # "failed (attempt 1) ... next try in 30s" and so on for a day. With `smtp: off` the alert
    # is kept in the store and said in the log; a webhook beside it is still delivered.
    path = tmp_path / "routing.yaml"
    path.write_text(
        f"templates: {TEMPLATES}\n"
        "smtp: off\n"
        f"webhooks:\n  dsl-chat: {{url: \"{webhook.url}\", format: json}}\n"
        "rules:\n"
        "  - {min_severity: medium, channel: dsl-chat, continue: true}\n"
        "  - {min_severity: medium, recipients: [dsl@school.example, deputy@school.example]}\n"
        "fallback:\n"
        "  pupils: {recipients: [dsl@school.example]}\n"
        "  staff: {recipients: [head@school.example]}\n",
        encoding="utf-8",
    )
    routing = load_routing(path)
    assert routing.email_recorded_only
    outcomes: list = []
    engine, deliverer = make(routing, db, Clock(), outcomes)
    with caplog.at_level(logging.INFO, logger="schoolgate.alerts"):
        queued = engine.consider(pupil_search())
        for _ in range(3):
            done = await deliverer.run_once()
            assert (done.retried, done.failed) == (0, 0)
    assert sorted((a.channel, a.status) for a in queued) == [("dsl-chat", "pending"),
                                                             ("email", "recorded")]
    assert sorted((r.channel, r.status, r.attempts) for r in Outbox(db).rows()) == [
        ("dsl-chat", "sent", 1), ("email", "recorded", 0)]
    assert ("email", "recorded") in outcomes and ("email", "retry") not in outcomes
    said = [r for r in caplog.records if r.levelno >= logging.INFO]
    (recorded,) = [r.getMessage() for r in said if "recorded in the store" in r.getMessage()]
    assert recorded == ("alert for dsl@school.example, deputy@school.example recorded in the "
                        "store, not e-mailed (no mail server is configured): [Schoolgate] High "
                        "concern: Suicide and self-harm (ks3) - ref ABCDE-12345")
    assert not [r for r in said if r.levelno >= logging.WARNING]


@pytest.mark.asyncio
async def test_the_service_delivers_in_the_background_and_remembers_dedup(tmp_path, db):
    async with smtp_server() as (inbox, port):
        routing = write_routing(tmp_path,
                                f"{{host: 127.0.0.1, port: {port}, from: sg@school.example}}")
        clock = Clock()
        service = SafeguardingAlerts(routing, db, clock=clock, poll_interval=3600)
        await service.start()
        try:
            assert len(service.consider(pupil_search())) == 1
            # submit wakes the deliverer; no waiting for the poll interval.
            await asyncio.wait_for(inbox.arrived.wait(), timeout=10)
        finally:
            await service.stop()
        # After a restart, the same person and theme inside the window are still repeats.
        clock.advance(60)
        again = SafeguardingAlerts(routing, db, clock=clock, poll_interval=3600)
        await again.start()
        try:
            assert again.consider(pupil_search()) == []
            assert len(again.consider(pupil_search(theme="drugs"))) == 1
        finally:
            await again.stop()
    assert len(inbox.messages) == 1
    assert [r.payload["theme"] for r in Outbox(db).rows()] == ["suicide_selfharm", "drugs"]


# ---------------------------------------------------------------------------------------------
# Webhooks


@dataclass
class Hook:
    url: str
    received: list[tuple[str, dict[str, str], dict]]
    status: list[int]


@pytest.fixture
def webhook() -> Iterator[Hook]:
    """A local HTTP server that records each POSTed JSON body and answers `status[0]`."""
    received: list = []
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers["Content-Length"])
            received.append((self.path, dict(self.headers), json.loads(self.rfile.read(length))))
            self.send_response(status[0])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Hook(f"http://127.0.0.1:{server.server_address[1]}/hooks/s3cr3t", received, status)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def webhook_routing(tmp_path: Path, hook: Hook, fmt: str, token: Path | None = None) -> Routing:
    """Routing that sends everything to one webhook (no e-mail at all)."""
    token_line = f", token_file: {token}" if token else ""
    path = tmp_path / "routing.yaml"
    path.write_text(
        f"templates: {TEMPLATES}\n"
        "webhooks:\n"
        f"  dsl-chat: {{url: \"{hook.url}\", format: {fmt}{token_line}}}\n"
        "rules:\n"
        "  - {min_severity: medium, channel: dsl-chat}\n"
        "fallback:\n"
        "  pupils: {channel: dsl-chat}\n"
        "  staff: {channel: dsl-chat}\n",
        encoding="utf-8",
    )
    return load_routing(path)


@pytest.mark.asyncio
async def test_webhook_json_with_a_bearer_token(tmp_path, db, webhook):
    token = tmp_path / "token"
    token.write_text("tok-123456\n", encoding="utf-8")
    routing = webhook_routing(tmp_path, webhook, "json", token)
    engine, deliverer = make(routing, db, Clock())
    engine.consider(pupil_search())
    assert (await deliverer.run_once()).sent == 1
    ((path, headers, body),) = webhook.received
    assert path == "/hooks/s3cr3t"
    assert headers["Authorization"] == "Bearer tok-123456"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert body["schoolgate"] == "alert" and body["kind"] == "concern"
    assert body["subject"].startswith("[Schoolgate] High concern")
    facts = body["facts"]
    assert {k: facts[k] for k in ("user", "device", "client_ip", "group", "engine", "search_term",
                                  "theme", "severity", "action", "matched_phrase", "reference",
                                  "when_utc", "context_command")} == {
        "user": "jsmith", "device": "LAPTOP-0042", "client_ip": "10.20.1.7", "group": "ks3",
        "engine": "google", "search_term": "how to kil myself", "theme": "suicide_selfharm",
        "severity": "high", "action": "blocked", "matched_phrase": "kil myself",
        "reference": "ABCDE-12345", "when_utc": "2023-11-14 22:13:20 UTC",
        "context_command": "schoolgate report context --reference ABCDE-12345"}


@pytest.mark.asyncio
async def test_webhook_teams_card(tmp_path, db, webhook):
    engine, deliverer = make(webhook_routing(tmp_path, webhook, "teams"), db, Clock())
    engine.consider(pupil_search())
    assert (await deliverer.run_once()).sent == 1
    ((_, _, body),) = webhook.received
    assert body["type"] == "message" and "jsmith" in body["text"]
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    title, factset = card["body"]
    assert title["text"].startswith("[Schoolgate] High concern: Suicide and self-harm")
    facts = {f["title"]: f["value"] for f in factset["facts"]}
    assert facts["User"] == "jsmith" and facts["IP address"] == "10.20.1.7"
    assert facts["Searched for"] == "\u201chow to kil myself\u201d on google"
    assert facts["Hour either side"] == (
        "21:13 to 23:13: run schoolgate report context --reference ABCDE-12345")


@pytest.mark.asyncio
async def test_webhook_slack_blocks(tmp_path, db, webhook):
    engine, deliverer = make(webhook_routing(tmp_path, webhook, "slack"), db, Clock())
    engine.consider(pupil_search(search_term="<b>kil myself</b> & more"))
    assert (await deliverer.run_once()).sent == 1
    ((_, _, body),) = webhook.received
    assert body["text"].startswith("[Schoolgate] High concern")
    header, *sections = body["blocks"]
    assert header["type"] == "header"
    fields = [f["text"] for s in sections for f in s["fields"]]
    assert all(len(s["fields"]) <= 10 for s in sections)
    assert "*User:*\njsmith" in fields
    assert "*Searched for:*\n\u201c&lt;b&gt;kil myself&lt;/b&gt; &amp; more\u201d on google" in fields


@pytest.mark.asyncio
async def test_webhook_errors_retry_or_fail_with_the_status(tmp_path, db, webhook):
    clock = Clock()
    engine, deliverer = make(webhook_routing(tmp_path, webhook, "json"), db, clock)
    webhook.status[0] = 503
    engine.consider(pupil_search())
    assert (await deliverer.run_once()).retried == 1
    (row,) = Outbox(db).rows()
    assert row.last_error.startswith("webhook dsl-chat: HTTP 503")
    assert "s3cr3t" not in row.last_error  # the URL (and its secret) is never recorded
    webhook.status[0] = 404
    clock.advance(30)
    assert (await deliverer.run_once()).failed == 1
    (row,) = Outbox(db).rows()
    assert row.status == "failed" and "HTTP 404" in row.last_error
    assert len(webhook.received) == 2


@pytest.mark.asyncio
async def test_an_illegal_hit_webhook_never_carries_the_address(tmp_path, db, webhook):
    engine, deliverer = make(webhook_routing(tmp_path, webhook, "json"), db, Clock())
    engine.consider(Event(ts=T0, client_ip="10.20.1.8", group="ks4", action="block",
                          reference="KQ7RT-M2XZP", user="abrown", host="bad.example",
                          url="https://bad.example/gallery/9f8e7d.jpg", reason="illegal:iwf"))
    assert (await deliverer.run_once()).sent == 1
    ((_, _, body),) = webhook.received
    raw = json.dumps(body)
    assert body["facts"]["host"] == "bad.example" and body["facts"]["list_name"] == "iwf"
    assert "gallery" not in raw and "9f8e7d" not in raw
