"""What an alert says: the facts taken from an event (who, when, what, what was done, how to see
the hour either side), rendered through the e-mail templates (`templates/email/`: the school's
copies, else the package's).

Illegal-list hits are built from a short allow-list of facts (host and list name), so no URL,
path, search term or list entry can reach a message, a webhook or the outbox.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from ..config.model import Destination, Routing
from ..events import ILLEGAL_THEME, Event
from ..events import THEME_TITLES as _LIBRARY_THEME_TITLES
from ..pages import environment
from ..wording import counted

__all__ = [
    "Alert",
    "AlertTemplates",
    "TEMPLATE_NAMES",
    "THEME_TITLES",
    "TemplateError",
    "context_command",
    "email_folder",
    "event_facts",
    "paused_facts",
]

log = logging.getLogger("schoolgate.alerts")

THEME_TITLES = {**_LIBRARY_THEME_TITLES, ILLEGAL_THEME: "Illegal content (blocked)"}
TEMPLATE_NAMES = ("alert.txt", "alert.html", "illegal.txt", "illegal.html", "paused.txt",
                  "paused.html")
_ACTIONS = {"block": "blocked", "allow": "allowed (recorded only)", "error": "blocked (error)"}
_URL_LIMIT = 300


class TemplateError(Exception):
    """An e-mail template cannot be used; the message names the file and line. Fix the template
    (or restore the shipped one) and start again."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One message for one destination, as it goes into the outbox."""

    kind: str
    """`alert` (a concern or an illegal-list hit) or `paused` (the rate-limit notice)."""
    destination: Destination
    subject: str
    text: str
    html: str | None
    facts: Mapping[str, Any] = field(repr=False)
    """JSON-safe facts; what webhooks post."""
    created: float
    dedup_key: str | None = None
    status: str = "pending"
    """`pending` (to deliver), `held` (recorded only, while alerts to its destination pause) or
    `recorded` (an e-mail alert where no mail server is configured: stored and logged only)."""

    @property
    def channel(self) -> str:
        return self.destination.channel


def context_command(reference: str | None) -> str | None:
    """The command that shows the person's browsing an hour either side of the event."""
    return f"schoolgate report context --reference {reference}" if reference else None


class _Clock:
    def __init__(self, timezone: str):
        self.zone = zoneinfo.ZoneInfo(timezone)  # reads the zone file once, here

    def local(self, ts: float, fmt: str = "%a %d %b %Y %H:%M:%S %Z") -> str:
        return datetime.fromtimestamp(ts, self.zone).strftime(fmt)

    @staticmethod
    def utc(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def event_facts(
    event: Event,
    *,
    theme: str,
    severity: str,
    is_staff: bool,
    timezone: str,
    school: str,
    list_titles: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The facts of one concern, JSON-safe. Illegal-list hits keep host and list name only."""
    clock = _Clock(timezone)
    person = event.user or event.device or event.client_ip
    facts: dict[str, Any] = {
        "kind": "illegal" if theme == ILLEGAL_THEME else "concern",
        "school": school,
        "theme": theme,
        "theme_title": THEME_TITLES.get(theme, theme.replace("_", " ").capitalize()),
        "severity": severity,
        "person": person,
        "user": event.user,
        "device": event.device,
        "client_ip": event.client_ip,
        "group": event.group,
        "about": "staff" if is_staff else "pupils",
        "when_utc": clock.utc(event.ts),
        "when_local": clock.local(event.ts),
        "timezone": timezone,
        "action": _ACTIONS.get(event.action, event.action),
        "reference": event.reference,
        "context_command": context_command(event.reference),
        "context_from": clock.local(event.ts - 3600, "%H:%M"),
        "context_to": clock.local(event.ts + 3600, "%H:%M"),
        "ts": event.ts,
        "repeats": None,
        "held": None,
    }
    if theme == ILLEGAL_THEME:
        name = (event.reason or "").partition(":")[2] or "illegal"
        facts |= {
            "host": event.host,
            "list_name": name,
            "list_title": (list_titles or {}).get(name, name.upper()),
        }
        return facts
    url = event.url
    if url and len(url) > _URL_LIMIT:
        url = url[:_URL_LIMIT] + "…"
    facts |= {
        "engine": event.engine,
        "search_term": event.search_term,
        "search_normalised": event.search_normalised,
        "matched_phrase": event.matched_phrase,
        "page_score": event.page_score,
        "page_phrases": list(event.page_phrases),
        "host": event.host,
        "url": url,
        "categories": list(event.categories),
        "reason": event.reason,
    }
    return facts


def paused_facts(
    *, destination: Destination, since: float, until: float, max_alerts: int, per: float,
    timezone: str, school: str,
) -> dict[str, Any]:
    clock = _Clock(timezone)
    return {
        "kind": "paused",
        "school": school,
        "channel": destination.channel,
        "since_local": clock.local(since, "%H:%M"),
        "until_local": clock.local(until, "%H:%M"),
        "until_utc": clock.utc(until),
        "max_alerts": max_alerts,
        "per_minutes": round(per / 60),
        "timezone": timezone,
    }


def email_folder(routing: Routing, templates: Path | None) -> Path | None:
    """Where the school's e-mail templates are: the routing file's `templates` folder when it
    names one, else `email/` in the config's `templates` folder; None: the package's only."""
    if routing.templates is not None:
        return routing.templates
    return templates / "email" if templates is not None else None


class AlertTemplates:
    """The six e-mail templates, compiled once at start-up (rendering then touches no file).
    Each comes from `folder` (the school's) when it is there, else from the package."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        # The environment never stats a file again, so no render costs the event loop a stat().
        env = environment(folder, within="email")
        self._templates: dict[str, jinja2.Template] = {}
        problems = []
        for name in TEMPLATE_NAMES:
            try:
                self._templates[name] = env.get_template(name)
            except jinja2.TemplateSyntaxError as e:
                problems.append(f"{e.filename or name}:{e.lineno}: {e.message}")
            except (jinja2.TemplateError, OSError, UnicodeDecodeError) as e:
                problems.append(f"{(folder or Path()) / name}: e-mail template cannot be read "
                                f"({e}); fix it, or delete it to use Schoolgate's own")
        if problems:
            raise TemplateError("\n".join(problems))

    def render(self, kind: str, facts: Mapping[str, Any]) -> tuple[str, str | None]:
        """Text and HTML for `kind` (`alert`, `illegal`, `paused`), with the facts as `a` and
        `counted(n, "alert")` ("1 alert", "2 alerts") for counts. A template that fails while
        rendering is logged and replaced by a plain listing, so the alert still goes."""
        try:
            text = self._templates[f"{kind}.txt"].render(a=facts, counted=counted)
        except Exception:  # noqa: BLE001 - an edited template must never cost an alert
            log.exception("e-mail template %s failed; sending a plain listing", f"{kind}.txt")
            text = plain_listing(facts)
        try:
            html: str | None = self._templates[f"{kind}.html"].render(a=facts, counted=counted)
        except Exception:  # noqa: BLE001
            log.exception("e-mail template %s failed; sending text only", f"{kind}.html")
            html = None
        return text, html


def template_kind(facts: Mapping[str, Any]) -> str:
    return {"illegal": "illegal", "paused": "paused"}.get(facts["kind"], "alert")


def subject_for(facts: Mapping[str, Any]) -> str:
    """The subject line: no names (it shows on lock screens), the reference to find it by."""
    ref = f" - ref {facts['reference']}" if facts.get("reference") else ""
    if facts["kind"] == "paused":
        return f"[Schoolgate] Alerts paused until {facts['until_local']}"
    if facts["kind"] == "illegal":
        return f"[Schoolgate] Illegal-content block ({facts['list_title']}) - action needed{ref}"
    return (f"[Schoolgate] {facts['severity'].capitalize()} concern: {facts['theme_title']} "
            f"({facts['group']}){ref}")


def plain_listing(facts: Mapping[str, Any]) -> str:
    lines = [f"{k}: {v}" for k, v in facts.items() if v not in (None, "", [])]
    return "Schoolgate alert (template failed; plain listing):\n\n" + "\n".join(lines) + "\n"
