"""Identify: who is browsing. A proxy login (Basic, checked against htpasswd or by an LDAP bind)
names the person; otherwise the IP -> user map; the group follows the documented order in
`schoolgate.identify`. The login is taken off the request so no website ever sees it.

A login is checked once per client connection and remembered with it (a CONNECT's login covers the
whole tunnel), and verified passwords are cached in memory, so the bcrypt or LDAP cost is paid
rarely; when it is, it runs in a thread while the request waits, never on the event loop. The
identity itself is worked out once per connection and reused while it holds (same rules
generation, same login, the IP map unchanged and its entry unexpired).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from mitmproxy import http

from ...identify import Identity
from ...identify.names import login_name
from ...identify.passwords import parse_basic_auth
from ..rules import Rules
from ..service import Gateway
from . import begin, cached_identity, fail_closed, needs_decision

log = logging.getLogger("schoolgate")

REALM = 'Basic realm="School web filter", charset="UTF-8"'

_PROVISIONAL = ("subnet", "default")
"""Identity sources that a directory group fetched in the background may still overrule."""


class Identify:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self._group_lookups: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- hooks ---------------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """The CONNECT of an HTTPS tunnel: its login, if any, covers every request inside."""
        if flow.response is not None:
            return None
        try:
            return self._login(flow, self.gateway.rules, connect=True)
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            self.gateway.fail_closed("identify", e)
            flow.response = http.Response.make(503, b"Filtering error: connection refused.\n")
            return None

    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        if not needs_decision(flow):
            return None
        # One snapshot: a reload mid-request cannot mix two generations of rules.
        rules = begin(self.gateway, flow).rules
        try:
            return self._login(flow, rules, connect=False)
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            fail_closed(self.gateway, flow, "identify", e)
            return None

    async def done(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- logins --------------------------------------------------------------------------------

    def _login(self, flow: http.HTTPFlow, rules: Rules, *,
               connect: bool) -> Coroutine[Any, Any, None] | None:
        """Identify now, or return a coroutine that checks a login in a thread first (mitmproxy
        awaits what a hook returns)."""
        sources = rules.identity
        header = flow.request.headers.get("Proxy-Authorization")
        if header is not None:
            del flow.request.headers["Proxy-Authorization"]  # never forwarded to a website
        state = self.gateway.client(flow.client_conn)
        if state.check is not None:
            # `schoolgate check` (addons/check.py): decided as the group its check header named,
            # with no login asked for.
            if not connect:
                begin(self.gateway, flow).identity = state.check
            return None
        if header is not None and sources.proxy_auth:
            creds = parse_basic_auth(header)
            if creds is None:
                self._ask_for_login(flow, "the login could not be read")
                return None
            if sources.recently_verified(*creds):
                self._remember(flow, creds[0])
            else:
                return self._check_then_identify(flow, rules, creds, connect)
        self._identify(flow, rules, connect)
        return None

    async def _check_then_identify(self, flow: http.HTTPFlow, rules: Rules,
                                   creds: tuple[str, str], connect: bool) -> None:
        # Exceptions here would be swallowed by mitmproxy and the request let through.
        try:
            ok = await asyncio.to_thread(rules.identity.authenticate, *creds)
            if not ok:
                self._ask_for_login(flow, "wrong user name or password")
                return
            self._remember(flow, creds[0])
            self._identify(flow, rules, connect)
        except Exception as e:  # noqa: BLE001 - fail closed on anything
            if connect:
                self.gateway.fail_closed("identify", e)
                flow.response = http.Response.make(503, b"Filtering error: connection refused.\n")
            else:
                fail_closed(self.gateway, flow, "identify", e)

    def _remember(self, flow: http.HTTPFlow, name: str) -> None:
        user = login_name(name)
        if user is not None:
            self.gateway.client(flow.client_conn).login = user

    def _identify(self, flow: http.HTTPFlow, rules: Rules, connect: bool) -> None:
        identity = cached_identity(self.gateway, rules, flow.client_conn)
        if identity is None:
            identity = self._work_out(flow, rules)
            if identity is None:
                return  # asked to log in
        if not connect:
            begin(self.gateway, flow).identity = identity

    def _work_out(self, flow: http.HTTPFlow, rules: Rules) -> Identity | None:
        """The connection's identity, worked out and remembered; None when the person must
        log in first (answered with 407)."""
        sources = rules.identity
        state = self.gateway.client(flow.client_conn)
        ip = flow.client_conn.peername[0]
        if state.login is None and sources.must_log_in(ip):
            self._ask_for_login(flow, "this network requires a login")
            return None
        users = self.gateway.ip_users
        key = (rules.generation, users.version, state.login)
        identity = sources.identify(ip, proxy_user=state.login)
        if identity.user is not None and identity.source in _PROVISIONAL and sources.ldap:
            # Directory groups, fetched in the background; until they arrive the subnet decides,
            # and the identity is not kept (the next request may know the group).
            self._look_up_groups(rules, identity.user)
            state.identity = None
        else:
            state.identity, state.identity_key = identity, key
            state.identity_expires = users.expires(ip)
        return identity

    def _look_up_groups(self, rules: Rules, user: str) -> None:
        """Fetch a user's directory groups in a thread (one lookup per user at a time)."""
        ldap = rules.identity.ldap
        if ldap is None or ldap.settings.service_dn is None or user in self._group_lookups:
            return
        self._group_lookups.add(user)

        async def fetch() -> None:
            try:
                await asyncio.to_thread(ldap.groups_of, user)
            except Exception as e:  # noqa: BLE001 - the subnet keeps deciding meanwhile
                log.warning("directory groups of a user could not be fetched: %s", e)
            finally:
                self._group_lookups.discard(user)

        task = asyncio.get_running_loop().create_task(fetch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _ask_for_login(flow: http.HTTPFlow, why: str) -> None:
        """407: the browser asks the person for their school login and tries again. Not an event:
        every browser meets one before its first login, and nothing was decided about a site."""
        flow.response = http.Response.make(
            407,
            f"Please log in to the school web filter ({why}).\n".encode(),
            {"Proxy-Authenticate": REALM, "Content-Type": "text/plain; charset=utf-8",
             "Cache-Control": "no-store"},
        )
