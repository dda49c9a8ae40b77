"""Read domain list files: one entry per line, `#` comments and blank lines ignored.

A bad line never stops a load: it is reported with its file and line and skipped, and the rest of
the file still counts. Every load returns a `ListSummary` that the gateway logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .urls import URLError, normalise_host

__all__ = ["ListProblem", "ListSummary", "read_domain_list"]


@dataclass(frozen=True, slots=True)
class ListProblem:
    """A list line that was skipped, and why."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}; line skipped"


@dataclass(slots=True)
class ListSummary:
    """What one file contributed."""

    path: str
    entries: int = 0
    problems: list[ListProblem] = field(default_factory=list)

    def problem(self, line: int, message: str) -> None:
        """Note that `line` was skipped, and why."""
        self.problems.append(ListProblem(self.path, line, message))

    def __str__(self) -> str:
        bad = len(self.problems)
        skipped = f", {bad} bad lines skipped" if bad else ""
        return f"{self.path}: {self.entries} entries{skipped}"


def read_domain_list(path: Path) -> tuple[list[tuple[str, int]], ListSummary]:
    """Return ``[(domain, line number)]`` and the file's summary."""
    summary = ListSummary(str(path))
    entries: list[tuple[str, int]] = []
    # errors="replace": one bad byte should cost one line, not the file.
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:
        for number, raw in enumerate(f, start=1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            if "\ufffd" in text:
                summary.problems.append(ListProblem(str(path), number, "not valid UTF-8"))
                continue
            if any(c in text for c in " \t/:*"):
                summary.problems.append(
                    ListProblem(str(path), number, f"{text!r} is not a domain name")
                )
                continue
            try:
                entries.append((normalise_host(text), number))
            except URLError as e:
                summary.problems.append(ListProblem(str(path), number, str(e)))
    summary.entries = len(entries)
    return entries, summary
