"""The log lines of `schoolgate run`: a warning or an error says so, news does not, so a
technician (and the first-start test) can tell a fault from a report of what happened."""

from __future__ import annotations

import logging
import re

import pytest

from schoolgate.gateway.logs import SupervisorLogFormat, WorkerLogFormat


def record(level: int, msg: str, *args: object, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord("schoolgate", level, __file__, 1, msg, args, None)
    r.__dict__.update(extra)
    return r


@pytest.mark.parametrize(
    ("level", "mark"),
    [(logging.DEBUG, ""), (logging.INFO, ""), (logging.WARNING, "warning: "),
     (logging.ERROR, "error: "), (logging.CRITICAL, "error: ")],
)
def test_the_supervisor_marks_warnings_and_errors(level, mark):
    r = record(level, "list %s: %d entries", "gambling", 3)
    line = SupervisorLogFormat().format(r)
    assert re.fullmatch(rf"\[\d\d:\d\d:\d\d\.\d{{3}}\] schoolgate: {mark}list gambling: 3 entries",
                        line), line
    assert r.getMessage() == "list gambling: 3 entries"  # other handlers see it as it came


def test_a_worker_marks_them_too_and_keeps_mitmproxys_client_address():
    fmt = WorkerLogFormat(False)
    assert fmt.format(record(logging.INFO, "keyword library: 859 phrases")).endswith(
        "] keyword library: 859 phrases")
    line = fmt.format(record(logging.WARNING, "TLS handshake failed",
                             client=("10.20.1.5", 50000)))
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\.\d{3}\]\[10\.20\.1\.5:50000\] warning: TLS handshake "
                        r"failed", line), line
