"""Identify: who is browsing. A proxy login (Basic, checked against htpasswd or by an LDAP bind)
names the person; otherwise the IP -> user map; the group follows the documented order in
`schoolgate.directory`. The login is taken off the request so no website ever sees it.

A login is checked once per client connection and remembered with it (a CONNECT's login covers the
whole tunnel), and verified passwords are cached in memory, so the bcrypt or LDAP cost is paid
rarely; when it is, it runs in a thread while the request waits, never on the event loop.
"""

from __future__ import annotations

import asyncio
import time

from mitmproxy import http

from ...identify.names import login_name
from ...identify.passwords import parse_basic_auth
from ..service import Gateway, Rules
from . import IDENTITY, RULES, STARTED, fail_closed, needs_decision

REALM = 'Basic realm="School web filter", charset="UTF-8"'


class Identify:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    # -- hooks ---------------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow):
        """The CONNECT of an HTTPS tunnel: its login, if any, covers every request inside."""
        if flow.response is not None:
            return None
        try:
            return self._login(flow, self.gateway.rules, connect=True)
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            self.gateway.fail_closed("identify", e)
            flow.response = http.Response.make(503, b"Filtering error: connection refused.\n")
            return None

    def requestheaders(self, flow: http.HTTPFlow):
        if not needs_decision(flow):
            return None
        flow.metadata[STARTED] = time.perf_counter()
        # One snapshot: a reload mid-request cannot mix two generations of rules.
        rules = flow.metadata[RULES] = self.gateway.rules
        try:
            return self._login(flow, rules, connect=False)
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            fail_closed(self.gateway, flow, "identify", e)
            return None

    # -- logins --------------------------------------------------------------------------------

    def _login(self, flow: http.HTTPFlow, rules: Rules, *, connect: bool):
        """Identify now, or return a coroutine that checks a login in a thread first (mitmproxy
        awaits what a hook returns)."""
        sources = rules.identity
        header = flow.request.headers.get("Proxy-Authorization")
        if header is not None:
            del flow.request.headers["Proxy-Authorization"]  # never forwarded to a website
        # -- `schoolgate check` (addons/check.py): decided as the group its check header named,
        # with no login asked for.
        checked = self.gateway.check_identity(flow.client_conn)
        if checked is not None:
            if not connect:
                flow.metadata[IDENTITY] = checked
            return None
        # -- end of `schoolgate check`
        user = self.gateway.logins.get(flow.client_conn)
        if header is not None and sources.proxy_auth:
            creds = parse_basic_auth(header)
            if creds is None:
                return self._ask_for_login(flow, rules, "the login could not be read")
            if sources.recently_verified(*creds):
                user = self._remember(flow, creds[0])
            else:
                return self._check_then_identify(flow, rules, creds, connect)
        return self._identify(flow, rules, user, connect)

    async def _check_then_identify(self, flow: http.HTTPFlow, rules: Rules,
                                   creds: tuple[str, str], connect: bool) -> None:
        # Exceptions here would be swallowed by mitmproxy and the request let through.
        try:
            ok = await asyncio.to_thread(rules.identity.authenticate, *creds)
            if not ok:
                self._ask_for_login(flow, rules, "wrong user name or password")
                return
            self._identify(flow, rules, self._remember(flow, creds[0]), connect)
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            if connect:
                self.gateway.fail_closed("identify", e)
                flow.response = http.Response.make(503, b"Filtering error: connection refused.\n")
            else:
                fail_closed(self.gateway, flow, "identify", e)

    def _remember(self, flow: http.HTTPFlow, name: str) -> str | None:
        user = login_name(name)
        if user is not None:
            self.gateway.logins[flow.client_conn] = user
        return user

    def _identify(self, flow: http.HTTPFlow, rules: Rules, user: str | None, connect: bool) -> None:
        sources = rules.identity
        ip = flow.client_conn.peername[0]
        if user is None and sources.must_log_in(ip):
            self._ask_for_login(flow, rules, "this network requires a login")
            return
        identity = sources.identify(ip, proxy_user=user)
        if identity.user is not None and identity.source in ("subnet", "default"):
            self.gateway.look_up_groups(identity.user)  # directory groups, fetched in the background
        if not connect:
            flow.metadata[IDENTITY] = identity

    @staticmethod
    def _ask_for_login(flow: http.HTTPFlow, rules: Rules, why: str) -> None:
        """407: the browser asks the person for their school login and tries again. Not an event:
        every browser meets one before its first login, and nothing was decided about a site."""
        flow.response = http.Response.make(
            407,
            f"Please log in to the school web filter ({why}).\n".encode(),
            {"Proxy-Authenticate": REALM, "Content-Type": "text/plain; charset=utf-8",
             "Cache-Control": "no-store"},
        )
