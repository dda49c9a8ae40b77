"""Judging the gateway's answer to each canary: whether what it said (an `Observation`) is what
the canary expects, and that outcome in words for the table and the governors. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from .answers import Observation
from .suite import (
    CATEGORY,
    CIRCUMVENTION,
    DOH,
    EDUCATION,
    FAIL,
    ILLEGAL,
    LOCKED,
    PASS,
    SAFE_SEARCH,
    SENT,
    UNSAFE_ENGINE,
    WALLED_GARDEN,
    WARN,
    YOUTUBE,
    Canary,
)

__all__ = ["Result", "evaluate"]


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one canary."""

    canary: Canary
    status: str
    """`pass`, `fail`, `warn` or `skip`."""
    got: str
    """What happened, in words."""
    note: str = ""


def evaluate(canary: Canary, seen: Observation | None) -> Result:
    """Whether the gateway's answer is what the canary expects. Pure."""
    if canary.preset is not None or seen is None:
        return Result(canary, canary.preset or WARN, "not checked", canary.note)
    if seen.action is None:
        return Result(canary, FAIL, f"error: {seen.error or 'no answer'}", canary.note)
    got = _describe(seen)
    note = canary.note
    if seen.action == "error":
        return Result(canary, FAIL, got, note or "the gateway failed closed: see its log")
    kind = canary.kind
    if kind == ILLEGAL:
        ok = seen.action == "block" and seen.illegal_list == canary.target
        return Result(canary, PASS if ok else FAIL, got, note)
    if kind in (CATEGORY, CIRCUMVENTION, DOH, UNSAFE_ENGINE, WALLED_GARDEN):
        if seen.action == "block":
            return Result(canary, PASS, got, note)
        if kind == DOH and seen.stage == "tls":
            return Result(canary, WARN, got, "passed through undecrypted, so its request shape "
                          "cannot be seen; known resolvers are still blocked by name "
                          "(doh category)")
        return Result(canary, FAIL, got, note)
    if kind == EDUCATION:
        return Result(canary, PASS if seen.action == "allow" else FAIL, got, note)
    if kind == SAFE_SEARCH:
        return _judge_search(canary, seen, got)
    raise ValueError(f"unknown kind of test {kind!r}")


def _judge_search(canary: Canary, seen: Observation, got: str) -> Result:
    if seen.action == "block":
        return Result(canary, PASS, got,
                      "blocked for this group, which is stricter than safe search")
    if seen.stage == "tls":
        return Result(canary, WARN, got, "passed through undecrypted: safe search for this group "
                      "depends on the school's DNS (forcesafesearch.google.com and the like)")
    engine, level = canary.target or "", canary.level or ""
    if engine == "youtube":
        values = [v for k, v in seen.headers if k.lower() == "youtube-restrict"]
        want = YOUTUBE.get(level)
        ok = values == [want] if want else not values
        return Result(canary, PASS if ok else FAIL, got, canary.note)
    params = (seen.path.split("?", 1) + [""])[1].split("&")
    want = LOCKED[engine].get(level)
    if want is None:  # safe search off: the person's own setting stays
        ok = SENT[engine] in params
    else:
        name = want.split("=")[0]
        ok = [p for p in params if p.split("=")[0].lower() == name] == [want]
    return Result(canary, PASS if ok else FAIL, got, canary.note)


_REASONS = {
    "walled-garden": "walled garden",
    "circumvention:doh": "DNS-over-HTTPS",
    "circumvention:port": "tunnel to another port",
    "no-safe-search": "no lockable safe search",
    "override": "local block entry",
    "keywords": "keywords",
    "bad-request": "bad request",
    "tls:refused": "refused",
    "tls:no-sni": "no host name",
}


def _describe(seen: Observation) -> str:
    if seen.action == "error":
        return f"error: {seen.reason or 'filtering error'}"
    where = {"connect": " at CONNECT", "tls": " at TLS handshake"}.get(seen.stage, "")
    if seen.action == "block":
        if seen.illegal_list:
            why = f"illegal list {seen.illegal_list}"
        elif seen.reason == "category":
            why = f"category {seen.category}" + (f" ({seen.schedule})" if seen.schedule else "")
        elif seen.reason == "circumvention":
            why = f"circumvention ({seen.category})" if seen.category else "circumvention"
        else:
            why = _REASONS.get(seen.reason, seen.reason or "blocked")
        return f"block{where}: {why}"
    if seen.stage == "tls":
        return "allow: passed through undecrypted"
    shown = []
    query = (seen.path.split("?", 1) + [""])[1]
    for p in query.split("&"):
        if p.split("=")[0].lower() in ("safe", "adlt", "kp"):
            shown.append(p)
    shown += [f"{k}: {v}" for k, v in seen.headers]
    if seen.reason == "override":
        shown.insert(0, "local allow entry")
    return "allow" + (f": {', '.join(shown)}" if shown else "")
