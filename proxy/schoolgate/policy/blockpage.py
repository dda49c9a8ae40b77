"""The page a person sees instead of a blocked site: what was blocked, why, when, and a reference;
and, in the same style, the page for a site that could not be reached (`Failure`), which says
plainly that nothing was blocked.

Rendered through `templates/blockpage.html` (the school's copy, else the package's), compiled when
the rules are built (no I/O per request). Every value is escaped by the template engine.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..config.model import Config
from ..events import THEME_TITLES
from ..files import create_once
from ..pages import Page
from . import ERROR, Verdict, block_kind

__all__ = ["FAILURES", "REPORT_PATH", "REPORT_SITE_PATH", "BlockPage", "Failure", "RenderedPage",
           "open_url", "report_key", "report_token", "seal_url"]

log = logging.getLogger("schoolgate")

#: Where the block page's "this should not be blocked" form and the "this should be blocked" form
#: are sent: on the blocked page's own host, which the gateway answers itself (see
#: `schoolgate.addons.problem_reports`).
REPORT_PATH = "/.well-known/schoolgate/report"
REPORT_SITE_PATH = "/.well-known/schoolgate/report-site"
_REPORT_MAX_URL = 2048


class RenderedPage:
    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes, headers: dict[str, str]):
        self.status = status
        self.body = body
        self.headers = headers


@dataclass(frozen=True, slots=True)
class Failure:
    """Something that went wrong that was not a filtering decision: a site that could not be
    reached, or a request that could not be read. Answered with a page, never with the proxy
    software's own."""

    kind: str
    """A short code (also the `kind` label of `schoolgate_error_pages_total`): `dns`, `refused`,
    `timeout`, `tls`, ... for the site; `bad_request`, `too_large`, `loop` for the request."""
    status: int
    """502 (bad gateway) for a site that cannot be reached or answered badly, 504 (gateway
    timeout) for one that did not answer in time, 4xx for a request at fault."""
    what: str
    """What happened, in a few words (the page's "What happened" row)."""
    why: str
    """A sentence or two: what it means, and what to try."""

    @property
    def site(self) -> bool:
        """True when the site is at fault (5xx), False when the request is (4xx)."""
        return self.status >= 500


FAILURES = {f.kind: f for f in (
    # The site could not be reached.
    Failure("dns", 502, "the site's name was not found",
            "No site with this name could be found: check that the address is spelled "
            "correctly."),
    Failure("dns_timeout", 504, "no answer when looking up the site's name",
            "The school's name server did not answer in time. Try again in a minute; if every "
            "site fails like this, tell the IT team."),
    Failure("refused", 502, "the site refused the connection",
            "The site's server is not accepting connections: it may be down. Try again later."),
    Failure("timeout", 504, "the site did not answer in time",
            "The site's server did not answer in time: it may be busy or down. Try again later."),
    Failure("unreachable", 502, "no route to the site",
            "The school's network could not reach the site's server. If every site fails like "
            "this, tell the IT team."),
    Failure("tls", 502, "the site's secure connection could not be checked",
            "A secure connection to this site could not be made (its security certificate "
            "could not be checked), so it cannot be shown safely."),
    Failure("closed", 502, "the site closed the connection",
            "The site's server closed the connection without sending the page. Try again later."),
    Failure("invalid", 502, "the site's answer could not be read",
            "The site's server sent an answer that is not valid, so it cannot be shown."),
    Failure("other", 502, "the site could not be reached", "Try again later."),
    # The request was at fault: nothing was sent to the site.
    Failure("bad_request", 400, "the request was not valid",
            "Your browser or app sent a request the school's web filter cannot accept, so "
            "nothing was sent to the site."),
    Failure("too_large", 413, "the request was too large",
            "Your browser or app sent more than the school's web filter accepts, so nothing "
            "was sent to the site."),
    Failure("loop", 400, "this address is the web filter",
            "The address opened is the school's web filter itself, not a website. To browse "
            "through it, set it as the proxy in the browser or the device's network settings."),
)}
"""Every failure the gateway answers with its own page, by kind."""


class BlockPage:
    def __init__(self, config: Config):
        self._page = Page("blockpage.html", config.templates)
        self._school = config.school_name
        self._tz = ZoneInfo(config.timezone)
        self._titles = {c.name: c.title for c in config.categories.values()}
        self._groups = {g.name: g.title for g in config.groups.values()}
        self._schedules = {name: sc.title for name, sc in config.schedules.items()}
        self.report_key = report_key(config.data_dir)
        """Signs the report forms; None (no forms) when it cannot be read or created."""

    def render(self, verdict: Verdict, host: str, when: datetime,
               url: str | None = None) -> RenderedPage:
        """`when` is timezone-aware; it is shown in the school's time zone. With the blocked
        `url`, the page has the "report a problem" form (never for an illegal-list block)."""
        local = when.astimezone(self._tz)
        advice = ("If you think this is wrong, tell your teacher or the IT team and give them the "
                  "reference.")
        rows: list[tuple[str, str]] = [("Site", host)]
        if verdict.action == ERROR:
            # 503: the gateway, not the site, is at fault; a retry may succeed once it is fixed.
            status, accent = 503, "#8a5a00"
            heading = "Filtering error"
            explanation = ("The school's web filter could not check this page, so it has been "
                           "blocked to keep you safe. Please try again in a minute.")
            rows.append(("Reason", "filtering error"))
        elif verdict.illegal_list is not None:
            # Never show the site: for a domain entry that would reveal a confidential entry.
            status, accent = 403, "#b3261e"
            heading = "Access denied"
            explanation = _ILLEGAL_WORDING.get(verdict.illegal_kind or "",
                                               _ILLEGAL_WORDING["other"])
            advice = ("If you think this page has been blocked in error, tell the school's IT team "
                      "and give them the reference; they will contact the list's provider.")
            rows = []
        else:
            status, accent = 403, "#b3261e"
            heading = "This page is blocked"
            explanation = "The school's web filter has blocked this page for your group."
            # One kind of rule, one reason in words: the same kinds `schoolgate_blocks_total`
            # counts by (`block_kind`).
            kind = block_kind(verdict)
            if kind == "override" and verdict.override is not None:
                rows.append(("Reason", verdict.override.reason))
            elif kind == "keywords":
                # Never repeat the words back: the pupil knows what they typed, and a screen
                # seen by others should not show it.
                rows.append(("Reason", "words in this search or address"))
            elif kind == "page_content":
                # The theme and the library's phrases that weighed most, so a teacher checking
                # the block can judge it; never the page's own text beyond those phrases.
                rows.append(("Reason", "words on this page"))
                if verdict.theme:
                    rows.append(("Category", THEME_TITLES.get(verdict.theme, verdict.theme)))
                if verdict.page_phrases:
                    rows.append(("Phrases", ", ".join(verdict.page_phrases)))
            elif kind == "circumvention":
                rows.append(("Reason", "getting round the school's filter"))
            elif kind == "walled_garden":
                rows.append(("Reason", "your group can only visit the sites the school has "
                             "opened for it"))
            elif kind == "no_safe_search":
                rows.append(("Reason", "this search engine has no safe search the school can "
                             "turn on"))
            else:
                category = verdict.category or ""
                rows.append(("Category", self._titles.get(category, category)))
                if kind == "schedule" and verdict.schedule is not None:
                    title = self._schedules.get(verdict.schedule, verdict.schedule)
                    rows.append(("Reason", f"closed during {title}"))
        if verdict.action != ERROR and verdict.theme in _SUPPORT:
            # The search may be a cry for help: say where help is, before anything else.
            advice = _SUPPORT[verdict.theme] + " " + advice
        rows += [
            ("Policy", self._groups.get(verdict.group, verdict.group)),
            ("Time", local.strftime("%A %d %B %Y, %H:%M:%S %Z")),
        ]
        report = None
        if url is not None and verdict.action != ERROR and verdict.illegal_list is None:
            # An illegal-list block can never be unblocked: no form (the advice says who to tell).
            report = self._report_form(verdict.reference, url, when)
        body = self._page.render(
            heading=heading, explanation=explanation, advice=advice, accent=accent,
            school=self._school, details=rows, reference=verdict.reference,
            report=report, report_site=REPORT_SITE_PATH if report is not None else None,
        )
        headers = {
            "Content-Type": "text/html; charset=utf-8",
            # Never let a browser or a cache keep the block page in place of the real one.
            "Cache-Control": "no-store",
            "X-Schoolgate-Reference": verdict.reference,
        }
        return RenderedPage(status, body.encode("utf-8"), headers)

    def notice(self, verdict: Verdict) -> str:
        """What a stream cut by its words (`page-content`) shows where it stops: the block page's
        reason, category and support advice as one paragraph of plain text, for a page, a chat
        answer or a text file alike."""
        parts = [f"{self._school}'s web filter stopped this page here: words on this page"]
        if verdict.theme:
            parts[0] += f" ({THEME_TITLES.get(verdict.theme, verdict.theme)})"
        parts[0] += "."
        if verdict.theme in _SUPPORT:
            parts.append(_SUPPORT[verdict.theme])
        parts.append("If you think this is wrong, tell your teacher or the IT team and give "
                     f"them the reference {verdict.reference}.")
        return " ".join(parts)

    def render_failure(self, failure: Failure, host: str | None, when: datetime,
                       reference: str, problem: str | None = None) -> RenderedPage:
        """The page for `failure`, in the block page's style (the same template): the school,
        what happened in plain words, that nothing was blocked, the time and a reference (the
        request's own, when it was decided: its event is in the store under it). `problem`
        says what is wrong with a request the gateway refused itself, for the IT team."""
        local = when.astimezone(self._tz)
        if failure.kind == "loop":
            heading = "This is the school's web filter"
            explanation = failure.why
        elif failure.site:
            heading = "This site could not be reached"
            explanation = ("The school's web filter has not blocked this page: the site could "
                           f"not be reached. {failure.why}")
        else:
            heading = "This request could not be sent"
            explanation = failure.why
        rows: list[tuple[str, str]] = [("Site", host)] if host and failure.kind != "loop" else []
        rows += [("What happened", failure.what)]
        if problem:
            rows.append(("Problem", problem))
        rows += [("Time", local.strftime("%A %d %B %Y, %H:%M:%S %Z"))]
        body = self._page.render(
            heading=heading, explanation=explanation,
            advice="This is not a block. If it keeps happening, tell the IT team and give them "
                   "the reference.",
            accent="#41546b", school=self._school, details=rows, reference=reference,
            report=None, report_site=None,
        )
        headers = {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Schoolgate-Reference": reference,
        }
        return RenderedPage(failure.status, body.encode("utf-8"), headers)

    def _report_form(self, reference: str, url: str, when: datetime) -> dict[str, object] | None:
        """The "this should not be blocked" form (the template shows it, and the link to the
        other form, when there is one). The form carries the URL sealed (encrypted and signed
        with the page's reference and time): no other site can make a pupil's browser send a
        report, and the page never holds the URL, so never the words of a search, in clear."""
        key = self.report_key
        if key is None:
            return None
        if not (url.isascii() and url.isprintable()):
            return None  # never from a browser, which escapes what it sends
        if len(url) > _REPORT_MAX_URL:
            url = url.split("?", 1)[0]  # the page without its query still says what to look at
            if len(url) > _REPORT_MAX_URL:
                return None
        issued = str(int(when.timestamp()))
        fields = {"ref": reference, "t": issued, "u": seal_url(key, reference, issued, url)}
        return {"action": REPORT_PATH, "fields": fields}


def report_key(data_dir: Path) -> bytes | None:
    """The secret that signs the report forms: read from `data_dir/report-key`, created (owner
    only) on first use. None, with a warning, when it can be neither read nor created; block
    pages then have no report form. Delete a damaged file and it is made again."""
    path = data_dir / "report-key"
    try:
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            text = _create_key(path)
        key = bytes.fromhex(text)
        if len(key) < 16:
            raise ValueError("too short")
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        log.warning("block pages have no 'report a problem' form: the key file %s cannot be "
                    "used (%s); delete it, or make the data folder writable", path, e)
        return None
    return key


def _create_key(path: Path) -> str:
    # When two processes start at once, the first key wins and both use it.
    create_once(path, secrets.token_hex(32) + "\n")
    return path.read_text(encoding="ascii").strip()


def report_token(key: bytes, *fields: str) -> str:
    """A report form's signature over `fields`: the form's kind and what it vouches for."""
    message = json.dumps(fields, ensure_ascii=True).encode("ascii")
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def seal_url(key: bytes, reference: str, issued: str, url: str) -> str:
    """`url` (ASCII) encrypted and authenticated together with the page's reference and issue
    time (AES-256-GCM, a fresh nonce per page), as URL-safe base64."""
    nonce = secrets.token_bytes(12)
    box = _aead(key).encrypt(nonce, url.encode("ascii"), _url_context(reference, issued))
    return base64.urlsafe_b64encode(nonce + box).decode("ascii").rstrip("=")


def open_url(key: bytes, reference: str, issued: str, sealed: str) -> str | None:
    """The URL `seal_url` sealed for this reference and time, or None when `sealed` was made
    for another page, changed, or made with another key."""
    try:
        raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
        if len(raw) < 12 + 16:
            return None
        url = _aead(key).decrypt(raw[:12], raw[12:], _url_context(reference, issued))
        return url.decode("ascii")
    except (InvalidTag, ValueError):  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None


@functools.lru_cache(maxsize=4)
def _aead(key: bytes) -> AESGCM:
    """The cipher for `key`, built once: building it costs more than sealing a URL."""
    return AESGCM(hmac.new(key, b"schoolgate report form: url", hashlib.sha256).digest())


def _url_context(reference: str, issued: str) -> bytes:
    return json.dumps(["unblock", reference, issued], ensure_ascii=True).encode("ascii")


_TALK = ("If something is worrying you, you are not in trouble for searching: talk to a teacher "
         "you trust or the school's Designated Safeguarding Lead.")
_SUPPORT = {
    "suicide_selfharm": f"{_TALK} Childline: 0800 1111 (free, any time). Samaritans: 116 123. "
    "Shout: text SHOUT to 85258.",
    "eating_disorders": f"{_TALK} Beat eating disorders helpline: 0808 801 0677. Childline: "
    "0800 1111.",
    "cse_grooming": f"{_TALK} Childline: 0800 1111. If someone online is making you feel "
    "uncomfortable, you can report it to CEOP at www.ceop.police.uk.",
    "bullying": f"{_TALK} Childline: 0800 1111.",
}


# The IWF asks members to show wording to this effect on its splash page.
_ILLEGAL_WORDING = {
    "iwf": "Access has been denied because this page may contain indecent images of children as "
    "identified by the Internet Watch Foundation (IWF). Attempting to view such images is a "
    "criminal offence. If you believe this page has been blocked in error, contact your internet "
    "provider, or report it to the IWF at www.iwf.org.uk.",
    "ctiru": "Access has been denied because this page is on the police Counter Terrorism "
    "Internet Referral Unit (CTIRU) list of unlawful terrorist content.",
    "other": "Access has been denied because this page is on a list of illegal content that the "
    "school must block for everyone.",
}
