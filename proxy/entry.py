"""Load Schoolgate into a stock mitmproxy:
``mitmdump -s proxy/entry.py --set schoolgate_config=PATH``.

`schoolgate run` is the supported way to start the gateway; this shim is for people who already
run mitmproxy with their own options and addons. Both start Schoolgate through the same bootstrap
(`schoolgate.gateway.bootstrap`): the illegal lists are loaded before the first request, or
mitmproxy stops with the reason; the school's CA and lazy upstream connections are set here too.
"""

from __future__ import annotations

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from schoolgate.config.loader import load_config
from schoolgate.config.model import ConfigError
from schoolgate.gateway import bootstrap
from schoolgate.gateway.service import Gateway, StartupError


class Schoolgate:
    """Builds the gateway from the config named by an option, then runs its addons in order."""

    def __init__(self) -> None:
        self.gateway: Gateway | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_config",
            str,
            "config/schoolgate.yaml",
            "Path to Schoolgate's YAML configuration file.",
        )

    def configure(self, updated: set[str]) -> None:
        if "schoolgate_config" not in updated or self.gateway is not None:
            return
        try:
            config = load_config(ctx.options.schoolgate_config)
            gateway = bootstrap.build(config)
        except ConfigError as e:
            raise exceptions.OptionsError("\n".join(e.problems)) from None
        except StartupError as e:
            raise exceptions.OptionsError(str(e)) from None
        self.gateway = gateway
        # mitmdump loads mitmproxy's default addons, Onboarding among them: its mitm.it app is
        # mitmproxy-branded, and schools install the CA through device management (README).
        # `schoolgate run`'s lean master has no Onboarding to switch off.
        ctx.options.update(onboarding=False, **bootstrap.proxy_options(config))
        ctx.master.addons.add(*bootstrap.ordered(gateway))


addons = [Schoolgate()]
