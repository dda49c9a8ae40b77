"""Problem reports: the block page's "this should not be blocked" form and the small "this should be
blocked" form are sent to `/.well-known/schoolgate/...` on the host the page was served for. The
gateway answers those paths itself (explicit and transparent mode, HTTP and intercepted HTTPS) and
stores each report with who sent it, for the technician's `schoolgate requests`.

These requests are never classified and never reach a server: `requestheaders` marks them
(`Decision.own_page`) so Classify and Enforce pass them by, and every path through here ends in a
response, a refusal on any failure; a flow left without one is failed closed by Enforce's
last-line check.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
import unicodedata
import urllib.parse
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from mitmproxy import http

from ...classify import URLError
from ...identify import Identity
from ...policy import BLOCK, Verdict, new_reference
from ...policy.blockpage import REPORT_PATH, REPORT_SITE_PATH, open_url, report_token
from ...store.problem_reports import NewReport, add_report
from ..decision import event_for
from ..service import Gateway
from . import begin, decision_of, needs_decision

__all__ = ["PREFIX", "ProblemReports", "RateLimit"]

log = logging.getLogger("schoolgate.problem_reports")

PREFIX = "/.well-known/schoolgate/"
"""Every path under this is the gateway's own, on every host: none is ever sent to a server."""

MAX_BODY = 8 * 1024
"""Bytes: a reason of 500 characters, percent-encoded, and a long URL fit with room to spare."""
MAX_REASON = 500
MAX_URL = 2048
FORM_LIFETIME = 24 * 3600.0
"""Seconds a form stays good for: a page left open all day still works; reload it after."""
REPORTS_PER_HOUR = 10
"""Per client address: enough for a class sharing a computer, too few to flood the technician."""

_FORM = "application/x-www-form-urlencoded"


class RateLimit:
    """At most `limit` reports per client address in any `window` seconds, in memory (a restart
    forgets). Bounded: once `max_clients` addresses have reports in the window, others wait."""

    def __init__(self, limit: int, window: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = 50_000):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_clients = max_clients
        self._sent: dict[str, deque[float]] = {}

    def allows(self, client: str) -> bool:
        now = self.clock()
        recent = self._recent(client, now)
        if recent is None:
            return len(self._sent) < self.max_clients or self._prune(now)
        return len(recent) < self.limit

    def take(self, client: str) -> bool:
        """Count one report for `client`; False (nothing counted) when over the limit."""
        if not self.allows(client):
            return False
        self._sent.setdefault(client, deque()).append(self.clock())
        return True

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may send again (at least 1)."""
        recent = self._sent.get(client)
        if not recent:
            return 1
        return max(1, math.ceil(recent[0] + self.window - self.clock()))

    def _recent(self, client: str, now: float) -> deque[float] | None:
        recent = self._sent.get(client)
        if recent is None:
            return None
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if not recent:
            del self._sent[client]
            return None
        return recent

    def _prune(self, now: float) -> bool:
        for client in list(self._sent):
            self._recent(client, now)
        return len(self._sent) < self.max_clients


class ProblemReports:
    def __init__(self, gateway: Gateway, *, per_hour: int = REPORTS_PER_HOUR,
                 clock: Callable[[], float] = time.time,
                 limit_clock: Callable[[], float] = time.monotonic):
        self.gateway = gateway
        self.clock = clock
        self.limit = RateLimit(per_hour, clock=limit_clock)

    # -- hooks ---------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not needs_decision(flow):
            return
        path = flow.request.path.partition("?")[0]
        if not path.startswith(PREFIX):
            return
        begin(self.gateway, flow).own_page = True
        try:
            self._check_headers(flow, path)
        except Exception as e:  # noqa: BLE001 - always answer: never let the request out
            self._failed(flow, e)

    def request(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """A report's body is here: check it and store it. Returns a coroutine (which mitmproxy
        awaits before the next addon) for a report only, so every other request stays sync."""
        d = decision_of(flow)
        if d is None or not d.own_page or not flow.live or flow.response is not None:
            return None
        return self._receive_safely(flow)

    async def _receive_safely(self, flow: http.HTTPFlow) -> None:
        try:
            await self._receive(flow)
        except Exception as e:  # noqa: BLE001 - always answer: never let the request out
            self._failed(flow, e)

    # -- the two stages of a report --------------------------------------------------------------

    def _check_headers(self, flow: http.HTTPFlow, path: str) -> None:
        """Everything the headers can refuse, before the body is read. A POST that passes is
        answered at `request`, once its body is here."""
        request = flow.request
        if path not in (REPORT_PATH, REPORT_SITE_PATH):
            self._answer(flow, 404, "Not found", "There is no such page.")
            return
        if path == REPORT_SITE_PATH and request.method == "GET":
            self._site_form(flow)
            return
        if request.method != "POST":
            allowed = "POST" if path == REPORT_PATH else "GET, POST"
            self._answer(flow, 405, "Not allowed", "Reports are sent with the form.",
                         {"Allow": allowed})
            return
        identity = _identity_of(flow)
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site.strip().lower() not in ("same-origin", "none"):
            # Another site's page posting a form in the pupil's name.
            self._answer(flow, 403, "Not sent", "Reports can only be sent from the school's own "
                         "block page.")
            return
        ctype = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if ctype != _FORM or encoding not in ("", "identity"):
            self._answer(flow, 415, "Not sent", "Reports are sent with the form on the page.")
            return
        length = request.headers.get("Content-Length")
        if length is None:
            # Browsers give the length of a form; without it the body would have to be read
            # before its size is known.
            self._answer(flow, 411, "Not sent", "Reports are sent with the form on the page.")
            return
        if not length.strip().isdigit():
            self._answer(flow, 400, "Not sent", "Reports are sent with the form on the page.")
            return
        if int(length) > MAX_BODY:
            self._answer(flow, 413, "Too long", f"Please keep your reason under {MAX_REASON} "
                         "characters.")
            return
        if not self.limit.allows(identity.ip):
            self._too_many(flow, self.limit.retry_after(identity.ip))

    async def _receive(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        kind = "unblock" if request.path.partition("?")[0] == REPORT_PATH else "block"
        body = request.raw_content or b""
        if len(body) > MAX_BODY:
            self._answer(flow, 413, "Too long", f"Please keep your reason under {MAX_REASON} "
                         "characters.")
            return
        fields = _parse_form(body)
        if fields is None:
            self._answer(flow, 400, "Not sent", "Reports are sent with the form on the page.")
            return
        identity = _identity_of(flow)
        # The live rules, not the request's snapshot: the newest illegal lists decide.
        rules = self.gateway.rules
        key = rules.block_page.report_key
        issued = fields.get("t", "")
        reference: str | None = None
        if key is None or not issued.isdigit() or not self._fresh(int(issued)):
            good = False
        elif kind == "unblock":
            # The block page sealed its URL with its reference and time: opening it proves the
            # form is the gateway's own, for that page.
            reference = fields.get("ref", "")
            opened = open_url(key, reference, issued, fields.get("u", ""))
            good = opened is not None and opened.isprintable() and len(opened) <= MAX_URL
            url = opened or ""
        else:
            url = fields.get("url", "")
            token = fields.get("token", "").encode("utf-8", "surrogateescape")
            good = hmac.compare_digest(token, report_token(key, "report-site", issued).encode())
        if not good:
            # Forged, changed, too old, or from another site: the person can simply try again.
            self._answer(flow, 403, "Not sent", "This form has expired or did not come from the "
                         "school's block page. Go back, reload the page and try again.")
            return
        reason = _clean(fields.get("reason", ""))
        if not reason:
            self._answer(flow, 400, "Not sent", "Please go back and say why, so the IT team can "
                         "look into it.")
            return
        if kind == "block":
            typed = _typed_url(url)
            if typed is None:
                self._answer(flow, 400, "Not sent", "That is not a web address. Go back and copy "
                             "the address from the browser's address bar.")
                return
            url = typed
        # Counted from here: every well-formed report, even one refused below, so the form
        # cannot be used to test addresses against the illegal lists at speed.
        allowed, retry_after = await self._take(identity.ip)
        if not allowed:
            self._too_many(flow, retry_after)
            return
        try:
            classification = rules.classifier.classify(url)
        except URLError:
            self._answer(flow, 400, "Not sent", "That web address could not be read. Go back and "
                         "copy the address from the browser's address bar.")
            return
        if (listed := classification.illegal) is not None:
            # Never stored as a report, never logged: the URL may itself be a confidential list
            # entry. Recorded as an illegal-list event (host and list name only), as visiting
            # it would be, so naming such a page here is never a way round the DSL's alert.
            verdict = Verdict(
                action=BLOCK, group=identity.group, reference=new_reference(),
                rule=f"a problem report named a page on the illegal-content list {listed.name} "
                "(applies to everyone, cannot be overridden)",
                severity="high", reason=f"illegal:{listed.name}", illegal_list=listed.name,
                illegal_kind=listed.kind)
            self.gateway.record(event_for(
                verdict, identity, ts=self.clock(), client_ip=identity.ip, method=request.method,
                scheme=request.scheme, host=classification.host, url=None))
            if kind == "unblock":
                self._answer(flow, 403, "Cannot be unblocked", "This page is on a list of illegal "
                             "content that the school must block for everyone; nobody can unblock "
                             "it. If you think this is a mistake, tell the school's IT team.")
            else:
                self._answer(flow, 200, "Already blocked", "Thank you. That page is already "
                             "blocked for everyone.")
            return
        if kind == "block":
            url = classification.canonical_url or url
        report = NewReport(kind=kind, url=url, host=classification.host, reason=reason,
                           client_ip=identity.ip, group=identity.group, reference=reference,
                           user=identity.user, device=identity.device, ts=self.clock())
        number, new = await asyncio.to_thread(add_report, self.gateway.config.database_path,
                                              report)
        if new:
            log.info("problem report %d stored (%s, group %s)", number, kind, identity.group)
            self.gateway.metrics.problem_reports.labels(kind).inc()
        then = ("The page stays blocked until they have looked at it." if kind == "unblock"
                else "Thank you for helping keep everyone safe.")
        self._answer(flow, 200, "Thank you", then,
                     sent={"host": classification.host, "number": number})

    # -- pages ---------------------------------------------------------------------------------

    def _site_form(self, flow: http.HTTPFlow) -> None:
        key = self.gateway.rules.block_page.report_key
        if key is None:
            self._answer(flow, 503, "Reports are not available", "Reports cannot be sent at the "
                         "moment. Please tell your teacher or the school's IT team.")
            return
        issued = str(int(self.clock()))
        token = report_token(key, "report-site", issued)
        self._answer(flow, 200, "Report a page that should be blocked",
                     "If you have seen a page that should not be open to pupils, tell the IT "
                     "team here.",
                     form={"action": REPORT_SITE_PATH, "issued": issued, "token": token,
                           "max_url": MAX_URL, "max_reason": MAX_REASON})

    async def _take(self, client: str) -> tuple[bool, int]:
        """Count one report for `client`: (allowed, seconds until it may send again). In a
        worker of `schoolgate run` the supervisor counts, for every worker at once: a client's
        connections land on any worker, and the limit is the client's, not each worker's. This
        worker's own count (never above the shared one) lets `_check_headers` refuse early."""
        link = self.gateway.link
        if link is None:
            return self.limit.take(client), self.limit.retry_after(client)
        allowed, retry_after = await link.take_report(client)
        if allowed:
            self.limit.take(client)
        return allowed, retry_after

    def _too_many(self, flow: http.HTTPFlow, retry_after: int) -> None:
        self._answer(flow, 429, "Too many reports", "Thank you, the IT team has your reports. "
                     "Please wait a while before sending another.",
                     {"Retry-After": str(retry_after)})

    def _fresh(self, issued: int) -> bool:
        now = self.clock()
        return now - FORM_LIFETIME <= issued <= now + 300  # 5 minutes for clock skew

    def _answer(self, flow: http.HTTPFlow, status: int, heading: str, message: str,
                headers: dict[str, str] | None = None, *, sent: dict[str, object] | None = None,
                form: dict[str, object] | None = None) -> None:
        """Answer with a small page (`problem-report.html`): `message` is plain text; `sent`
        (host and number) after a report is stored, `form` for the "should be blocked" form."""
        body = self.gateway.rules.report_page.render(
            heading=heading, school=self.gateway.config.school_name, message=message,
            sent=sent, form=form)
        flow.response = http.Response.make(status, body.encode("utf-8"),
                                           {**_HEADERS, **(headers or {})})

    def _failed(self, flow: http.HTTPFlow, exc: BaseException) -> None:
        self.gateway.failures.report("problem report", exc)
        try:
            self._answer(flow, 503, "Not sent", "Your report could not be sent. Please try again "
                         "in a few minutes, or tell your teacher or the school's IT team.")
        except Exception:  # noqa: BLE001 - the page itself failed; still answer
            flow.response = http.Response.make(
                503, b"Your report could not be sent.\n",
                {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"})


class _NoIdentityError(RuntimeError):
    pass


def _identity_of(flow: http.HTTPFlow) -> Identity:
    """Who sent the report (Identify ran first); missing is a failure, answered as one."""
    d = decision_of(flow)
    if d is None or d.identity is None:
        raise _NoIdentityError("a problem report reached its addon unidentified")
    return d.identity


def _parse_form(body: bytes) -> dict[str, str] | None:
    """The form's fields, or None when it is not a well-formed form (a field twice included)."""
    try:
        pairs = urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True,
                                       encoding="utf-8", errors="strict", max_num_fields=10)
    except ValueError:  # UnicodeDecodeError too
        return None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            return None
        fields[name] = value
    return fields


def _clean(reason: str) -> str:
    """The reason on one line, without control or direction-changing characters (it is printed
    in a technician's terminal), at most MAX_REASON characters."""
    text = unicodedata.normalize("NFC", reason)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:MAX_REASON]


def _typed_url(text: str) -> str | None:
    """A web address as a person typed it, with https:// added when they left it off."""
    text = text.strip()
    if not text or len(text) > MAX_URL or not text.isprintable():
        return None
    scheme, sep, _ = text.partition("://")
    if not sep:
        return "https://" + text
    return text if scheme.lower() in ("http", "https") else None


_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page is the gateway's own: no scripts, forms only to itself, never inside a frame.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
