"""The lean mitmproxy master `schoolgate run` serves on: only the mitmproxy addons Schoolgate needs,
and an addon manager that dispatches each hook straight to the addons that implement it.

Why a manager of our own: mitmproxy's `AddonManager.trigger_event` walks the whole addon chain
for every hook of every flow, asking each addon for the hook with `getattr` inside a `safecall`
context manager and rebuilding the hook's arguments per addon; and after each flow hook it walks
the chain again for the `update` hook, which only the interactive tools listen to. With
Schoolgate's ten addons beside mitmproxy's six, that walk was the largest single cost in a
py-spy profile of allowed plain HTTP (17 % of the proxy's samples in `trigger_event`, against
about 7 % for all of Schoolgate's own hooks). The chain is fixed once the proxy runs, so the
addons that implement each hook are looked up once, and a hook no addon implements costs
nothing. Behaviour is mitmproxy's: addons run in chain order, an exception in one is logged and
the next still runs, and `AddonHalt` stops the hook.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from collections.abc import Callable
from typing import Any

from mitmproxy import addonmanager, exceptions, flow, hooks, options
from mitmproxy.addons import block, core, disable_h2c, next_layer, tlsconfig
from mitmproxy.master import Master

from .workers.listen import InheritedSocketProxyserver

__all__ = ["DispatchAddonManager", "drain", "lean_addons", "lean_master"]

log = logging.getLogger("schoolgate")


class DispatchAddonManager(addonmanager.AddonManager):
    """mitmproxy's addon manager with a per-hook dispatch table, rebuilt whenever an addon is
    added or removed."""

    def __init__(self, master: Master) -> None:
        super().__init__(master)
        self._table: dict[str, tuple[Callable[..., Any], ...]] = {}

    def register(self, addon: object) -> object:
        self._table.clear()
        return super().register(addon)

    def remove(self, addon: object) -> None:
        self._table.clear()
        super().remove(addon)

    def clear(self) -> None:
        self._table.clear()
        super().clear()

    def hooks_for(self, event: hooks.Hook) -> tuple[Callable[..., Any], ...]:
        """The callables for `event`, in chain order (sub-addons after their parent)."""
        funcs = self._table.get(event.name)
        if funcs is None:
            funcs = self._table[event.name] = tuple(
                func for top in self.chain for _, func in self._iter_hooks(top, event))
        return funcs

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        await self.trigger_event(event)
        message = event.args()[0]
        if isinstance(message, flow.Flow):
            update = hooks.UpdateHook([message])
            if self.hooks_for(update):
                await self.trigger_event(update)

    async def trigger_event(self, event: hooks.Hook) -> None:
        funcs = self.hooks_for(event)
        if not funcs:
            return
        args = event.args()
        for func in funcs:
            try:
                with addonmanager.safecall():
                    res = func(*args)
                    if res is not None and inspect.isawaitable(res):
                        await res
            except exceptions.AddonHalt:
                return


async def drain(master: Master, *, grace: float = 0.0, timeout: float = 5.0) -> int:
    """Stop taking connections; give the open ones `grace` seconds to finish on their own (a
    worker stopping alone: its clients' next connections go to the other workers), then close
    the rest and wait (`timeout`, bounded) until every client connection's handler has finished.
    Returns how many were still open at the end.

    mitmproxy's shutdown runs the `done` hooks while the proxy goes on serving: its listening
    sockets stay open and keep-alive clients keep sending requests, so decisions went on being
    made, and recorded, after the event store had been flushed and closed.
    benchmarks/lossless.py found that: with SIGTERM in the middle of the load, 10 of 1,674
    answered requests had no event. Draining first means every decision is made before the
    flush. A request already inside a hook finishes it (the hooks do not wait on the network);
    one whose connection is closed before it is decided is neither answered nor recorded."""
    proxyserver = master.addons.get("proxyserver")
    if proxyserver is None:
        return 0
    await proxyserver.servers.update([])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while proxyserver.connections and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for handler in list(proxyserver.connections.values()):
        client = handler.client
        if client in handler.transports and handler.transports[client].handler is not None:
            handler.close_connection(client)
    deadline = loop.time() + timeout
    while proxyserver.connections and loop.time() < deadline:
        await asyncio.sleep(0.02)
    left = len(proxyserver.connections)
    if left:
        log.warning("%d client connections were still open %.0f s into shutdown", left,
                    grace + timeout)
    return left


def lean_master(opts: options.Options) -> Master:
    """A master with the dispatching addon manager and no addons yet (add `lean_addons()`)."""
    master = Master(opts, with_termlog=False)
    # Replaced before any addon is added; the options' change signal must reach the new one.
    opts.changed.disconnect(master.addons._configure_all)
    master.addons = DispatchAddonManager(master)
    return master


def lean_addons(listen: socket.socket) -> list[object]:
    """The mitmproxy addons `schoolgate run` needs, instead of mitmproxy's thirty defaults: each
    default addon with a request or response hook runs on every flow, whether it does anything or
    not, and most exist for the interactive tools.

    Kept: Core (option checks and commands), Block (`block_global`: a gateway listening on a
    public address refuses clients from the internet, so it is never an open proxy), DisableH2C
    (an h2c upgrade or HTTP/2 prior knowledge would carry requests past the HTTP hooks),
    Proxyserver, NextLayer and TlsConfig (the proxy itself and its interception); Proxyserver as
    `InheritedSocketProxyserver`, accepting on the supervisor's socket `listen`.

    Dropped, with why: ProxyAuth (Schoolgate answers 407 itself, against htpasswd or LDAP);
    UpstreamAuth (no upstream mode: `mode` is regular or transparent); DnsResolver and
    StripDnsHttpsRecords (DNS mode only); UpdateAltSvc (reverse mode only); Onboarding (the
    mitmproxy-branded mitm.it app; schools install the CA through device management);
    ScriptLoader (no `-s` scripts: entry.py is for stock mitmdump); Save, SaveHar, Export, Cut,
    Comment, CommandHistory (which writes a history file) and Browser (interactive tools);
    ClientPlayback, ServerPlayback, MapLocal, MapRemote, ModifyBody, ModifyHeaders, StickyAuth,
    StickyCookie, AntiCache, AntiComp and BlockList (traffic rewriting a technician would set with
    `--set`, which `schoolgate run` does not take; blocking is Schoolgate's own job)."""
    return [
        core.Core(),
        block.Block(),
        disable_h2c.DisableH2C(),
        InheritedSocketProxyserver(listen),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
    ]
