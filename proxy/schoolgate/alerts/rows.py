"""An alert as the outbox keeps it: what `Outbox` reads back and a `Sender` delivers (its own
module so that the outbox, which calls the senders, and the senders, which read rows, do not
import each other)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["OutboxRow", "timestamp"]


def timestamp(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One alert in the outbox."""

    id: int
    created: float
    kind: str
    channel: str
    recipients: tuple[str, ...]
    subject: str
    body: str
    html: str | None
    payload: dict[str, Any]
    dedup_key: str | None
    attempts: int
    next_attempt_at: float | None
    status: str
    """`pending`, `sent`, `failed` (gave up; `last_error` says why) or `held` (recorded, not
    sent, while alerts to its destination were paused)."""
    last_error: str | None
    sent_at: float | None

    @classmethod
    def from_db(cls, r: Sequence[Any]) -> OutboxRow:
        return cls(
            id=r[0], created=timestamp(r[1]) or 0.0, kind=r[2], channel=r[3],
            recipients=tuple(r[4].split(",")) if r[4] else (), subject=r[5], body=r[6],
            html=r[7], payload=json.loads(r[8]), dedup_key=r[9], attempts=r[10],
            next_attempt_at=timestamp(r[11]), status=r[12], last_error=r[13],
            sent_at=timestamp(r[14]),
        )
