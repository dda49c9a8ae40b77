"""Reports from the event store: the DSL's daily suspicious-search report, the weekly summary for
leaders and governors, a person's browsing around an incident, a subject-access export, and the
retention purge. Everything here reads the store through read-only connections except the purge.
"""

from __future__ import annotations

from ..config.model import RetentionPolicy
from .context import Around, context_around, context_for_reference, format_context
from .daily import (
    DailyReport,
    PersonSummary,
    build_daily,
    email_parts,
    render_csv,
    render_html,
    write_daily,
)
from .export import export_user
from .reading import Person, local_day_range
from .retention import purge
from .weekly import WeeklySummary, build_weekly, render_weekly_html, weekly_email_parts

__all__ = [
    "Around",
    "DailyReport",
    "Person",
    "PersonSummary",
    "RetentionPolicy",
    "WeeklySummary",
    "build_daily",
    "build_weekly",
    "context_around",
    "context_for_reference",
    "email_parts",
    "export_user",
    "format_context",
    "local_day_range",
    "purge",
    "render_csv",
    "render_html",
    "render_weekly_html",
    "weekly_email_parts",
    "write_daily",
]
