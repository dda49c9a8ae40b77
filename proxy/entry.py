"""Load Schoolgate into a stock mitmproxy: ``mitmdump -s proxy/entry.py --set schoolgate_config=PATH``.

`schoolgate run` is the supported way to start the gateway (it creates the school-named CA and
sets safe defaults such as lazy upstream connections); this shim exists for people who already
run mitmproxy with their own options and addons.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions

from schoolgate.gateway.addons import ordered
from schoolgate.config.model import ConfigError
from schoolgate.config.loader import load_config
from schoolgate.gateway.service import Gateway

log = logging.getLogger("schoolgate")


class Schoolgate:
    """Builds the gateway from the config named by an option, then runs its addons in order."""

    def __init__(self) -> None:
        self.gateway: Gateway | None = None

    def load(self, loader) -> None:
        loader.add_option(
            "schoolgate_config",
            str,
            "config/schoolgate.yaml",
            "Path to Schoolgate's YAML configuration file.",
        )

    def configure(self, updated) -> None:
        if "schoolgate_config" not in updated or self.gateway is not None:
            return
        try:
            config = load_config(ctx.options.schoolgate_config)
        except ConfigError as e:
            raise exceptions.OptionsError("\n".join(e.problems)) from None
        self.gateway = Gateway(config)
        self.gateway.log_lists()
        ctx.master.addons.add(*ordered(self.gateway))


addons = [Schoolgate()]
