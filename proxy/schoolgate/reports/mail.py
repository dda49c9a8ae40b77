"""Send a report by e-mail through the alert routing's SMTP server: the HTML as the message's
rich body, with the HTML and CSV files attached so the DSL can keep them."""

from __future__ import annotations

import asyncio
import email.utils
import mimetypes
import socket
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from ..config.model import Config, SmtpSettings

__all__ = ["ReportMailError", "send_configured", "send_report_mail"]

MAX_ATTACHMENT = 10 * 1024 * 1024
"""Files larger than this are not attached (most school mail systems refuse ~20 MB messages);
the message says where the file is instead."""


class ReportMailError(Exception):
    """The report could not be sent; the files are written and the message says why."""


async def send_report_mail(smtp: SmtpSettings, to: Sequence[str], subject: str, text: str,
                           html: str, attachments: Sequence[Path] = ()) -> None:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(to)
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Auto-Submitted"] = "auto-generated"
    notes = []
    big = [p for p in attachments if p.stat().st_size > MAX_ATTACHMENT]
    for p in big:
        notes.append(f"{p.name} is too large to attach; it is on the gateway at {p}.")
    msg.set_content(text + ("\n\n" + "\n".join(notes) if notes else ""))
    if html and len(html.encode()) <= MAX_ATTACHMENT:
        msg.add_alternative(html, subtype="html")
    for p in attachments:
        if p in big:
            continue
        ctype = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        maintype, subtype = ctype.split("/", 1)
        data = await asyncio.to_thread(p.read_bytes)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=p.name)
    password = None
    if smtp.password_file is not None:
        password = (await asyncio.to_thread(smtp.password_file.read_text, "utf-8")).strip()
    try:
        await aiosmtplib.send(
            msg, sender=email.utils.parseaddr(smtp.sender)[1] or smtp.sender, recipients=list(to),
            hostname=smtp.host, port=smtp.port, username=smtp.username, password=password,
            use_tls=smtp.implicit_tls, start_tls=True if smtp.starttls else False,
            cert_bundle=str(smtp.ca_file) if smtp.ca_file else None, timeout=smtp.timeout,
            local_hostname=await asyncio.to_thread(socket.getfqdn),
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
        raise ReportMailError(f"mail server {smtp.host}:{smtp.port}: {e}") from None


def send_configured(config: Config, to: Sequence[str], subject: str, text: str, html: str,
                    attachments: Sequence[Path] = ()) -> None:
    """Send through the SMTP server of the config's alert routing (blocking: for the CLI)."""
    routing = config.alert_routing
    if routing is None or routing.smtp is None:
        raise ReportMailError("no SMTP server is set up (alerts.routing, its smtp section)")
    asyncio.run(send_report_mail(routing.smtp, to, subject, text, html, attachments))
