"""The governors' summary of a check run: one self-contained HTML page (templates/check.html, in
the reports' shared style) saying what each kind of test proves and how every test went, written
to the reports folder, one file per school day."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from ..config.model import Config
from ..reports.rendering import write_private
from .run import CheckRun
from .suite import (
    CATEGORY,
    CIRCUMVENTION,
    DOH,
    EDUCATION,
    FAIL,
    ILLEGAL,
    PASS,
    SAFE_SEARCH,
    SKIP,
    UNSAFE_ENGINE,
    WALLED_GARDEN,
    WARN,
)

__all__ = ["KIND_TITLES", "PROVES", "render_summary", "summary_path", "write_summary"]

PROVES = {
    ILLEGAL: "Pages on the IWF list (child sexual abuse imagery) and the police CTIRU list "
    "(unlawful terrorist content) are blocked for everyone. Tested with the lists' own test "
    "addresses, which contain nothing illegal.",
    CATEGORY: "A known site in each category this group blocks is blocked (for a category blocked "
    "only at certain times, while that time is in force).",
    CIRCUMVENTION: "Tools for getting round the filter (VPNs, web proxies) are blocked.",
    DOH: "Encrypted DNS (DNS-over-HTTPS), which would let a device look up blocked sites "
    "unseen, is blocked.",
    SAFE_SEARCH: "Google, Bing and DuckDuckGo searches are forced into safe mode even when the "
    "person turns it off, and YouTube into Restricted Mode.",
    UNSAFE_ENGINE: "Search engines whose safe mode cannot be locked are blocked.",
    EDUCATION: "An education site stays open: the filter does not over-block teaching.",
    WALLED_GARDEN: "In a walled garden, a site outside the open categories is blocked.",
}

KIND_TITLES = {
    ILLEGAL: "Illegal-content lists",
    CATEGORY: "Blocked categories",
    CIRCUMVENTION: "Filter-bypass tools",
    DOH: "DNS-over-HTTPS",
    SAFE_SEARCH: "Safe search",
    UNSAFE_ENGINE: "Search engines without safe mode",
    EDUCATION: "Education sites",
    WALLED_GARDEN: "Walled garden",
}


@functools.cache  # built on first use: templates are parsed once per process
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("schoolgate", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_summary(run: CheckRun, group_titles: Mapping[str, str]) -> str:
    """The governors' summary: self-contained HTML (every value escaped), fit to print."""
    local = datetime.fromtimestamp(run.ts, ZoneInfo(run.timezone))
    sections: list[dict[str, object]] = []
    for g in run.groups:
        results = [r for r in run.results if r.canary.group == g]
        sections.append({
            "name": g, "title": group_titles.get(g, g), "results": results,
            "failed": sum(1 for r in results if r.status == FAIL),
        })
    kinds = [k for k in PROVES if any(r.canary.kind == k for r in run.results)]
    proves = [(KIND_TITLES[k], PROVES[k]) for k in kinds]
    return _environment().get_template("check.html").render(
        run=run, local=local, sections=sections, proves=proves,
        counts={s: run.count(s) for s in (PASS, FAIL, WARN, SKIP)},
        stamp=local.strftime("%A %d %B %Y at %H:%M %Z"),
    )


def summary_path(config: Config, run: CheckRun) -> Path:
    """`<reports folder>/filter-check-YYYY-MM-DD.html` (school date); a later run that day
    replaces it, so the folder holds each day's last check."""
    day = datetime.fromtimestamp(run.ts, ZoneInfo(run.timezone)).date()
    return config.reports_dir / f"filter-check-{day.isoformat()}.html"


def write_summary(config: Config, run: CheckRun, path: Path | None = None) -> Path:
    """Write the summary to `path` (default `summary_path`), readable by its owner only; return
    where it went."""
    path = path or summary_path(config, run)
    titles = {name: g.title for name, g in config.groups.items()}
    write_private(path, render_summary(run, titles))
    return path
