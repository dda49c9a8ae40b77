"""A filter check run: the suite for some groups sent to the gateway one canary at a time, each
answer judged, the whole kept as a `CheckRun` (recorded by `schoolgate.store.checks`) and shown
as a plain-text table."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from ..classify import Classifier
from ..config.model import Config
from ..policy import Policy
from ..wording import counted
from .answers import Observation
from .judging import Result, evaluate
from .probe import probe
from .suite import FAIL, PASS, SKIP, WARN, build_suite

__all__ = ["CheckRules", "CheckRun", "format_table", "run_check"]


class CheckRules(Protocol):
    """What a run needs of the gateway's rules (`schoolgate.gateway.service.Rules`, which check
    may not import): the classifier and policy the canaries are chosen with."""

    @property
    def classifier(self) -> Classifier: ...

    @property
    def policy(self) -> Policy: ...


Send = Callable[[tuple[str, int], str, str, str, Path, float], Observation]
"""Sends one canary: (gateway address, token, group, URL, CA file, timeout) -> what it said."""


@dataclass(frozen=True, slots=True)
class CheckRun:
    """One run of the filter check, as printed, recorded and summarised."""

    ts: float
    school: str
    timezone: str
    gateway: str
    """`HOST:PORT` the canaries were sent to."""
    trigger: str
    """`command` (`schoolgate check`) or `schedule` (the gateway's own timetable)."""
    groups: tuple[str, ...]
    results: tuple[Result, ...]
    id: int | None = None
    """The check_runs row, once recorded."""

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def passed(self) -> bool:
        return self.count(FAIL) == 0

    @property
    def verdict(self) -> str:
        """The outcome in one plain-English sentence, for the table and the governors."""
        p, f, w, s = (self.count(x) for x in (PASS, FAIL, WARN, SKIP))
        groups = counted(len(self.groups), "group")
        if f:
            text = (f"FAILED: {f} of {counted(p + f, 'test')} across {groups} did not get the "
                    "answer the filtering policy requires. The technician should look at the "
                    "failed rows now.")
        elif p == 1:
            text = (f"PASSED: the 1 test across {groups} got the answer the filtering policy "
                    "requires.")
        else:
            text = (f"PASSED: all {counted(p, 'test')} across {groups} got the answer the "
                    "filtering policy requires.")
        if w:
            text += (f" {w} could not be checked (marked \"warn\"): each says what to configure "
                     "or why.")
        if s:
            text += f" {s} did not apply at the time of the check."
        return text

    def as_dict(self) -> dict[str, Any]:
        """The run as JSON, as `--json` prints it and the check_runs table keeps it."""
        return {
            "id": self.id, "ts": _iso(self.ts), "school": self.school, "gateway": self.gateway,
            "trigger": self.trigger, "groups": list(self.groups),
            "passed": self.count(PASS), "failed": self.count(FAIL), "warnings": self.count(WARN),
            "skipped": self.count(SKIP), "verdict": self.verdict,
            "results": [
                {"group": r.canary.group, "test": r.canary.kind, "name": r.canary.name,
                 "address": r.canary.shown, "expected": r.canary.expected, "got": r.got,
                 "result": r.status, "note": r.note}
                for r in self.results
            ],
        }


def run_check(config: Config, rules: CheckRules, address: tuple[str, int], token: str, *,
              groups: Sequence[str] | None = None, timeout: float = 10.0,
              trigger: str = "command", now: float | None = None,
              send: Send | None = None) -> CheckRun:
    """Build the suite for `groups` and send every canary to the gateway at `address`, one at a
    time (blocking; the gateway runs it from a worker thread). `rules` gives the classifier and
    policy the canaries are chosen with; `send` replaces `probe` (tests)."""
    send = send or probe
    started = time.time() if now is None else now
    suite = build_suite(config, rules.classifier, rules.policy, groups=groups, now=now)
    results: list[Result] = []
    for canary in suite:
        seen = None
        if canary.preset is None and canary.url is not None:
            seen = send(address, token, canary.group, canary.url, config.ca_cert_path, timeout)
        results.append(evaluate(canary, seen))
    shown = f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"
    return CheckRun(started, config.school_name, config.timezone, shown, trigger,
                    tuple(groups or config.groups), tuple(results))


def _iso(ts: float) -> str:
    # Milliseconds from the same rounded instant as the seconds, so x.9999996 is not shown as
    # the next second's .999.
    when = datetime.fromtimestamp(ts, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def format_table(run: CheckRun, width: int = 46) -> str:
    """The run as a text table, one row per test, grouped by group; a test that did not pass has
    its reason on the line below. Then the verdict. ASCII only, for any terminal or log."""
    local = datetime.fromtimestamp(run.ts, ZoneInfo(run.timezone))
    head = ("RESULT", "GROUP", "TEST", "ADDRESS", "EXPECTED", "GOT")
    rows = []
    for r in run.results:
        address = r.canary.shown or "-"
        if len(address) > width:
            address = address[: width - 3] + "..."
        rows.append(((r.status.upper(), r.canary.group, r.canary.name, address,
                      r.canary.expected, r.got), r.note if r.status != PASS else ""))
    widths = [max(len(x[i]) for x in (head, *(row for row, _ in rows))) for i in range(5)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + "  " + cells[5]

    lines = [
        f"Schoolgate filter check: {run.school}, {local.strftime('%A %d %B %Y %H:%M %Z')}",
        f"Sent through the running gateway at {run.gateway}; nothing was fetched from the "
        "internet. Illegal-list tests show the host only.",
        "",
        line(head),
    ]
    previous = None
    for row, note in rows:
        if previous is not None and row[1] != previous:
            lines.append("")
        previous = row[1]
        lines.append(line(row).rstrip())
        if note:
            lines.append(" " * (widths[0] + widths[1] + 4) + f"-> {note}")
    lines += ["", run.verdict]
    return "\n".join(lines)
