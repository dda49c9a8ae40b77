"""The Event record and the vocabularies it is written in: the contract between the pipeline that
decides (gateway), the store that keeps, and the alerts and reports that read.

A leaf: it imports nothing of Schoolgate, so every layer can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ILLEGAL_THEME", "SEVERITIES", "THEMES", "THEME_TITLES", "Event"]

SEVERITIES: tuple[str, ...] = ("high", "medium", "low")
"""Every severity a flag, an event and an alert can have, most serious first."""

THEMES: tuple[str, ...] = (
    "suicide_selfharm",
    "eating_disorders",
    "extremism_radicalisation",
    "cse_grooming",
    "drugs",
    "weapons_violence",
    "bullying",
    "hate",
    "adult",
    "circumvention",
)
"""The safeguarding themes. Fixed, because alerts route on them and metrics label by them
(labels must stay bounded); a school's own file adds phrases to one of these."""

THEME_TITLES: dict[str, str] = {
    "suicide_selfharm": "Suicide and self-harm",
    "eating_disorders": "Eating disorders",
    "extremism_radicalisation": "Extremism and radicalisation",
    "cse_grooming": "Child sexual exploitation and grooming",
    "drugs": "Drugs and substance misuse",
    "weapons_violence": "Weapons and violence",
    "bullying": "Bullying and cyberbullying",
    "hate": "Hate speech and discrimination",
    "adult": "Adult content",
    "circumvention": "Filter bypass attempts",
}
"""Each theme's heading for people (alerts, reports), as the shipped theme files' `title:`."""

ILLEGAL_THEME = "illegal"
"""The theme an illegal-list hit (IWF, CTIRU) alerts and reports under; always severity high."""


@dataclass(frozen=True, slots=True)
class Event:
    """One decision, with the fields the DfE asks schools to log. None means unknown."""

    ts: float
    """When, as a Unix time (UTC)."""
    client_ip: str
    group: str
    action: str
    reference: str | None
    user: str | None = None
    device: str | None = None
    method: str | None = None
    scheme: str | None = None
    host: str | None = None
    url: str | None = None
    search_term: str | None = None
    categories: tuple[str, ...] = ()
    matched_rule: str | None = None
    severity: str | None = None
    reason: str | None = None
    """The verdict's short code: `category`, `override`, `illegal:<list>`, `circumvention`, ..."""
    theme: str | None = None
    """Safeguarding theme (`circumvention`, `suicide_selfharm`, ...), for alerts and reports."""
    engine: str | None = None
    """Search engine, for a search."""
    search_normalised: str | None = None
    matched_phrase: str | None = None
    page_score: float | None = None
    """For a scanned page's event: its keyword score (compared with the group's threshold)."""
    page_phrases: tuple[str, ...] = ()
    """For a scanned page's event: the library's phrases that weighed most, as the library
    writes them (never the page's own text)."""
