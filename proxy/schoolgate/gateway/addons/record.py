"""Record: queue one event per decision for the batched store writer. Never waits, never does I/O.

It also owns the store's lifecycle inside mitmproxy (`running` / `done`), so the writer drains
whatever is queued when the proxy shuts down.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from ..service import Gateway
from ...events import Event
from . import BODY_PENDING, IDENTITY, RECORDED, VERDICT

log = logging.getLogger("schoolgate.record")


class Record:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    async def running(self) -> None:
        await self.gateway.start()

    async def done(self) -> None:
        await self.gateway.stop()

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        verdict = flow.metadata.get(VERDICT)
        if verdict is None or flow.metadata.get(RECORDED) or flow.metadata.get(BODY_PENDING):
            return  # a search in the body is recorded at `request`, once it is decided
        flow.metadata[RECORDED] = True
        try:
            identity = flow.metadata.get(IDENTITY)
            request = flow.request
            event = Event(
                ts=request.timestamp_start,
                client_ip=identity.ip if identity else flow.client_conn.peername[0],
                group=verdict.group,
                action=verdict.action,
                reference=verdict.reference,
                user=identity.user if identity else None,
                device=identity.device if identity else None,
                method=request.method,
                scheme=request.scheme,
                # The destination mitmproxy connects to, never a Host header the client chose.
                host=request.host,
                # An illegal-list URL may itself be an entry: keep the host and list name only.
                url=None if verdict.illegal_list else request.url,
                categories=verdict.categories,
                matched_rule=verdict.rule,
                severity=verdict.severity,
                reason=verdict.reason or None,
                theme=verdict.theme,
                search_term=search.term if (search := verdict.search) is not None else None,
                engine=search.engine if search is not None else None,
                search_normalised=search.normalised if search is not None else None,
                matched_phrase=verdict.flag.phrase if verdict.flag is not None else None,
            )
        except Exception:  # noqa: BLE001 - the verdict stands; losing the record is counted
            log.exception("could not build the event for a %s decision", verdict.action)
            self.gateway.metrics.events_dropped.inc()
            return
        self.gateway.record(event)

    # A flow blocked by Enforce's last-line check at `request` is recorded and counted there.
    request = requestheaders
