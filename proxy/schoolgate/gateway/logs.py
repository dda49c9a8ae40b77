"""How `schoolgate run` writes its log: one line per record, its time first, and a warning or an
error saying so ("warning: ...", "error: ..."), so a technician can tell a fault from news and
`grep` for the faults, whether the supervisor or a worker (through mitmproxy's log) wrote it."""

from __future__ import annotations

import logging

from mitmproxy.log import MitmFormatter

__all__ = ["SupervisorLogFormat", "WorkerLogFormat", "level_mark"]


def level_mark(levelno: int) -> str:
    """`warning: ` or `error: ` before the message of a record at that level; nothing below."""
    if levelno >= logging.ERROR:
        return "error: "
    if levelno >= logging.WARNING:
        return "warning: "
    return ""


def _marked(record: logging.LogRecord) -> logging.LogRecord:
    mark = level_mark(record.levelno)
    if not mark:
        return record
    # A copy: the record may go to other handlers (pytest's capture) as it came.
    return logging.makeLogRecord({**record.__dict__, "msg": mark + record.getMessage(),
                                  "args": None})


class SupervisorLogFormat(logging.Formatter):
    """`[HH:MM:SS.mmm] schoolgate: [warning: |error: ]message`."""

    def __init__(self) -> None:
        super().__init__("[%(asctime)s.%(msecs)03d] schoolgate: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(_marked(record))


class WorkerLogFormat(MitmFormatter):
    """mitmproxy's worker lines (`[HH:MM:SS.mmm][client] message`), with the level mark."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(_marked(record))
