"""The page a person sees instead of a blocked site: what was blocked, why, when, and a reference.

Rendered from a template read once at start-up (no I/O per request). Every value is HTML-escaped.
"""

from __future__ import annotations

import html
import string
from datetime import datetime
from importlib import resources
from zoneinfo import ZoneInfo

from .config import Config
from .policy import ERROR, Verdict

__all__ = ["BlockPage", "RenderedPage"]


class RenderedPage:
    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes, headers: dict[str, str]):
        self.status = status
        self.body = body
        self.headers = headers


class BlockPage:
    def __init__(self, config: Config):
        text = resources.files("schoolgate").joinpath("templates/blockpage.html").read_text("utf-8")
        self._template = string.Template(text)
        self._school = config.school_name
        self._tz = ZoneInfo(config.timezone)
        self._titles = {c.name: c.title for c in config.categories.values()}
        self._groups = {g.name: g.title for g in config.groups.values()}

    def render(self, verdict: Verdict, host: str, when: datetime) -> RenderedPage:
        """`when` is timezone-aware; it is shown in the school's time zone."""
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
            explanation = _ILLEGAL_WORDING.get(verdict.illegal_kind or "", _ILLEGAL_WORDING["other"])
            advice = ("If you think this page has been blocked in error, tell the school's IT team "
                      "and give them the reference; they will contact the list's provider.")
            rows = []
        else:
            status, accent = 403, "#b3261e"
            heading = "This page is blocked"
            explanation = "The school's web filter has blocked this page for your group."
            if verdict.reason == "override" and verdict.override is not None:
                rows.append(("Reason", verdict.override.reason))
            elif verdict.reason == "keywords":
                # Never repeat the words back: the pupil knows what they typed, and a screen
                # seen by others should not show it.
                rows.append(("Reason", "words in this search or address"))
            elif verdict.reason.startswith("circumvention"):
                rows.append(("Reason", "getting round the school's filter"))
            else:
                category = verdict.category or ""
                rows.append(("Category", self._titles.get(category, category)))
        if verdict.action != ERROR and verdict.theme in _SUPPORT:
            # The search may be a cry for help: say where help is, before anything else.
            advice = _SUPPORT[verdict.theme] + " " + advice
        rows += [
            ("Policy", self._groups.get(verdict.group, verdict.group)),
            ("Time", local.strftime("%A %d %B %Y, %H:%M:%S %Z")),
            ("Reference", verdict.reference),
        ]
        details = "\n".join(
            f'    <dt>{html.escape(k)}</dt><dd{" class=\"ref\"" if k == "Reference" else ""}>'
            f"{html.escape(v)}</dd>"
            for k, v in rows
        )
        values = {k: html.escape(v) for k, v in dict(
            heading=heading, explanation=explanation, advice=advice, accent=accent,
            school=self._school,
        ).items()}
        body = self._template.substitute(values, details=details)
        headers = {
            "Content-Type": "text/html; charset=utf-8",
            # Never let a browser or a cache keep the block page in place of the real one.
            "Cache-Control": "no-store",
            "X-Schoolgate-Reference": verdict.reference,
        }
        return RenderedPage(status, body.encode("utf-8"), headers)


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
