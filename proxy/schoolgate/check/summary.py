"""The governors' summary of a check run: one self-contained HTML page (`check.html`, the school's
copy or the package's, in the reports' shared style) saying what each kind of test proves and how
every test went, written to the reports folder, one file per school day."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ..config.model import Config
from ..files import write_atomically
from ..pages import Page
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


def render_summary(run: CheckRun, group_titles: Mapping[str, str],
                   templates: Path | None = None) -> str:
    """The governors' summary: self-contained HTML (every value escaped), fit to print, from
    `check.html` in `templates` (the school's folder) or the package's."""
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
    return Page("check.html", templates).render(
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
    write_atomically(path, render_summary(run, titles, config.templates))
    return path
