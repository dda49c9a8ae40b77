"""The alert engine: for each recorded event, decide whether anyone must hear about it now, and
queue the message. Decides only: no I/O, so it runs on the event loop beside the event writer.

Order of decisions for one event: what concern it is (illegal-list hit, or a theme with a
severity) -> who hears (routing rules, else the fallback when it must alert) -> is it a repeat
(same person and theme inside the dedup window: counted, not sent) -> may this destination
receive more now (rate limit: past it, one "alerts paused until" notice, then held).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zoneinfo
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config.model import EMAIL, Destination, Routing
from ..events import ILLEGAL_THEME, SEVERITIES, Event
from ..wording import counted
from .messages import (
    Alert,
    AlertTemplates,
    email_folder,
    event_facts,
    paused_facts,
    subject_for,
    template_kind,
)
from .outbox import Deliverer
from .senders import Sender, senders_for

__all__ = ["AlertEngine", "SafeguardingAlerts", "dedup_key"]

log = logging.getLogger("schoolgate.alerts")

_MAX_TERMS = 5  # repeats' search terms quoted in the next alert
_FORGET_AFTER = 24 * 3600  # a finished window with uncounted repeats is kept this long


def dedup_key(event: Event, theme: str) -> str:
    """The person (user, else device, else IP address) and the theme."""
    if event.user:
        person = f"user:{event.user}"
    elif event.device:
        person = f"device:{event.device}"
    else:
        person = f"ip:{event.client_ip}"
    return f"{person}|{theme}"


@dataclass(slots=True)
class _Window:
    """One person and theme: an alert went out at `started`; repeats until `until` are counted."""

    started: float
    until: float
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    terms: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Budget:
    """One destination's recent alerts, and its pause."""

    sent: deque[float] = field(default_factory=deque)
    paused_since: float = 0.0
    paused_until: float = 0.0
    held: int = 0


class AlertEngine:
    """Turns events into queued alerts. `consider` is called for every recorded event."""

    def __init__(
        self,
        routing: Routing,
        submit: Callable[[Alert], Any],
        *,
        templates: AlertTemplates | None = None,
        template_folder: Path | None = None,
        school: str = "School",
        timezone: str = "Europe/London",
        list_titles: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[str, str], None] = lambda channel, outcome: None,
    ):
        self.routing = routing
        self.template_folder = template_folder
        """The config's `templates` folder; the e-mail templates are in its `email/`."""
        self.templates = templates or AlertTemplates(email_folder(routing, template_folder))
        self.submit = submit
        self.school = school
        self.timezone = timezone
        self._zone = zoneinfo.ZoneInfo(timezone)  # loaded now; also keeps it in zoneinfo's cache
        self.list_titles = dict(list_titles or {})
        self.clock = clock
        self.on_outcome = on_outcome
        self._windows: dict[str, _Window] = {}
        self._budgets: dict[str, _Budget] = {}
        self._swept_at = 0.0

    def replace_routing(self, routing: Routing, templates: AlertTemplates | None = None, *,
                        template_folder: Path | None = None) -> None:
        """Use new rules and templates (after a reload). Dedup windows and rate limits carry
        on."""
        self.templates = templates or AlertTemplates(email_folder(routing, template_folder))
        self.template_folder = template_folder
        self.routing = routing

    def restore(self, recent: Iterable[tuple[str, float]]) -> None:
        """Re-open dedup windows for alerts made before a restart (`(dedup_key, created)`)."""
        window = self.routing.limits.dedup_window
        for key, created in recent:
            current = self._windows.get(key)
            if current is None or current.started < created:
                self._windows[key] = _Window(created, created + window)

    def consider(self, event: Event) -> list[Alert]:
        """Decide about one event; queue and return the alerts it causes (status `pending`, or
        `held` while a destination is paused), with any "alerts paused" notice. Never raises:
        a failure is logged and the event stays in the store for the daily report."""
        try:
            return self._consider(event)
        except Exception:  # noqa: BLE001 - alerting must never break recording or traffic
            log.exception("could not decide about an alert for the %s event with reference %s",
                          event.action, event.reference)
            return []

    def _consider(self, event: Event) -> list[Alert]:
        if (event.reason or "").startswith("illegal:"):
            theme, severity = ILLEGAL_THEME, "high"
        elif event.theme:
            theme = event.theme
            # An unknown severity still alerts when a rule asks for low.
            severity = event.severity if event.severity in SEVERITIES else "low"
        else:
            return []
        must_alert = theme == ILLEGAL_THEME or severity == "high"
        destinations = self.routing.route(theme, severity, event.group, must_alert=must_alert)
        if not destinations:
            return []
        now = self.clock()
        self._sweep(now)

        key = dedup_key(event, theme)
        window = self._windows.get(key)
        if window is not None and now < window.until:
            window.count += 1
            window.first = window.first or now
            window.last = now
            term = event.search_term if theme != ILLEGAL_THEME else None
            if term and term not in window.terms and len(window.terms) < _MAX_TERMS:
                window.terms.append(term)
            for d in destinations:
                self.on_outcome(d.channel, "deduplicated")
            return []
        self._windows[key] = _Window(now, now + self.routing.limits.dedup_window)

        facts = event_facts(
            event, theme=theme, severity=severity, is_staff=self.routing.is_staff(event.group),
            timezone=self.timezone, school=self.school, list_titles=self.list_titles,
        )
        if window is not None and window.count:
            facts["repeats"] = {"count": window.count, "since": self._hhmm(window.first),
                                "until": self._hhmm(window.last), "terms": list(window.terms)}

        out: list[Alert] = []
        for d in destinations:
            out.extend(self._to(d, facts, key, now, limited=theme != ILLEGAL_THEME))
        return out

    def _to(self, d: Destination, facts: dict[str, Any], key: str, now: float,
            *, limited: bool) -> list[Alert]:
        """The alerts for one destination, after its rate limit."""
        if not limited:  # illegal-list hits are never paused, and do not use up the budget
            return [self._queue(d, facts, key, now)]
        limits = self.routing.limits
        b = self._budgets.setdefault(d.key, _Budget())
        while b.sent and b.sent[0] <= now - limits.per:
            b.sent.popleft()
        out: list[Alert] = []
        if now >= b.paused_until and len(b.sent) >= limits.max_alerts:
            # The limit is reached: pause, and say so once.
            b.paused_since, b.paused_until = now, now + limits.per
            pause = paused_facts(destination=d, since=now, until=b.paused_until,
                                 max_alerts=limits.max_alerts, per=limits.per,
                                 timezone=self.timezone, school=self.school)
            out.append(self._queue(d, pause, None, now, kind="paused"))
            log.warning("alerts to %s paused until %s: %s in %s", d.key,
                        self._hhmm(b.paused_until), counted(len(b.sent), "alert"),
                        counted(round(limits.per / 60), "minute"))
        if now < b.paused_until:
            b.held += 1
            self.on_outcome(d.channel, "rate_limited")
            out.append(self._queue(d, facts, key, now, status="held"))
            return out
        if b.held:
            facts = dict(facts, held={"count": b.held, "since": self._hhmm(b.paused_since),
                                      "until": self._hhmm(b.paused_until)})
            b.held = 0
        b.sent.append(now)
        out.append(self._queue(d, facts, key, now))
        return out

    def _queue(self, d: Destination, facts: Mapping[str, Any], key: str | None, now: float,
               *, kind: str = "alert", status: str = "pending") -> Alert:
        text, html = self.templates.render(template_kind(facts), facts)
        subject = subject_for(facts)
        if status == "pending" and d.channel == EMAIL and self.routing.email_recorded_only:
            # No mail server (`smtp: off`): kept in the outbox and said in the log, never
            # tried, so nothing retries against a server that is not there.
            status = "recorded"
            self.on_outcome(d.channel, "recorded")
            log.info("alert for %s recorded in the store, not e-mailed (no mail server is "
                     "configured): %s", ", ".join(d.recipients), subject)
        alert = Alert(kind=kind, destination=d, subject=subject, text=text, html=html,
                      facts=facts, created=now, dedup_key=key, status=status)
        self.submit(alert)
        return alert

    def _hhmm(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self._zone).strftime("%H:%M")

    def _sweep(self, now: float) -> None:
        # Forget finished windows (a minute's work at most once a minute), keeping those with
        # repeats not yet reported for a day, so the next alert can still mention them.
        if now - self._swept_at < 60:
            return
        self._swept_at = now
        self._windows = {
            k: w for k, w in self._windows.items()
            if now < w.until or (w.count and now < w.until + _FORGET_AFTER)
        }
        per = self.routing.limits.per
        self._budgets = {
            k: b for k, b in self._budgets.items()
            if b.held or now < b.paused_until or (b.sent and b.sent[-1] > now - per)
        }


class SafeguardingAlerts:
    """The engine and the deliverer together, as the gateway uses them: `consider` per recorded
    event, `start` in `running`, `stop` in `done`, `outbox_depth` for a gauge."""

    def __init__(
        self,
        routing: Routing,
        database: Path,
        *,
        school: str = "School",
        timezone: str = "Europe/London",
        list_titles: Mapping[str, str] | None = None,
        template_folder: Path | None = None,
        senders: Mapping[str, Sender] | None = None,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[str, str], None] = lambda channel, outcome: None,
        poll_interval: float = 5.0,
    ):
        self.deliverer = Deliverer(
            database, senders if senders is not None else senders_for(routing), routing.delivery,
            clock=clock, on_outcome=on_outcome, poll_interval=poll_interval,
        )
        self.engine = AlertEngine(
            routing, self.deliverer.submit, school=school, timezone=timezone,
            list_titles=list_titles, template_folder=template_folder, clock=clock,
            on_outcome=on_outcome,
        )
        self.clock = clock

    def consider(self, event: Event) -> list[Alert]:
        return self.engine.consider(event)

    def outbox_depth(self) -> int:
        return self.deliverer.outbox_depth()

    def replace_routing(self, routing: Routing, senders: Mapping[str, Sender] | None = None, *,
                        template_folder: Path | None = None) -> None:
        """After a reload: new rules, templates and channels; queued alerts are kept."""
        self.engine.replace_routing(routing, template_folder=template_folder)
        self.deliverer.senders = dict(senders if senders is not None else senders_for(routing))
        self.deliverer.delivery = routing.delivery

    async def start(self) -> None:
        await self.deliverer.start()
        since = self.clock() - self.engine.routing.limits.dedup_window
        self.engine.restore(await asyncio.to_thread(self.deliverer.outbox.recent_alerts, since))

    async def stop(self, timeout: float = 10.0) -> None:
        await self.deliverer.stop(timeout)
