"""`schoolgate run`'s lean master: the mitmproxy addons it loads instead of the thirty defaults,
and that Schoolgate's own options apply to it."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from mitmproxy import addons as mitm_addons
from mitmproxy.addons import block, disable_h2c, next_layer, proxyserver, tlsconfig
from mitmproxy.test import taddons

from schoolgate.cli.run import lean_addons
from schoolgate.gateway import bootstrap
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

