"""`schoolgate run`'s lean master: the mitmproxy addons it loads instead of the thirty defaults,
that Schoolgate's own options apply to it, and that its addon manager dispatches hooks as
mitmproxy's does (order, errors, AddonHalt, `update`)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator

import pytest
from mitmproxy import addons as mitm_addons
from mitmproxy import exceptions, options
from mitmproxy.addons import block, disable_h2c, errorcheck, next_layer, proxyserver, tlsconfig
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import taddons, tflow

from schoolgate.gateway import bootstrap
from schoolgate.gateway.master import DispatchAddonManager, lean_addons, lean_master
from schoolgate.gateway.workers.listen import InheritedSocketProxyserver


@pytest.fixture
def listen() -> Iterator[socket.socket]:
    """The socket a worker inherits from its supervisor."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def lean(listen: socket.socket) -> list[object]:
    return lean_addons(listen)


def _names(addons: list[object]) -> set[str]:
    # mitmproxy's own name for an addon (what `addons.get` finds it by).
    return {getattr(a, "name", type(a).__name__.lower()) for a in addons}


def test_the_lean_master_keeps_the_proxy_and_its_safeguards(listen):
    kept = _names(lean(listen))
    assert kept == {"core", "block", "disableh2c", "proxyserver", "nextlayer", "tlsconfig"}
    # Each kept one is mitmproxy's own class, not a look-alike; the proxy server is mitmproxy's
    # own, accepting on the inherited socket.
    types = {type(a) for a in lean(listen)}
    assert {block.Block, disable_h2c.DisableH2C, InheritedSocketProxyserver,
            next_layer.NextLayer, tlsconfig.TlsConfig} <= types
    assert issubclass(InheritedSocketProxyserver, proxyserver.Proxyserver)


def test_the_dropped_defaults_are_the_ones_that_rewrite_replay_save_or_script(listen):
    dropped = _names(mitm_addons.default_addons()) - _names(lean(listen))
    assert {n.lower() for n in (
        "ScriptLoader", "Save", "SaveHar", "ProxyAuth", "UpstreamAuth", "Onboarding",
        "MapRemote", "MapLocal", "ModifyBody", "ModifyHeaders", "ServerPlayback",
        "ClientPlayback", "CommandHistory", "StickyCookie", "StickyAuth")} <= dropped
    assert len(dropped) == len(mitm_addons.default_addons()) - len(lean(listen))


def test_schoolgates_options_apply_to_the_lean_master(config, listen):
    # The test context brings its own Core; the rest are the lean master's.
    with taddons.context(*[a for a in lean(listen) if type(a).__name__ != "Core"]) as tctx:
        tctx.options.update(**bootstrap.proxy_options(config))
        assert tctx.options.connection_strategy == "lazy"
        assert tctx.options.confdir == str(config.ca_dir)
        # An open proxy on a public address is refused: Block's option is there and on.
        assert tctx.options.block_global is True


# -- the dispatching addon manager -----------------------------------------------------------


class _Tracer:
    def __init__(self, name, calls, *, fail=False, halt=False):
        self.name, self.calls, self.fail, self.halt = name, calls, fail, halt

    def request(self, flow):
        self.calls.append((self.name, "request", flow.id))
        if self.fail:
            raise RuntimeError(f"{self.name} broke")
        if self.halt:
            raise exceptions.AddonHalt


class _AsyncTracer(_Tracer):
    async def request(self, flow):
        await asyncio.sleep(0)
        self.calls.append((self.name, "request", flow.id))


class _Parent:
    def __init__(self, calls):
        self.name = "parent"
        self.calls = calls
        self.addons = [_Tracer("child", calls)]

    def request(self, flow):
        self.calls.append(("parent", "request", flow.id))


class _Updates:
    def __init__(self, calls):
        self.calls = calls

    def update(self, flows):
        self.calls.append(("updates", "update", flows[0].id))


def _run(coro_fn):
    async def main():
        master = lean_master(options.Options())
        return await coro_fn(master)
    return asyncio.run(main())


def test_the_lean_master_uses_the_dispatching_manager_and_still_hears_option_changes():
    async def check(master):
        seen = []

        class Configured:
            def configure(self, updated):
                seen.append(set(updated))

        with socket.create_server(("127.0.0.1", 0)) as sock:
            master.addons.add(*lean_addons(sock))
        master.addons.add(Configured())
        master.options.update(connection_strategy="lazy")
        return type(master.addons), seen
    manager, seen = _run(check)
    assert manager is DispatchAddonManager
    # The replaced manager's option hook is disconnected, the new one's connected: once each.
    assert seen == [{"connection_strategy"}]


def test_hooks_run_in_chain_order_with_sub_addons_after_their_parent_and_async_awaited():
    async def check(master):
        calls = []
        master.addons.add(_Tracer("a", calls), _Parent(calls), _AsyncTracer("c", calls))
        f = tflow.tflow()
        await master.addons.handle_lifecycle(HttpRequestHook(f))
        return calls, f.id
    calls, fid = _run(check)
    assert calls == [("a", "request", fid), ("parent", "request", fid), ("child", "request", fid),
                     ("c", "request", fid)]


def test_an_addon_error_is_logged_and_the_next_addon_still_runs(caplog):
    async def check(master):
        calls = []
        master.addons.add(_Tracer("a", calls, fail=True), _Tracer("b", calls))
        f = tflow.tflow()
        with caplog.at_level(logging.ERROR):
            await master.addons.trigger_event(HttpRequestHook(f))
        return calls
    calls = _run(check)
    assert [c[0] for c in calls] == ["a", "b"]
    assert "Addon error: a broke" in caplog.text


def test_addon_halt_stops_the_hook():
    async def check(master):
        calls = []
        master.addons.add(_Tracer("a", calls, halt=True), _Tracer("b", calls))
        await master.addons.trigger_event(HttpRequestHook(tflow.tflow()))
        return calls
    assert [c[0] for c in _run(check)] == ["a"]


def test_update_runs_only_when_an_addon_listens_and_the_table_follows_adds_and_removes():
    async def check(master):
        calls = []
        a = _Tracer("a", calls)
        master.addons.add(a)
        f = tflow.tflow()
        await master.addons.handle_lifecycle(HttpRequestHook(f))
        assert calls == [("a", "request", f.id)]
        updates = _Updates(calls)
        master.addons.add(updates)  # added after the table for `update` was made (empty)
        await master.addons.handle_lifecycle(HttpRequestHook(f))
        assert calls[1:] == [("a", "request", f.id), ("updates", "update", f.id)]
        master.addons.remove(a)
        master.addons.remove(updates)
        del calls[:]
        await master.addons.handle_lifecycle(HttpRequestHook(f))
        return calls
    assert _run(check) == []


def test_errorcheck_still_finds_its_addon_through_the_lookup():
    async def check(master):
        master.addons.add(errorcheck.ErrorCheck())
        return master.addons.get("errorcheck")
    assert isinstance(_run(check), errorcheck.ErrorCheck)
