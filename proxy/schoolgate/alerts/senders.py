"""Senders deliver one outbox row: e-mail through a mail server (aiosmtplib: STARTTLS, implicit
TLS, login) and webhooks as a JSON POST (Schoolgate's own JSON, a Teams card or Slack blocks).

A failure raises `DeliveryError`; `permanent` ones (a refused recipient, a 404) are not retried.
No message, log line or error ever carries a password, a token or a webhook URL.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import EmailMessage
from http.client import HTTPMessage
from typing import IO, Any, Protocol

import aiosmtplib

from ..config.model import EMAIL, Routing, SmtpSettings, WebhookSettings
from ..wording import counted
from .rows import OutboxRow

__all__ = [
    "DeliveryError",
    "Sender",
    "SmtpSender",
    "WebhookSender",
    "fact_lines",
    "senders_for",
    "webhook_payload",
]

# SMTP replies that a changed password file can fix: retry them rather than give up at once.
_SMTP_AUTH_CODES = (530, 534, 535, 538)
# HTTP statuses worth retrying; any other 4xx means the request itself is wrong.
_HTTP_RETRY = (408, 425, 429)


class DeliveryError(Exception):
    """A send failed. `permanent`: retrying cannot help (the row is marked failed at once);
    otherwise the outbox retries with backoff. The message is safe to store and show."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class Sender(Protocol):
    async def send(self, row: OutboxRow) -> None:
        """Deliver `row` or raise `DeliveryError`."""


def senders_for(routing: Routing) -> dict[str, Sender]:
    """One sender per channel the routing file defines: `email` and each webhook by name."""
    out: dict[str, Sender] = {}
    if routing.smtp is not None:
        out[EMAIL] = SmtpSender(routing.smtp)
    for name, hook in routing.webhooks.items():
        out[name] = WebhookSender(hook)
    return out


# ---------------------------------------------------------------------------------------------
# E-mail


class SmtpSender:
    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self._local_hostname: str | None = None

    def message(self, row: OutboxRow) -> EmailMessage:
        """The e-mail for `row`: plain text with an HTML alternative when there is one."""
        s = self.settings
        msg = EmailMessage()
        msg["Subject"] = row.subject
        msg["From"] = s.sender
        msg["To"] = ", ".join(row.recipients)
        # The time the alert was raised, so mail clients sort it there even after retries.
        msg["Date"] = email.utils.formatdate(row.created, usegmt=True)
        domain = email.utils.parseaddr(s.sender)[1].rpartition("@")[2] or "localhost"
        msg["Message-ID"] = email.utils.make_msgid(f"schoolgate-alert-{row.id}", domain=domain)
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Schoolgate-Alert"] = f"{row.kind} {row.id}"
        msg.set_content(row.body)
        if row.html:
            msg.add_alternative(row.html, subtype="html")
        return msg

    async def send(self, row: OutboxRow) -> None:
        s = self.settings
        if not row.recipients:
            raise DeliveryError("no recipients", permanent=True)
        password = None
        if s.password_file is not None:
            try:
                password = (await asyncio.to_thread(s.password_file.read_text, "utf-8")).strip()
            except OSError as e:
                raise DeliveryError(f"cannot read the SMTP password file {s.password_file}: "
                                    f"{e.strerror or e}") from None
        if self._local_hostname is None:
            # getfqdn may ask DNS: once, in a thread.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        address = email.utils.parseaddr(s.sender)[1] or s.sender
        try:
            await aiosmtplib.send(
                self.message(row),
                sender=address,
                recipients=list(row.recipients),
                hostname=s.host,
                port=s.port,
                username=s.username,
                password=password,
                use_tls=s.implicit_tls,
                start_tls=True if s.starttls else False,
                cert_bundle=str(s.ca_file) if s.ca_file else None,
                timeout=s.timeout,
                local_hostname=self._local_hostname,
            )
        except aiosmtplib.SMTPRecipientsRefused as e:
            refused = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in e.recipients)
            raise DeliveryError(f"mail server {s.host}:{s.port} refused {refused}",
                                permanent=True) from None
        except aiosmtplib.SMTPResponseException as e:
            permanent = e.code >= 500 and e.code not in _SMTP_AUTH_CODES
            what = "login failed" if e.code in _SMTP_AUTH_CODES else "said"
            raise DeliveryError(f"mail server {s.host}:{s.port} {what}: {e.code} {e.message}",
                                permanent=permanent) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            raise DeliveryError(f"mail server {s.host}:{s.port}: {_reason(e)}") from None


def _reason(e: BaseException | str) -> str:
    """Why a send failed, short: an exception's text (or its type), or a reason given as text
    (`URLError.reason` is either)."""
    text = str(e) or type(e).__name__
    return text[:300]


# ---------------------------------------------------------------------------------------------
# Webhooks


def fact_lines(facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The alert as (title, value) pairs for cards; the same facts the e-mail shows."""
    kind = facts.get("kind")
    if kind == "paused":
        return [
            ("Paused until", f"{facts['until_local']} school time ({facts['until_utc']})"),
            ("Why", f"{counted(facts['max_alerts'], 'alert')} in "
                    f"{counted(facts['per_minutes'], 'minute')}"),
            ("Meanwhile", "alerts are held and appear in the daily report; illegal-content "
                          "blocks are never paused"),
        ]
    out = [
        ("User", facts.get("user") or "not known"),
        ("Device", facts.get("device") or "not known"),
        ("IP address", facts["client_ip"]),
        ("Group", facts["group"] + (" (staff)" if facts.get("about") == "staff" else "")),
        ("When", f"{facts['when_local']} (school time); {facts['when_utc']}"),
    ]
    if kind == "illegal":
        out += [
            ("Site", facts.get("host") or "not known"),
            ("List", f"{facts['list_title']} ({facts['list_name']})"),
            ("Action", facts["action"]),
            ("Do not", "visit the site or try to see what was blocked; follow the school's "
                       "safeguarding procedure"),
        ]
    else:
        if facts.get("search_term"):
            engine = f" on {facts['engine']}" if facts.get("engine") else ""
            out.append(("Searched for", f"\u201c{facts['search_term']}\u201d{engine}"))
        if facts.get("page_phrases"):
            out.append(("Words on the page", f"{', '.join(facts['page_phrases'])} "
                        f"(score {facts['page_score']:g})"))
        elif facts.get("matched_phrase"):
            out.append(("Matched phrase", f"\u201c{facts['matched_phrase']}\u201d"))
        out += [
            ("Theme", f"{facts['theme_title']} ({facts['theme']})"),
            ("Severity", facts["severity"]),
        ]
        if facts.get("url"):
            out.append(("Web address", facts["url"]))
        elif facts.get("host"):
            out.append(("Site", facts["host"]))
        out.append(("Action", facts["action"]))
    if facts.get("reference"):
        out.append(("Reference", facts["reference"]))
    if rep := facts.get("repeats"):
        out.append(("Also", f"{rep['count']} more like this between {rep['since']} and "
                            f"{rep['until']}, not alerted separately"))
    if held := facts.get("held"):
        out.append(("Held", f"{counted(held['count'], 'alert')} held while paused from "
                            f"{held['since']} to {held['until']}; see the daily report"))
    hour = f"{facts['context_from']} to {facts['context_to']}"
    if facts.get("context_command"):
        out.append(("Hour either side", f"{hour}: run {facts['context_command']}"))
    else:
        out.append(("Hour either side", f"{hour}: look up {facts['person']} in the store"))
    return out


def webhook_payload(fmt: str, subject: str, text: str, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body a webhook of format `fmt` receives (see alerts/README.md)."""
    if fmt == "json":
        return {"schoolgate": "alert", "version": 1, "kind": facts.get("kind"),
                "subject": subject, "text": text, "facts": dict(facts)}
    lines = fact_lines(facts)
    if fmt == "teams":
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": subject, "weight": "Bolder", "size": "Medium",
                 "wrap": True, "color": "Attention"},
                {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in lines]},
            ],
        }
        return {
            "type": "message",
            "summary": subject,
            "text": text,
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                             "contentUrl": None, "content": card}],
        }
    if fmt == "slack":
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": subject[:150]}},
        ]
        fields = [{"type": "mrkdwn", "text": f"*{t}:*\n{_slack_escape(v)}"[:2000]}
                  for t, v in lines]
        for i in range(0, len(fields), 10):  # Slack allows ten fields per section
            blocks.append({"type": "section", "fields": fields[i:i + 10]})
        return {"text": subject, "blocks": blocks}
    raise ValueError(f"unknown webhook format {fmt!r}")


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirected POST would lose its body (or go somewhere unplanned): report it instead.
    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> urllib.request.Request | None:
        return None


class WebhookSender:
    def __init__(self, settings: WebhookSettings):
        self.settings = settings
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None)
        # Straight to the endpoint: no proxy from the environment (this machine may be the proxy).
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=context),
            _NoRedirect(),
        )

    def body(self, row: OutboxRow) -> bytes:
        payload = webhook_payload(self.settings.format, row.subject, row.body, row.payload)
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")

    async def send(self, row: OutboxRow) -> None:
        await asyncio.to_thread(self._post, self.body(row))

    def _post(self, body: bytes) -> None:
        s = self.settings
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Schoolgate alerts"}
        if s.token_file is not None:
            try:
                token = s.token_file.read_text(encoding="utf-8").strip()
            except OSError as e:
                raise DeliveryError(f"webhook {s.name}: cannot read its token file "
                                    f"{s.token_file}: {e.strerror or e}") from None
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(s.url, data=body, headers=headers, method="POST")  # noqa: S310 - routing checks the URL is http(s)
        try:
            with self._opener.open(request, timeout=s.timeout) as response:
                response.read(4096)
                status = response.status
        except urllib.error.HTTPError as e:
            with e:
                detail = e.read(300).decode("utf-8", "replace").strip()
            permanent = 400 <= e.code < 500 and e.code not in _HTTP_RETRY
            raise DeliveryError(f"webhook {s.name}: HTTP {e.code} {e.reason}"
                                f"{': ' + detail if detail else ''}", permanent=permanent) from None
        except urllib.error.URLError as e:
            raise DeliveryError(f"webhook {s.name}: cannot connect: {_reason(e.reason)}") from None
        except (OSError, TimeoutError) as e:
            raise DeliveryError(f"webhook {s.name}: {_reason(e)}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"webhook {s.name}: HTTP {status}")
