"""Filtering failures, logged so a technician can act: each distinct one once with its traceback,
then a count now and then. The request itself is failed closed by the caller."""

from __future__ import annotations

import logging
import time
import traceback

__all__ = ["FailureLog"]

log = logging.getLogger("schoolgate")


class FailureLog:
    """Log each distinct filtering failure once with its traceback, then only a periodic count.

    A broken classifier fails every request; one traceback per request would bury the log and
    cost I/O on the hot path, while the metric still counts every one.
    """

    MAX_KINDS = 256

    def __init__(self, repeat_every: float = 60.0) -> None:
        self._seen: dict[tuple[object, ...], list[float]] = {}  # kind -> [last logged, repeats]
        self._repeat_every = repeat_every

    @staticmethod
    def kind(stage: str, exc: BaseException) -> tuple[object, ...]:
        """Same failure = same stage, exception type and raising line. Not the message: it often
        holds the host, and one bug hit by many hosts is still one bug."""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else None
        return (stage, type(exc).__qualname__, where)

    def report(self, stage: str, exc: BaseException) -> None:
        key = self.kind(stage, exc)
        now = time.monotonic()
        entry = self._seen.get(key)
        if entry is None:
            if len(self._seen) >= self.MAX_KINDS:
                return  # a flood of distinct failures: the metric still counts every one
            self._seen[key] = [now, 0]
            log.error(
                "filtering error in %s, request blocked (fail closed): %s\n%s",
                stage,
                exc,
                "".join(traceback.format_exception(exc)).rstrip(),
            )
            return
        entry[1] += 1
        if now - entry[0] >= self._repeat_every:
            log.error(
                "filtering error in %s repeated %d times in the last %.0fs: %s: %s",
                stage, entry[1], now - entry[0], type(exc).__name__, exc,
            )
            entry[0], entry[1] = now, 0
