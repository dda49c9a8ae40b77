"""The check protocol the gateway's check mode and the check client share: the request header
that asks for a check, the files that say where and with which token, and the headers of the
gateway's answer (written by `answer_headers`, read back by `observation_from`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote

from ..policy import Verdict

__all__ = [
    "ADDRESS_FILE",
    "ANSWER",
    "CHECK_HEADER",
    "TOKEN_FILE",
    "CheckHeader",
    "Headers",
    "Observation",
    "answer_headers",
    "observation_from",
    "parse_check_header",
]

CHECK_HEADER = "X-Schoolgate-Check"
"""Sent by the check client: `<token> group=<group>`. The gateway always takes it off."""
ANSWER = "X-Schoolgate-Check-"
"""Prefix of the headers on the gateway's answer to a check request (see `answer_headers`)."""
TOKEN_FILE = "check-token"  # noqa: S105 - a file name, not a secret
"""In the data directory, mode 0600: whoever can read it can run checks."""
ADDRESS_FILE = "listen-address"
"""In the data directory: `HOST:PORT` the running gateway listens on (written once it does)."""


@dataclass(frozen=True, slots=True)
class CheckHeader:
    token: str
    group: str


def parse_check_header(value: str) -> CheckHeader | None:
    """`<token> group=<group>`, or None when it is not in that form."""
    parts = value.split()
    if len(parts) != 2 or not parts[1].startswith("group=") or len(parts[1]) == 6:
        return None
    return CheckHeader(parts[0], parts[1][6:])


@dataclass(frozen=True, slots=True)
class Observation:
    """What the gateway said about one canary (from its check headers)."""

    action: str | None
    """`allow`, `block` or `error`; None when the answer was not a check answer (`error` says)."""
    stage: str = "request"
    """Where it was decided: `request` (the URL), `connect` (the CONNECT, by host name) or `tls`
    (the handshake, by host name: `reason` says passed through or refused)."""
    reason: str = ""
    category: str = ""
    illegal_list: str = ""
    rule: str = ""
    schedule: str = ""
    reference: str = ""
    path: str = ""
    """The path and query the gateway would have sent, after its safe-search rewrite."""
    headers: tuple[tuple[str, str], ...] = ()
    """Headers the gateway set on the request (such as YouTube-Restrict)."""
    status: int | None = None
    error: str = ""


# Printable ASCII but '%': header values stay readable, anything else is percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def answer_headers(verdict: Verdict, stage: str, *, path: str | None = None,
                   set_headers: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """The headers the gateway puts on its answer to a check request. Never an illegal-list
    entry: for an illegal verdict neither the rule's entry nor the path is given."""
    values = {
        "Action": verdict.action,
        "Stage": stage,
        "Group": verdict.group,
        "Reason": verdict.reason,
        "Category": verdict.category or "",
        "List": verdict.illegal_list or "",
        "Schedule": verdict.schedule or "",
        "Rule": verdict.rule or "",
        "Reference": verdict.reference,
    }
    if path is not None and verdict.illegal_list is None:
        values["Path"] = path
    sets = [f"{k}={v}" for k, v in set_headers]
    if sets:
        values["Headers"] = "; ".join(sets)
    return {ANSWER + k: quote(v, safe=_HEADER_SAFE) for k, v in values.items() if v}


class Headers(Protocol):
    """An answer's headers as both sides hold them: http.client's message, mitmproxy's Headers,
    or a plain dict in tests."""

    def get(self, name: str, /) -> str | None: ...


def observation_from(status: int, headers: Headers, stage: str) -> Observation:
    """Read the gateway's check headers from an answer."""

    def get(name: str) -> str:
        value = headers.get(ANSWER + name)
        return unquote(value) if value else ""

    action = get("Action")
    if action not in ("allow", "block", "error"):
        return Observation(None, stage, status=status,
                           error=f"the gateway answered {status} without a check verdict")
    sets = []
    for item in get("Headers").split("; "):
        name, eq, value = item.partition("=")
        if eq:
            sets.append((name, value))
    return Observation(
        action=action, stage=get("Stage") or stage, reason=get("Reason"),
        category=get("Category"), illegal_list=get("List"), rule=get("Rule"),
        schedule=get("Schedule"), reference=get("Reference"), path=get("Path"),
        headers=tuple(sets), status=status,
    )
