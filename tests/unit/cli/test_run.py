"""`schoolgate run`'s lean master: the mitmproxy addons it loads instead of the thirty defaults,
and that Schoolgate's own options apply to it."""

from __future__ import annotations

from mitmproxy import addons as mitm_addons
from mitmproxy.addons import block, disable_h2c, next_layer, proxyserver, tlsconfig
from mitmproxy.test import taddons

from schoolgate.cli.run import lean_addons
from schoolgate.gateway import bootstrap


def _names(addons: list[object]) -> set[str]:
    return {type(a).__name__ for a in addons}


def test_the_lean_master_keeps_the_proxy_and_its_safeguards():
    kept = _names(lean_addons())
    assert kept == {"Core", "Block", "DisableH2C", "Proxyserver", "NextLayer", "TlsConfig"}
    # Each kept one is mitmproxy's own class, not a look-alike.
    types = {type(a) for a in lean_addons()}
    assert {block.Block, disable_h2c.DisableH2C, proxyserver.Proxyserver, next_layer.NextLayer,
            tlsconfig.TlsConfig} <= types


def test_the_dropped_defaults_are_the_ones_that_rewrite_replay_save_or_script():
    dropped = _names(mitm_addons.default_addons()) - _names(lean_addons())
    assert {"ScriptLoader", "Save", "SaveHar", "ProxyAuth", "UpstreamAuth", "Onboarding",
            "MapRemote", "MapLocal", "ModifyBody", "ModifyHeaders", "ServerPlayback",
            "ClientPlayback", "CommandHistory", "StickyCookie", "StickyAuth"} <= dropped
    assert len(dropped) == len(mitm_addons.default_addons()) - len(lean_addons())


def test_schoolgates_options_apply_to_the_lean_master(config):
    # The test context brings its own Core; the rest are the lean master's.
    with taddons.context(*[a for a in lean_addons() if type(a).__name__ != "Core"]) as tctx:
        tctx.options.update(**bootstrap.proxy_options(config))
        assert tctx.options.connection_strategy == "lazy"
        assert tctx.options.confdir == str(config.ca_dir)
        # An open proxy on a public address is refused: Block's option is there and on.
        assert tctx.options.block_global is True

