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
        if verdict.action == ERROR:
            # 503: the gateway, not the site, is at fault; a retry may succeed once it is fixed.
            status = 503
            values = dict(
                heading="Filtering error",
                explanation="The school's web filter could not check this page, so it has been "
                "blocked to keep you safe. Please try again in a minute.",
                reason_label="Reason",
                reason="filtering error",
                accent="#8a5a00",
            )
        else:
            status = 403
            category = verdict.category or ""
            values = dict(
                heading="This page is blocked",
                explanation="The school's web filter has blocked this page for your group.",
                reason_label="Category",
                reason=self._titles.get(category, category),
                accent="#b3261e",
            )
        values.update(
            school=self._school,
            host=host,
            group=self._groups.get(verdict.group, verdict.group),
            time=local.strftime("%A %d %B %Y, %H:%M:%S %Z"),
            reference=verdict.reference,
        )
        body = self._template.substitute({k: html.escape(v) for k, v in values.items()})
        headers = {
            "Content-Type": "text/html; charset=utf-8",
            # Never let a browser or a cache keep the block page in place of the real one.
            "Cache-Control": "no-store",
            "X-Schoolgate-Reference": verdict.reference,
        }
        return RenderedPage(status, body.encode("utf-8"), headers)
