"""Check mode: the gateway's side of `schoolgate check` (see `schoolgate.check`).

A request carrying `X-Schoolgate-Check: <token> group=<group>` with the token this gateway wrote
to `<data_dir>/check-token` is decided for that group by the real pipeline (identify → TLS
decisions → classify → enforce), and then answered by the gateway itself: an allowed request with
a 200 describing the verdict, a blocked one with its normal block page; both carry
`X-Schoolgate-Check-*` headers. A check connection never reaches a website: its answers are made
here, and `server_connect` refuses any server connection for it whatever happens upstream of us.

The header is always taken off the request; a wrong token gets 403 and no check mode. Check
requests are not browsing: they are not events (no DSL alert, no report) and not counted in
`schoolgate_requests_total`, only in `schoolgate_filter_check_requests_total`. The run's outcome
is recorded by the client in the store's check_runs table.

Two addons share one state: `CheckMode` runs first (admits or refuses check requests),
`CheckAnswer` right after Enforce (answers them, and keeps TLS pass-through from reaching a server).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

from mitmproxy import connection, ctx, http, tls
from mitmproxy.proxy import server_hooks

from ...check.answers import (
    ADDRESS_FILE,
    ANSWER,
    CHECK_HEADER,
    TOKEN_FILE,
    answer_headers,
    parse_check_header,
)
from ...check.run import CheckRun, run_check
from ...check.summary import write_summary
from ...check.timetable import next_run
from ...files import write_atomically
from ...identify import Identity
from ...policy import ALLOW, ERROR, Verdict, new_reference
from ...store.checks import record_run
from ..decision import ClientState, connect_verdict, handshake_decision
from ..service import Gateway
from . import begin, decision_of, serve_verdict

log = logging.getLogger("schoolgate.check")


class CheckMode:
    """Admits check requests (first in the order): validates and strips the header, gives the
    connection the named group, and marks its flows so they are neither recorded nor counted."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        # A worker of `schoolgate run` answers the token the supervisor wrote for every worker.
        self.shared = gateway.link is not None
        self.token = (self.token_path.read_text(encoding="ascii").strip() if self.shared
                      else secrets.token_urlsafe(32))
        self.answer = CheckAnswer(self)
        self._schedule: asyncio.Task | None = None
        self._last_refusal_log = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def token_path(self) -> Path:
        return self.gateway.config.data_dir / TOKEN_FILE

    @property
    def address_path(self) -> Path:
        return self.gateway.config.data_dir / ADDRESS_FILE

    def running(self) -> None:
        if self.gateway.primary:
            # Worker 0 only: one scheduled check for the gateway, not one per worker.
            self._schedule = asyncio.get_running_loop().create_task(
                self._scheduled_checks(), name="schoolgate check schedule")
        if self.shared:
            return  # the supervisor wrote the token and the address, and removes them
        write_token(self.token_path, self.token)
        # Where `schoolgate check` finds this gateway (the real port when the config says 0).
        address = self.listen_address()
        if address is not None:
            host, port = address
            write_address(self.address_path, host, port)

    async def done(self) -> None:
        if self._schedule is not None:
            self._schedule.cancel()
            await asyncio.gather(self._schedule, return_exceptions=True)
            self._schedule = None
        if self.shared:
            return
        self.address_path.unlink(missing_ok=True)
        try:
            if self.token_path.read_text(encoding="ascii").strip() == self.token:
                self.token_path.unlink()
        except (OSError, UnicodeDecodeError):
            pass

    # -- admitting check requests ------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            self._admit(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        if not self._admit(flow):
            return
        verdict = self.gateway.client(flow.client_conn).passed_through
        if verdict is not None:
            # Decided at the handshake by host name: that decision is the answer.
            self.answer.respond(flow, verdict, "tls")

    def _admit(self, flow: http.HTTPFlow) -> bool:
        """True for a check request (a valid header, or a connection a valid header opened);
        False for real traffic and for a refused header (answered here)."""
        try:
            headers = flow.request.headers
            values = headers.get_all(CHECK_HEADER)
            state = self.gateway.clients.get(flow.client_conn)
            if values:
                del headers[CHECK_HEADER]  # never forwarded, whatever follows
                state = self._take(flow, values)
            if state is None or state.check is None or flow.response is not None:
                return False
            d = begin(self.gateway, flow)
            d.check = state.check.group
            # Not browsing: Record and Metrics skip flows already recorded and counted.
            d.recorded = d.counted = True
            return True
        except Exception as e:  # noqa: BLE001 - fail closed: refuse, never forward
            self.gateway.fail_closed("identify", e)
            flow.response = http.Response.make(
                503, b"Filtering error: check request refused.\n",
                {"Content-Type": "text/plain; charset=utf-8"})
            return False

    def _take(self, flow: http.HTTPFlow, values: list[str]) -> ClientState:
        parsed = parse_check_header(values[0]) if len(values) == 1 else None
        sent = parsed.token.encode("utf-8", "surrogateescape") if parsed is not None else b""
        state = self.gateway.client(flow.client_conn)
        if parsed is None or not hmac.compare_digest(sent, self.token.encode()):
            state.check = None
            self._refuse(flow, 403, "the check token is wrong or missing")
        elif parsed.group not in self.gateway.rules.config.groups:
            self._refuse(flow, 400, f"there is no group {parsed.group!r}")
        else:
            state.check = Identity(ip=flow.client_conn.peername[0], group=parsed.group,
                                   source="check")
        return state

    def _refuse(self, flow: http.HTTPFlow, status: int, why: str) -> None:
        self.gateway.metrics.check_requests.labels("refused").inc()
        now = time.monotonic()
        if now - self._last_refusal_log > 60:  # one line a minute at most, however many
            self._last_refusal_log = now
            log.warning("refused a check request from %s: %s", flow.client_conn.peername[0], why)
        flow.response = http.Response.make(
            status, f"Schoolgate check refused: {why}.\n".encode(),
            {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"})

    # -- the guarantee -----------------------------------------------------------------------

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """No check connection ever reaches a server, whatever any other addon does."""
        state = self.gateway.clients.get(data.client)
        if state is not None and state.check is not None:
            data.server.error = "a schoolgate check never connects to a website"

    # -- the timetable -----------------------------------------------------------------------

    async def _scheduled_checks(self) -> None:
        """Run the check at each `check.schedule` time (school time), from a worker thread
        against this gateway's own listen address; a failed run is logged and the next one
        still happens."""
        while True:
            config = self.gateway.rules.config
            due = next_run(datetime.now(UTC), config.check.schedule, config.timezone)
            if due is None:
                await asyncio.sleep(60)  # a reload may add a schedule
                continue
            # Wake at least once a minute: a suspend or clock change must not overshoot.
            while (left := (due - datetime.now(UTC)).total_seconds()) > 0:
                await asyncio.sleep(min(left, 60))
            try:
                address = self.listen_address()
                if address is None:
                    log.error("the scheduled filter check cannot run: the proxy is not listening")
                    continue
                await asyncio.to_thread(self.run_now, "schedule", address)
            except Exception:  # noqa: BLE001 - the timetable outlives any one run
                log.exception("the scheduled filter check failed to run")

    def run_now(self, trigger: str, address: tuple[str, int]) -> CheckRun:
        """Run the whole check against this gateway at `address`, record it and write the
        summary (blocking: call from a thread). Returns the `CheckRun`."""
        rules = self.gateway.rules
        run = run_check(rules.config, rules, address, self.token, trigger=trigger)
        run = dataclasses.replace(run, id=record_run(rules.config.database_path, run))
        path = write_summary(rules.config, run)
        level = logging.INFO if run.passed else logging.ERROR
        log.log(level, "filter check %d (%s): %s Summary: %s", run.id, trigger, run.verdict, path)
        return run

    def listen_address(self) -> tuple[str, int] | None:
        """Where this gateway's proxy listens, as a client on this machine reaches it; None
        when no proxy server is listening."""
        proxyserver = ctx.master.addons.get("proxyserver")
        addresses = proxyserver.listen_addrs() if proxyserver is not None else []
        if not addresses:
            return None
        host, port = addresses[0][:2]
        if host in ("", "0.0.0.0"):  # noqa: S104 - naming a bound address
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return host, port


class CheckAnswer:
    """Answers check requests (right after Enforce): the verdict's headers on the block page,
    or a 200 of our own for an allowed request, so nothing is fetched."""

    def __init__(self, mode: CheckMode):
        self.mode = mode
        self.gateway = mode.gateway

    def _check_identity(self, client: connection.Client) -> Identity | None:
        state = self.gateway.clients.get(client)
        return state.check if state is not None else None

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """A CONNECT refused by the TLS decisions (SNI-only groups, ports): say why."""
        identity = self._check_identity(flow.client_conn)
        if identity is None or flow.response is None or ANSWER + "Action" in flow.response.headers:
            return
        try:
            verdict = self._connect_verdict(flow, identity)
            self.gateway.metrics.check_requests.labels(verdict.action).inc()
            flow.response.headers.update(answer_headers(verdict, "connect"))
        except Exception as e:  # noqa: BLE001 - the refusal stands; only the detail is lost
            self.gateway.fail_closed("tls", e)

    def _connect_verdict(self, flow: http.HTTPFlow, identity: Identity) -> Verdict:
        # The TLS decisions answer a CONNECT with text; the same decision, made again on the
        # same rules, gives the reason and category the check reports.
        status = flow.response.status_code if flow.response is not None else 0
        if status >= 500:
            return Verdict(action=ERROR, group=identity.group, reference=new_reference(),
                           reason="filtering-error:tls")
        verdict = connect_verdict(self.gateway.rules, identity, flow.request.host,
                                  flow.request.port)
        if verdict is None or verdict.action == ALLOW:
            verdict = Verdict(action="block", group=identity.group, reference=new_reference(),
                              rule=f"CONNECT refused ({status})", reason="connect")
        return verdict

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        """A check connection the TLS decisions pass through undecrypted would reach the site:
        decrypt it instead, and answer what is asked inside with the pass-through verdict."""
        client = data.context.client
        identity = self._check_identity(client)
        if identity is None or not data.ignore_connection:
            return
        data.ignore_connection = False
        try:
            handshake = handshake_decision(self.gateway.rules, identity,
                                           data.client_hello.sni)
            if handshake.verdict is None:
                raise RuntimeError("a connection passed through has no verdict")
            verdict = handshake.verdict
        except Exception as e:  # noqa: BLE001 - still never passed through; say it failed
            self.gateway.fail_closed("tls", e)
            verdict = Verdict(action=ERROR, group=identity.group, reference=new_reference(),
                              reason="filtering-error:tls")
        self.gateway.client(client).passed_through = verdict

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Blocked at the headers (Enforce served the block page): describe it now.
        d = decision_of(flow)
        if d is not None and d.check is not None and flow.response is not None:
            self._describe(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        d = decision_of(flow)
        if d is None or d.check is None or d.check_answered:
            return
        if flow.response is not None:
            self._describe(flow)
            return
        verdict = d.verdict
        if verdict is None or verdict.action != ALLOW:
            # Enforce's last-line check has already failed any such flow closed; never answer
            # one as allowed.
            verdict = Verdict(action=ERROR, group=d.check, reference=new_reference(),
                              reason="filtering-error:check")
        self.respond(flow, verdict, "request")

    def respond(self, flow: http.HTTPFlow, verdict: Verdict, stage: str) -> None:
        """Answer `flow` ourselves with the verdict (allowed: 200; otherwise the block page)."""
        d = begin(self.gateway, flow)
        if verdict.action != ALLOW:
            d.verdict = verdict
            serve_verdict(flow, d.rules, verdict)
            self._describe(flow, stage)
            return
        rewrite = d.safe_search
        names = [name for name, _ in rewrite.set_headers] if rewrite is not None else []
        set_headers = [(n, v) for n in names for v in flow.request.headers.get_all(n)]
        headers = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
        headers.update(answer_headers(verdict, stage, path=flow.request.path,
                                      set_headers=set_headers))
        flow.response = http.Response.make(
            200, b"Schoolgate check: allowed. The gateway answered; nothing was fetched.\n",
            headers)
        d.check_answered = True
        self.gateway.metrics.check_requests.labels(ALLOW).inc()

    def _describe(self, flow: http.HTTPFlow, stage: str = "request") -> None:
        d = begin(self.gateway, flow)
        if d.check_answered or flow.response is None:
            return
        d.check_answered = True
        verdict = d.verdict
        if verdict is None:  # answered by something that decided nothing: not a verdict
            return
        self.gateway.metrics.check_requests.labels(
            verdict.action if verdict.action in (ALLOW, ERROR) else "block").inc()
        flow.response.headers.update(answer_headers(verdict, stage))


def write_address(path: Path, host: str, port: int) -> None:
    """Where `schoolgate check` finds the gateway (the real port when the config says 0)."""
    write_atomically(path, f"[{host}]:{port}\n" if ":" in host else f"{host}:{port}\n")


def write_token(path: Path, token: str) -> None:
    """Write the check token readable by its owner only (0600), replacing any old one whole."""
    write_atomically(path, token + "\n")
